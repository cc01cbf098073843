"""``resolve`` and ``cache-dir``: a handle to a folder, and which root the rules select.

Registered by ``cli.main.build_parser``. stdout gets the paths (one per line, in the order
given) or the root; what people read (waits for another process's download, why a root was
chosen) goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .common import UsageError, epilog, offline_option, root_and_why, say


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "resolve",
        help="resolve handles; print one local path per line",
        description="Resolve each HANDLE (downloading it at most once) and print its local "
        "folder, one per line, in the order given.",
        epilog=epilog("Stops at the first handle that fails; the paths printed so far stand."),
    )
    common(p)
    p.add_argument("handles", nargs="+", metavar="HANDLE")
    offline_option(p)
    p.add_argument("--sha256", metavar="HEX", help="pin the archive's sha256 (one handle only)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: $TFHUB_DOWNLOAD_PROGRESS, else when a terminal)",
    )
    p.add_argument(
        "--mirror",
        action="append",
        metavar="PREFIX=REPLACEMENT",
        help="try this URL rewrite before the origin (repeatable; default $HUBCACHE_MIRRORS)",
    )
    p.add_argument(
        "--no-origin",
        action="store_true",
        default=None,
        help="mirrors only, never the handle's own URL (default: $HUBCACHE_NO_ORIGIN, else off)",
    )
    p.add_argument(
        "--kagglehub-cache",
        action="store_true",
        default=None,
        help="also publish downloaded Kaggle models in kagglehub's cache (HUBCACHE_KAGGLEHUB=1)",
    )
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser(
        "cache-dir",
        help="print the cache root the rules select, and why",
        epilog=epilog("stdout: the root; stderr: the rule that chose it, or why it fell back."),
    )
    common(p)
    p.set_defaults(func=cmd_cache_dir)


def _status(message: str) -> None:
    print(f"hubcache: waiting for {message}", file=sys.stderr, flush=True)


def cmd_resolve(args: argparse.Namespace) -> int:
    from .. import resolve

    if args.sha256 and len(args.handles) != 1:
        raise UsageError("--sha256 pins one archive: give exactly one HANDLE with it")
    for handle in args.handles:
        path = resolve(
            handle,
            cache_dir=args.cache_dir,
            offline=args.offline,
            sha256=args.sha256,
            progress=args.progress,
            mirrors=args.mirror,
            no_origin=args.no_origin,
            kagglehub_cache=args.kagglehub_cache,
            on_wait=None if args.quiet else _status,
        )
        print(path, flush=True)
    return 0


def cmd_cache_dir(args: argparse.Namespace) -> int:
    root, why = root_and_why(args.cache_dir)
    print(root)
    say(args, why)
    return 0
