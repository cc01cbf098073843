"""The ``hubcache`` command: a thin layer over the library, and the only place that prints.

stdout carries data only (paths, tables, JSON); everything for people goes to stderr.
Exit codes (docs/cli.md): 0 ok, 1 unexpected, 2 usage, 3 not found, 4 network, 5 bad archive,
6 cache dir unusable, 7 offline and not cached, 8 lock timeout, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Optional

from .._errors import HubcacheError
from .common import EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so ``finally`` blocks clean up like on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        "--tfhub_cache_dir",
        dest="cache_dir",
        metavar="DIR",
        help="cache root (default: $TFHUB_CACHE_DIR, else <tmp>/tfhub_modules)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubcache",
        description="Resolve TF Hub / Kaggle model handles into a local, "
        "tensorflow_hub-compatible cache.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"hubcache {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("resolve", help="resolve handles; print one local path per line")
    _common(p)
    p.add_argument("handles", nargs="+", metavar="HANDLE")
    p.add_argument("--offline", action="store_true", default=None, help="never use the network")
    p.add_argument("--sha256", help="pin the archive's sha256 (one handle only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--mirror",
        action="append",
        metavar="PREFIX=REPLACEMENT",
        help="try this URL rewrite before the origin (repeatable; default $HUBCACHE_MIRRORS)",
    )
    p.add_argument("--no-origin", action="store_true", default=None, help="mirrors only")
    p.set_defaults(func=_cmd_resolve)

    p = sub.add_parser("cache-dir", help="print the cache root the rules select, and why")
    _common(p)
    p.set_defaults(func=_cmd_cache_dir)

    p = sub.add_parser("serve", help="host the models in DIR over HTTP (TF Hub protocol)")
    _common(p)
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="BYTES_PER_SEC",
        help="throttle each connection (for testing parallel downloads)",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="serve the bundled sample model and resolve it cold, then warm")
    _common(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("gc", help="remove debris: stale locks, orphan staging, trash")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, remove nothing")
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="age after which unowned debris goes (default 3600)",
    )
    p.set_defaults(func=_cmd_gc)

    from .cache import add_commands  # ls, info, verify, rm, prune, prefetch, export, import

    add_commands(sub, _common)
    from ..cli.tfhub import add_commands as add_tfhub  # tfhub enable | disable | status

    add_tfhub(sub, _common)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = (
        logging.ERROR
        if args.quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hubcache: %(message)s"))
    root = logging.getLogger("hubcache")
    root.addHandler(handler)
    root.setLevel(level)


def _status(message: str) -> None:
    print(f"hubcache: waiting for {message}", file=sys.stderr, flush=True)


def _cmd_resolve(args: argparse.Namespace) -> int:
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
            on_wait=None if args.quiet else _status,
        )
        print(path, flush=True)
    return 0


def _cmd_cache_dir(args: argparse.Namespace) -> int:
    from .._config import load_config
    from ..local.root import choose_root

    config = load_config(cache_dir=args.cache_dir)
    print(choose_root(config))
    if not args.quiet:
        print(f"hubcache: chosen by {config.root_source}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .serve import ModelHost

    if not os.path.isdir(args.directory):
        raise UsageError(f"{args.directory} is not a directory")
    host = ModelHost(args.directory, host=args.host, port=args.port, rate_limit=args.rate_limit)
    print(f"serving {host.directory} at {host.url}", flush=True)
    try:
        host.serve_forever()
    finally:
        host.stop()
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    from .._cache import Cache
    from ..local.gc import GRACE

    cache = Cache(args.cache_dir)  # local or remote root: the Cache picks the rules
    the_plan = cache.plan_gc(GRACE if args.grace is None else args.grace)
    items = the_plan.items if args.dry_run else tuple(cache.execute_gc(the_plan))
    verb = "would remove" if args.dry_run else "removed"
    for item in items:
        print(f"{verb} {item.path}  ({item.kind}: {item.reason}, {item.size} bytes)")
    if not args.quiet:
        total = sum(item.size for item in items)
        print(f"hubcache: {verb} {len(items)} item(s), {total} bytes", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(cache_dir=args.cache_dir, out=sys.stdout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    previous: Optional[Callable[..., Any] | int] = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use)
        previous = None
    try:
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"hubcache: error: {exc}", file=sys.stderr)
        return 2
    except HubcacheError as exc:
        print(f"hubcache: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hubcache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("hubcache: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
