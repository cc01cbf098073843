"""``gc``: remove the debris crashes leave (stale locks, orphan staging, trash).

Registered by ``cli.main.build_parser``. The plan comes from ``Cache.plan_gc``, so a local
root and a store root follow their own rules; ``--dry-run`` prints the plan and stops.
"""

from __future__ import annotations

import argparse
import math
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
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="age after which unowned debris goes (default: 3600)",
    )
    p.set_defaults(func=cmd_gc)


def seconds(text: str) -> float:
    """An argparse type: a finite, non-negative number of seconds (``nan`` compares false
    with everything, so a grace of nan would remove debris that is still in use)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


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
