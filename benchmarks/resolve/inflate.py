"""Inflate alone: how fast each decoder turns the archive back into tar bytes, no disk.

This is the floor of a cold resolve on one core: the archive is read from the page cache
in 1 MiB pieces and inflated with ``decompressobj(31)`` (the interface hubcache uses, with
1 MiB output bounds); the output is dropped. Each decoder runs in a fresh process (so one
decoder's memory does not colour the next) and reports its best and median time.

Run alone::

    python -m resolve.inflate ARCHIVE [--reps 5]      # from benchmarks/
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

DECODERS = ("zlib-ng", "isal", "zlib")
CHUNK = 1024 * 1024


def factory(name: str) -> Callable[[int], Any]:
    """The decompressobj factory of a decoder, or raise ImportError."""
    if name == "zlib-ng":
        from zlib_ng import zlib_ng

        return zlib_ng.decompressobj  # type: ignore[no-any-return]
    if name == "isal":
        from isal import isal_zlib

        return isal_zlib.decompressobj  # type: ignore[no-any-return]
    import zlib

    return zlib.decompressobj


def inflate_once(path: str, make: Callable[[int], Any]) -> tuple[float, int]:
    """Seconds to inflate ``path`` whole, and the bytes produced."""
    produced = 0
    t0 = time.perf_counter()
    obj = make(31)
    with open(path, "rb", buffering=0) as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                break
            buf: Any = data
            while buf:
                out = obj.decompress(buf, CHUNK)
                produced += len(out)
                buf = obj.unconsumed_tail
    produced += len(obj.flush())
    return time.perf_counter() - t0, produced


def measure_here(path: str, name: str, reps: int) -> dict[str, Any]:
    try:
        make = factory(name)
    except ImportError as exc:
        return {"decoder": name, "skipped": f"not installed ({exc})"}
    inflate_once(path, make)  # warm-up: page cache and code
    times = []
    produced = 0
    for _ in range(reps):
        seconds, produced = inflate_once(path, make)
        times.append(seconds)
    return {
        "decoder": name,
        "samples": times,
        "median": statistics.median(times),
        "min": min(times),
        "bytes_out": produced,
    }


def measure(python: str, path: str, reps: int, decoders: tuple[str, ...] = DECODERS) -> list[Any]:
    """Each decoder in a fresh ``python`` process (the benchmark's own interpreter)."""
    results = []
    for name in decoders:
        proc = subprocess.run(
            [python, "-m", "resolve.inflate", path, "--decoder", name, "--reps", str(reps)],
            capture_output=True,
            text=True,
            check=False,
            cwd=_here(),
        )
        if proc.returncode != 0:
            results.append({"decoder": name, "error": proc.stderr.strip()[-500:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def _here() -> str:
    import os

    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("archive")
    p.add_argument("--decoder", choices=DECODERS, default=None, help="one decoder, JSON out")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    if args.decoder:
        print(json.dumps(measure_here(args.archive, args.decoder, args.reps)))
        return 0
    for r in measure(sys.executable, args.archive, args.reps):
        if "median" in r:
            print(f"{r['decoder']:>8}: median {r['median']:.3f} s, min {r['min']:.3f} s")
        else:
            print(f"{r['decoder']:>8}: {r.get('skipped') or r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
