"""``hubcache demo``: the whole flow on a machine with no internet (registered by
``cli.main.build_parser``).

Serves the sample SavedModel shipped in the package on 127.0.0.1, then resolves it twice
through a cache: cold (download, inflate, extract, publish) and warm (a stat walk).
Without ``--cache-dir`` the cache is a temporary folder, removed at the end, and the output
says so (a printed path that then vanishes would surprise); a given root is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional, TextIO

from .common import epilog

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_data", "sample_model")


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "demo",
        help="serve the bundled sample model and resolve it cold, then warm",
        epilog=epilog(
            "Without --cache-dir the demo uses a temporary cache root and removes it at the end; "
            "with --cache-dir the root is kept."
        ),
    )
    common(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(cache_dir=args.cache_dir, out=sys.stdout)


def run_demo(*, cache_dir: Optional[str], out: TextIO) -> int:
    from .. import resolve
    from ..serve.demohost import ModelHost

    served = tempfile.mkdtemp(prefix="hubcache-demo-models-")
    cache = cache_dir or tempfile.mkdtemp(prefix="hubcache-demo-cache-")
    try:
        shutil.copytree(SAMPLE, os.path.join(served, "demo", "sample", "1"))
        with ModelHost(served) as host, _unproxied():
            handle = host.url + "demo/sample/1"
            print(f"serving the sample model at {handle}", file=out)
            if cache_dir is None:
                print(
                    f"cache root: {cache} (temporary: removed when the demo ends; "
                    "use --cache-dir DIR to keep it)",
                    file=out,
                )
            else:
                print(f"cache root: {cache}", file=out)
            start = time.perf_counter()
            path = resolve(handle, cache_dir=cache, progress=False)
            cold = time.perf_counter() - start
            print(f"cold resolve: {cold * 1000:.1f} ms -> {path}", file=out)
            calls = 2000
            start = time.perf_counter()
            for _ in range(calls):
                resolve(handle, cache_dir=cache)
            warm = (time.perf_counter() - start) / calls
            print(f"warm resolve: {warm * 1e6:.1f} µs per call ({calls} calls)", file=out)
            print(f"server requests: {host.requests} (one download, then hits)", file=out)
        print("cache contents:", file=out)
        for name in sorted(os.listdir(cache)):
            folder = os.path.join(cache, name)
            print(f"  {name}{'/' if os.path.isdir(folder) else ''}", file=out)
            if folder != path:
                continue
            for dirpath, _dirs, files in sorted(os.walk(path)):  # the model, under its entry
                for file in sorted(files):
                    full = os.path.join(dirpath, file)
                    rel = os.path.relpath(full, path)
                    print(f"    {rel} ({os.path.getsize(full)} bytes)", file=out)
    finally:
        shutil.rmtree(served, ignore_errors=True)
        if cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    if cache_dir is None:
        print(f"removed the temporary cache root {cache}", file=out)
    else:
        print(f"kept the cache root {cache}", file=out)
    return 0


@contextlib.contextmanager
def _unproxied() -> Iterator[None]:
    """The demo's host is this machine: an ``http_proxy`` from the environment (a company
    proxy) cannot reach it, and the demo failed with a ProxyError, exit 4. 127.0.0.1 joins
    ``no_proxy`` while the demo runs; the environment is given back after."""
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    listed = saved["no_proxy"] if saved["no_proxy"] is not None else saved["NO_PROXY"]
    os.environ["no_proxy"] = ",".join(filter(None, [listed or "", "127.0.0.1"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
