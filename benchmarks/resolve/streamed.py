"""Streamed mode: a multi-GB archive generated on the fly, never stored (peak RSS vs size).

``_genserver.py`` (a child process on 127.0.0.1) makes an N GB ``.tar.gz`` as it sends it
(chunked, no length); one cold resolve of it and of 1 GB runs in a fresh process, and
the extracted size is checked. Needs 2 x N GB free, else the size is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .children import HUBCACHE_COLD_HWM
from .datagen import MB
from .procs import check_tree, child_env, environment, parse_child, rmtree, run_pipeline
from .report import fmt_time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/

GB = 1_000_000_000


def _gb(n: float) -> str:
    return f"{n:g} GB"


def streamed_one(gen_gb: float, level: int, work: str, python: str) -> dict[str, Any]:
    """One cold hubcache resolve, in a fresh process, of a generated ``gen_gb`` archive."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)  # benchmarks/ is not a package
    import _genserver

    data_bytes = int(gen_gb * GB)
    result: dict[str, Any] = {"gb": gen_gb, "data_bytes": data_bytes}
    free = shutil.disk_usage(work).free
    if free < 2 * data_bytes:
        result["skipped"] = f"{free / GB:.1f} GB free in {work}, need {2 * gen_gb:g} GB"
        return result
    manifest = _genserver.manifest(data_bytes)
    timeout = 300 + data_bytes / (10 * MB)  # >= 10 MB/s
    cache = tempfile.mkdtemp(prefix=f"streamed-{gen_gb:g}gb-", dir=work)
    gen = _genserver.GenServerProcess(python, data_bytes, level)
    try:
        with gen:
            url = gen.handle + "?tf-hub-format=compressed"
            print(f"[streamed {_gb(gen_gb)}] {url}", file=sys.stderr, flush=True)
            # The generator alone, for scale (is the client or the generator the limit?).
            if shutil.which("curl"):
                res = run_pipeline(
                    [["curl", "-s", "-f", "--noproxy", "*", "-o", os.devnull, url]],
                    env=child_env(),
                    timeout=timeout,
                )
                if res.returncode == 0:
                    result["generator_alone_s"] = res.wall
            res = run_pipeline(
                [[python, "-c", HUBCACHE_COLD_HWM, gen.handle, cache]],
                env=child_env(),
                timeout=timeout,
            )
        result["server"] = gen.stats  # requests counts the curl run too
        result["archive_bytes"] = gen.stats.get("sent_bytes", 0)
        result["process_wall_s"] = res.wall
        result["wait4_maxrss_kb"] = res.rss_kb
        try:
            out = parse_child(res)
        except (RuntimeError, ValueError) as e:
            result["error"] = str(e)
            return result
        result.update(
            seconds=out["seconds"],
            maxrss_kb=out["maxrss_kb"],
            base_maxrss_kb=out["base_maxrss_kb"],
            vmhwm_kb=out.get("vmhwm_kb"),
            version=out.get("version"),
        )
        problem = check_tree(out["path"], manifest)
        if problem:
            result["error"] = f"bad result at {out['path']}: {problem}"
        else:
            data = os.path.join(out["path"], *_genserver.DATA_NAME.split("/"))
            result["extracted_data_bytes"] = os.path.getsize(data)
    finally:
        rmtree(cache)
    return result


def streamed_table(results: Sequence[dict[str, Any]], level: int) -> str:
    lines = [
        f"### streamed: tar.gz generated on the fly (zlib level {level}, chunked, no "
        "Content-Length), one cold `hubcache.resolve` in a fresh process",
        "",
        "| variables file | archive MB | resolve | process wall | MB/s | peak RSS MB "
        "| VmHWM MB | generator alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = _gb(r["gb"])
        if r.get("skipped"):
            lines.append(f"| {size} | skipped: {r['skipped']} | | | | | | |")
            continue
        if r.get("error"):
            first = r["error"].strip().splitlines()
            lines.append(f"| {size} | FAILED: {(first[-1] if first else '?')[:120]} | | | | | | |")
            continue
        growth = (r["maxrss_kb"] - r["base_maxrss_kb"]) / 1024
        gen = r.get("generator_alone_s")
        hwm = r.get("vmhwm_kb")
        lines.append(
            f"| {size} (exact) | {r['archive_bytes'] / MB:.0f} | {fmt_time(r['seconds'])} | "
            f"{fmt_time(r['process_wall_s'])} | {r['archive_bytes'] / MB / r['seconds']:.0f} | "
            f"{r['maxrss_kb'] / 1024:.0f} (+{growth:.0f}) | "
            f"{f'{hwm / 1024:.0f}' if hwm else '–'} | {fmt_time(gen) if gen else '–'} |"
        )
    lines += [
        "",
        "Peak RSS: the child's ru_maxrss (in brackets: growth during the resolve call); "
        "VmHWM: the same peak from /proc, which does not start at the spawning process's "
        'peak. "exact": the extracted variables file has exactly N × 10^9 bytes.',
    ]
    for r in results:
        srv = r.get("server") or {}
        if srv.get("requests", 2) != 2 or srv.get("aborted"):
            lines.append(f"- {_gb(r['gb'])}: generator saw {srv} (curl + hubcache = 2 requests)")
    return "\n".join(lines)


def run_streamed(args: argparse.Namespace, out: str) -> int:
    if args.streamed_gb <= 0:
        raise SystemExit("--streamed-gb must be positive")
    work = os.path.join(out, "work")
    rmtree(work)
    os.makedirs(work)
    sizes = sorted({1.0, float(args.streamed_gb)})
    results: list[dict[str, Any]] = []
    try:
        for gen_gb in sizes:
            results.append(streamed_one(gen_gb, args.streamed_level, work, sys.executable))
    finally:
        rmtree(work)
    report = streamed_table(results, args.streamed_level)
    print("\n" + report + "\n", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"environment": environment(), "level": args.streamed_level, "streamed": results},
                f,
                indent=1,
            )
    failed = [r for r in results if r.get("error")]
    for r in failed:
        print(f"- [{_gb(r['gb'])}] {r['error']}", file=sys.stderr)
    return 1 if failed else 0
