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
from .procs import FarLink, FarServer, Server, environment, rmtree
from .report import chart, chart_points, far_summary, summary, table
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


def parse_far(text: str) -> FarLink:
    """``PER_CONN,LINK,DELAY``, e.g. ``20M,160M,0.1`` (rates in MiB/s with M, seconds)."""
    parts = [x.strip() for x in text.split(",")]
    mib = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024**3}
    try:
        per, link = (
            int(float(x.rstrip("kKmMgG")) * mib[x[-1].lower() if x[-1].isalpha() else ""])
            for x in parts[:2]
        )
        delay = float(parts[2])
    except (ValueError, IndexError, KeyError):
        raise argparse.ArgumentTypeError(
            f"--far-link wants PER_CONN,LINK,DELAY like 20M,160M,0.1, got {text!r}"
        ) from None
    if len(parts) != 3 or per <= 0 or link <= 0 or delay < 0:
        raise argparse.ArgumentTypeError(f"--far-link: bad values in {text!r}")
    return FarLink(per, link, delay)


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
        "--far-link",
        type=parse_far,
        default=None,
        metavar="PER_CONN,LINK,DELAY",
        help="also run far-link rows (hubcache, tensorflow_hub, aria2c -x8, curl) against "
        "benchmarks/_farlink.py, e.g. 20M,160M,0.1: 20 MiB/s per connection, 160 MiB/s in "
        "all, 100 ms before each answer",
    )
    p.add_argument(
        "--far-only",
        action="store_true",
        help="with --far-link: only the far-link rows (no loopback, warm or import rows)",
    )
    p.add_argument(
        "--small",
        action="store_true",
        help="also the small-model case: the 10 kB demo SavedModel, cold (loopback rows)",
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
    p.add_argument(
        "--report",
        nargs="+",
        default=None,
        metavar="JSON",
        help="measure nothing: print the tables and draw the chart from runs saved with "
        "--json (several runs are combined, e.g. one per data set)",
    )
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
    far = getattr(args, "far_link", None)
    where = f"loopback; far link: {far.describe()}" if far else "loopback"
    title = (
        f"cold resolve of a model archive ({where}), median of {args.reps} "
        f"({time.strftime('%Y-%m-%d', time.gmtime(started))}, {os.cpu_count()} cores)"
    )
    print(chart(done, args.chart or os.path.join(out, "resolve.png"), title), file=sys.stderr)


def report_from(args: argparse.Namespace, out: str) -> int:
    """Tables, summary and chart from saved runs (``--json``), combined in order."""
    done: list[tuple[datagen.Archive, dict[str, Row]]] = []
    loads = []
    reps = set()
    saved_all = []
    for path in args.report:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        saved_all.append(saved)
        reps.add(saved["args"]["reps"])
        loads.append(saved["environment"].get("load_after"))
        for entry in saved["sizes"].values():
            archive = datagen.Archive(**entry["archive"])
            rows = {k: Row(**r) for k, r in entry["rows"].items()}
            done.append((archive, rows))
            print("\n" + table(rows, archive) + "\n")
    print(summary(done) + "\n")
    far = next((s["args"].get("far_link") for s in saved_all if s["args"].get("far_link")), None)
    if far:
        args.far_link = FarLink(**far)  # for the chart's title
        print(far_summary(done, args.far_link.describe()) + "\n")
    print(f"load average at the end of each run: {loads}", file=sys.stderr)
    args.reps = "/".join(str(r) for r in sorted(reps))
    results: dict[str, Any] = {"environment": {}}
    _save(args, out, results, done, time.time())
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind: the finally blocks stop the servers


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.smoke:
        args.sizes, args.reps, args.warm_calls = [2], 1, 200
        args.small = True
        args.far_link = args.far_link or FarLink(20 * 1024 * 1024, 160 * 1024 * 1024, 0.1)
        if args.streamed_gb is not None:
            args.streamed_gb = 0.01
    if args.reps < 1:
        raise SystemExit("--reps must be at least 1")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.report:
        return report_from(args, out)
    if args.streamed_gb is not None:
        return run_streamed(args, out)
    if args.far_only and args.far_link is None:
        raise SystemExit("--far-only needs --far-link PER_CONN,LINK,DELAY")
    archives = [
        datagen.generate(out, kind, size, force=args.regenerate)
        for size in args.sizes
        for kind in args.sets
    ]
    if args.small and not args.far_only:
        archives.insert(0, datagen.demo(out))
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
        "args": {k: getattr(args, k) for k in ("sizes", "sets", "reps", "warm_calls", "rate_limit")}
        | {"far_link": dataclasses.asdict(args.far_link) if args.far_link else None},
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
            far = None
            if args.far_link is not None:
                far = stack.enter_context(
                    FarServer(sys.executable, root, f"{out}/server-far.log", args.far_link)
                )
                print(f"far link: {args.far_link.describe()}", file=sys.stderr, flush=True)
            print(f"server: {server.base}", file=sys.stderr, flush=True)
            for i, archive in enumerate(archives):
                bench = Bench(args, archive, work)
                rows = bench.run(
                    server.base,
                    throttled.base if throttled else None,
                    warm=i == 0 and archive.kind != datagen.DEMO,
                    far_base=far.base if far and archive.kind != datagen.DEMO else None,
                )
                done.append((archive, rows))
                print("\n" + table(rows, archive) + "\n", flush=True)
                results["sizes"][archive.name] = {
                    "archive": dataclasses.asdict(archive),
                    "archive_bytes": archive.archive_bytes,
                    "extracted_bytes": archive.extracted_bytes,
                    "load": os.getloadavg(),
                    "rows": {k: dataclasses.asdict(r) for k, r in rows.items()},
                }
                _save(args, out, results, done, started)  # a cut-short run keeps its results
    finally:
        rmtree(work)
    print("\n" + summary(done) + "\n", flush=True)
    if args.far_link is not None:
        print(far_summary(done, args.far_link.describe()) + "\n", flush=True)
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
