"""``gc``: remove the debris crashes leave (stale locks, orphan staging, trash).

Registered by ``cli.main.build_parser``. The plan comes from ``Cache.plan_gc``, so a local
root and a store root follow their own rules; ``--dry-run`` prints the plan and stops.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .common import epilog, plural, say


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "gc", help="remove debris: stale locks, orphan staging, trash", epilog=epilog()
    )
    common(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, remove nothing")
    p.add_argument(
        "--grace",
        type=duration,
        default=None,
        metavar="DURATION",
        help="age after which unowned debris goes: 90m, 2h, or seconds (default: 3600, an hour)",
    )
    p.set_defaults(func=cmd_gc)


def duration(text: str) -> float:
    """An argparse type: a duration as everywhere else (``45s``, ``90m``, ``12h``, ``30d``,
    ``2w``, or a number of seconds); never negative or nan, so a grace cannot make debris
    that is still in use look old."""
    from .._errors import ConfigurationError
    from .._units import parse_duration

    try:
        return parse_duration(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_gc(args: argparse.Namespace) -> int:
    from .._cache import Cache
    from ..local.gc import GRACE

    cache = Cache(args.cache_dir)  # local or remote root: the Cache picks the rules
    the_plan = cache.plan_gc(GRACE if args.grace is None else args.grace)
    items = the_plan.items if args.dry_run else tuple(cache.execute_gc(the_plan))
    verb = "would remove" if args.dry_run else "removed"
    for item in items:
        print(f"{verb} {item.path}  ({item.kind}: {item.reason}, {item.size} bytes)")
    total = sum(item.size for item in items)
    say(args, f"{verb} {plural(len(items), 'item')}, {total} bytes")
    return 0
