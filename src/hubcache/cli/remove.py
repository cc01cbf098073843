"""``rm`` and ``prune``: a removal plan, shown, confirmed, then carried out.

Registered by ``cli.main.build_parser``. Both build a :class:`~hubcache.manage.prune.Plan`
first (which entries go, which are spared and why, and the bytes as the disk counts them),
print it, and ask on the terminal. Without a terminal nothing is removed unless ``--yes`` was
given: a script that never sees the question must not delete. Answering no is a normal
outcome, not an error: "declined: nothing removed", exit 0 (as ``rm -i`` does).
``--dry-run`` stops after the plan.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from .._units import format_age, format_size, parse_duration, parse_size
from .common import TARGET, TARGET_HELP, UsageError, dump, epilog, open_cache, say, short
from .common import entries as plural_entries

_ASKS = (
    "Prints the plan, then asks. Answering no removes nothing and exits 0 (declined); "
    "without a terminal nothing is removed unless --yes is given (exit 2)."
)


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "rm",
        help="remove entries (asks unless --yes)",
        epilog=epilog(_ASKS),
    )
    common(p)
    p.add_argument("targets", nargs="+", metavar=TARGET, help=TARGET_HELP)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser(
        "prune",
        help="remove least recently used entries (a plan first)",
        epilog=epilog(_ASKS),
    )
    common(p)
    p.add_argument("--older-than", metavar="DURATION", help="unused this long, e.g. 30d or 12h")
    p.add_argument("--max-size", metavar="SIZE", help="then LRU until the cache fits: 20GB")
    p.add_argument(
        "--keep", action="append", default=[], metavar=TARGET, help="never remove (repeatable)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, remove nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_prune)


def _confirm(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("not a terminal, so nothing was removed: add --yes to confirm")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _print_plan(plan: Any, verb: str) -> None:
    print(
        f"{verb} {plural_entries(len(plan.remove))}, freeing {format_size(plan.bytes_freed)} "
        f"({format_size(plan.total_before)} -> {format_size(plan.total_after)})"
    )
    now = time.time()
    for item in plan.remove:
        used = format_age(now - item.last_used) if item.last_used else "never"
        size = format_size(item.size)
        if item.freed < item.size:  # hard links: what stays keeps the shared files
            size += f" (frees {format_size(item.freed)}: the rest is shared with kept entries)"
        print(
            f"  - {short(item.handle or item.key)}  {item.key[:12]}  "
            f"{size}  used {used}  ({item.reason})"
        )
    for item in plan.spared:
        print(f"  = spared {short(item.handle or item.key)}  {item.key[:12]}: {item.reason}")


def _run_plan(args: argparse.Namespace, cache: Any, plan: Any, verb: str) -> int:
    if args.json and (getattr(args, "dry_run", False) or not plan.remove):
        dump({"plan": plan.to_json(), "executed": False})
        return 0
    if not args.json:
        _print_plan(plan, verb)
    if getattr(args, "dry_run", False) or not plan.remove:
        say(args, "dry run: nothing removed" if plan.remove else "nothing to remove")
        return 0
    if not _confirm(args, f"remove {plural_entries(len(plan.remove))}?"):
        say(args, "declined: nothing removed")
        return 0
    outcome = cache.execute(plan)
    if args.json:
        dump(
            {
                "plan": plan.to_json(),
                "executed": True,
                "removed": [i.key for i in outcome.removed],
                "spared": [i.to_json() for i in outcome.spared],
            }
        )
    for item in outcome.spared:
        say(args, f"spared {item.handle or item.key}: {item.reason}")
    freed = format_size(outcome.bytes_freed)
    say(args, f"removed {plural_entries(len(outcome.removed))}, freed {freed}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from .._errors import EntryInUseError

    cache = open_cache(args)
    plan = cache.plan_remove(args.targets)
    code = _run_plan(args, cache, plan, "remove")
    if plan.spared:  # a live process holds one of the named entries: say so in the exit code
        raise EntryInUseError("; ".join(f"{i.handle or i.key}: {i.reason}" for i in plan.spared))
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    if not args.older_than and not args.max_size:
        raise UsageError("say what to prune: --older-than DURATION and/or --max-size SIZE")
    cache = open_cache(args)
    plan = cache.plan_prune(
        older_than=parse_duration(args.older_than) if args.older_than else None,
        max_size=parse_size(args.max_size) if args.max_size else None,
        keep=args.keep,
    )
    return _run_plan(args, cache, plan, "prune: remove")
