"""Benchmark a cold and warm resolve against the usual tools (the ``resolve/`` package).

python benchmarks/bench_resolve.py --help
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from resolve.main import main  # after the path is set

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
