"""Reading what resolve left on disk: the extracted tree, and the "nothing cached" check."""

from __future__ import annotations

import os
from pathlib import Path


def tree(path: str) -> dict[str, bytes]:
    """Every regular file under ``path``: relative path (``/``-separated, as in archives and
    manifests) -> contents. The one helper the tests read an extracted tree with."""
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, path).replace(os.sep, "/")] = Path(full).read_bytes()
    return out


def assert_no_entry(root: Path) -> None:
    """Nothing but CACHEDIR.TAG may be left: no tree, manifest, lock or staging."""
    left = [n for n in os.listdir(root) if n != "CACHEDIR.TAG"]
    assert left == [], f"a failed download left {left} in the cache"
