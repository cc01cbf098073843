"""Benchmark hubcache's resolve against curl|tar, curl|pigz|tar, tensorflow_hub and the
inflate limit, on model-shaped archives; print Markdown tables and draw a chart.

Run from the repository root with the project's interpreter (``pip install -e '.[bench]'``)::

    python benchmarks/bench_resolve.py --sizes 100,1000 --reps 5 --chart docs/perf.png
    python benchmarks/bench_resolve.py --sets weights --sizes 100 --reps 3
    python benchmarks/bench_resolve.py --sizes 100 --rate-limit 20M   # + throttled rows
    python benchmarks/bench_resolve.py --smoke                        # CI: tiny, one rep

Only figures are printed: nothing asserts on time (``--smoke`` checks that every method
ran and produced the right tree). Generated archives are cached under
``benchmarks/out/`` (git-ignored). All servers bind 127.0.0.1 and are stopped on exit, on
errors and on Ctrl-C. The page cache cannot be dropped without root, so every method runs
one discarded warm-up repetition before the measured ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Optional

from . import datagen
from .datagen import MB, SETS
from .measure import Bench, Row
from .procs import Server, environment, rmtree
from .report import chart, chart_points, summary, table
from .streamed import run_streamed

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
DEFAULT_OUT = os.path.join(HERE, "out")
DEFAULT_TF_PYTHON = os.path.join("~", ".cache", "hubcache-ci", "tf-venv", "bin", "python")


def parse_rate(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate in bytes/s: {text!r} (e.g. 20M)")
    mult = {"": 1, "k": 1_000, "m": MB, "g": 1_000_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes wants e.g. 100,1000, got {text!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def parse_sets(text: str) -> list[str]:
    sets = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [s for s in sets if s not in SETS]
    if not sets or unknown:
        raise argparse.ArgumentTypeError(f"--sets takes some of {','.join(SETS)}, got {text!r}")
    return sets


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[100],
        help="model sizes in MB, comma separated (default: 100)",
    )
    p.add_argument(
        "--sets",
        type=parse_sets,
        default=list(SETS),
        help=f"data sets, comma separated (default: {','.join(SETS)})",
    )
    p.add_argument("--reps", type=int, default=5, help="measured repetitions (default: 5)")
    p.add_argument(
        "--warm-calls",
        type=int,
        default=20_000,
        help="in-process warm calls per repetition (capped to ~2 s per rep)",
    )
    p.add_argument(
        "--rate-limit",
        type=parse_rate,
        default=None,
        metavar="BYTES_PER_SEC",
        help="also run throttled rows against `serve --rate-limit` (e.g. 20M)",
    )
    p.add_argument(
        "--tf-python",
        default=os.environ.get("HUBCACHE_TF_PYTHON") or os.path.expanduser(DEFAULT_TF_PYTHON),
        help=f"python with tensorflow_hub (default: $HUBCACHE_TF_PYTHON or {DEFAULT_TF_PYTHON})",
    )
    p.add_argument(
        "--skip",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="row keys to skip, e.g. tfhub_cold,curl_tar",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="work directory (default: benchmarks/out)")
    p.add_argument("--json", default=None, metavar="OUT", help="write raw numbers here")
    p.add_argument(
        "--chart",
        default=None,
        metavar="PNG",
        help="write the chart here (default: <out>/resolve.png)",
    )
    p.add_argument("--generate-only", action="store_true", help="only build the archives")
    p.add_argument("--regenerate", action="store_true", help="rebuild cached archives")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="CI check: 2 MB archives, one repetition, everything else as usual",
    )
    p.add_argument(
        "--streamed-gb",
        type=float,
        default=None,
        metavar="N",
        help="instead of the rows above: one cold hubcache resolve of an N GB archive "
        "generated on the fly (chunked, never stored), and of 1 GB; reports peak RSS",
    )
    p.add_argument(
        "--streamed-level",
        type=int,
        choices=range(10),
        default=0,
        metavar="0-9",
        help="zlib level of the generated stream (default 0: fast generator)",
    )
    return p


def _save(
    args: argparse.Namespace,
    out: str,
    results: dict[str, Any],
    done: list[tuple[datagen.Archive, dict[str, Row]]],
    started: float,
) -> None:
    """Write the JSON and the chart with what is measured so far."""
    results["environment"]["load_after"] = os.getloadavg()
    results["chart"] = chart_points(done)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    title = (
        f"cold resolve of a model archive, loopback, median of {args.reps} "
        f"({time.strftime('%Y-%m-%d', time.gmtime(started))}, {os.cpu_count()} cores)"
    )
    print(chart(done, args.chart or os.path.join(out, "resolve.png"), title), file=sys.stderr)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind: the finally blocks stop the servers


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.smoke:
        args.sizes, args.reps, args.warm_calls = [2], 1, 200
        if args.streamed_gb is not None:
            args.streamed_gb = 0.01
    if args.reps < 1:
        raise SystemExit("--reps must be at least 1")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.streamed_gb is not None:
        return run_streamed(args, out)
    archives = [
        datagen.generate(out, kind, size, force=args.regenerate)
        for size in args.sizes
        for kind in args.sets
    ]
    if args.generate_only:
        for a in archives:
            print(f"{a.path}\t{a.archive_bytes} bytes\tsha256 {a.sha256}")
        return 0
    work = os.path.join(out, "work")
    rmtree(work)
    os.makedirs(work)
    env_info = environment()
    env_info["load_before"] = os.getloadavg()
    print("environment: " + json.dumps(env_info), file=sys.stderr)
    results: dict[str, Any] = {
        "environment": env_info,
        "args": {
            k: getattr(args, k) for k in ("sizes", "sets", "reps", "warm_calls", "rate_limit")
        },
        "sizes": {},
    }
    done: list[tuple[datagen.Archive, dict[str, Row]]] = []
    started = time.time()
    try:
        with ExitStack() as stack:
            root = os.path.join(out, "archives")
            server = stack.enter_context(Server(sys.executable, root, f"{out}/server.log"))
            throttled = None
            if args.rate_limit is not None:
                throttled = stack.enter_context(
                    Server(sys.executable, root, f"{out}/server-throttled.log", args.rate_limit)
                )
            print(f"server: {server.base}", file=sys.stderr, flush=True)
            for i, archive in enumerate(archives):
                bench = Bench(args, archive, work)
                rows = bench.run(
                    server.base, throttled.base if throttled else None, warm=i == len(archives) - 1
                )
                done.append((archive, rows))
                print("\n" + table(rows, archive) + "\n", flush=True)
                results["sizes"][archive.name] = {
                    "archive_bytes": archive.archive_bytes,
                    "extracted_bytes": archive.extracted_bytes,
                    "load": os.getloadavg(),
                    "rows": {k: dataclasses.asdict(r) for k, r in rows.items()},
                }
                _save(args, out, results, done, started)  # a cut-short run keeps its results
    finally:
        rmtree(work)
    print("\n" + summary(done) + "\n", flush=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after the run: {load}", file=sys.stderr)
    failures = [
        (name, k, r["errors"])
        for name, s in results["sizes"].items()
        for k, r in s["rows"].items()
        if r["errors"]
    ]
    if failures:
        print("\nErrors (first of each):", file=sys.stderr)
        for name, key, errs in failures:
            print(f"- [{name}] {key}: {errs[0]}", file=sys.stderr)
    return 1 if failures else 0
