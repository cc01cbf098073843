"""Reading the cache: ls, info, verify. Registered by ``cli.main.build_parser``; printing
only, the work is in ``Cache``. Entries are named by handle, by key, or by a unique key
prefix (the 12 hex digits ``ls`` prints); ``Cache.key_of`` decides which.

Data (tables, facts, JSON) goes to stdout, summaries for people to stderr. Reading an
entry's facts does not count as a use of it. The commands that change the cache have their
own modules: ``remove`` (rm, prune), ``gc``, ``prefetch``, ``transfer`` (export, import).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from .._errors import DamagedEntryError, HubcacheError
from .._units import format_age, format_size, format_time, parse_duration
from ..manage.prune import disk_usage
from .common import (
    EXIT_DAMAGED,
    TARGET,
    TARGET_HELP,
    UsageError,
    dump,
    epilog,
    open_cache,
    say,
    short,
)
from .common import entries as plural_entries


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "ls",
        help="list cache entries: handle, size, files, last used, state",
        epilog=epilog("Reading an entry's facts does not count as a use of it."),
    )
    common(p)
    p.add_argument(
        "--sort",
        choices=("size", "used", "name"),
        default="used",
        help="used: least recently used first (default: %(default)s)",
    )
    p.add_argument(
        "--older-than",
        metavar="DURATION",
        help="only entries unused this long, e.g. 30d or 12h (default: all)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("info", help="everything known about one entry (or --root)", epilog=epilog())
    common(p)
    p.add_argument("target", nargs="?", metavar=TARGET, help=TARGET_HELP)
    p.add_argument("--root", action="store_true", help="the root the rules select, and why")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "verify",
        help="check entries against their manifests (exit 5: damage)",
        epilog=epilog(
            "Without HANDLE_OR_KEY: every entry. A named entry not in the cache: exit 3."
        ),
    )
    common(p)
    p.add_argument("targets", nargs="*", metavar=TARGET, help=TARGET_HELP)
    p.add_argument("--deep", action="store_true", help="rehash every file (sha256)")
    p.add_argument("--fix", action="store_true", help="re-download damaged entries")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_verify)


def cmd_ls(args: argparse.Namespace) -> int:
    cache = open_cache(args)
    now = time.time()
    entries = cache.entries()
    if args.older_than:
        cutoff = now - parse_duration(args.older_than)
        entries = [e for e in entries if e.last_used <= cutoff]
    order: dict[str, Callable[[Any], Any]] = {
        "size": lambda e: (-e.size, e.key),
        "used": lambda e: (e.last_used, e.key),
        "name": lambda e: (e.handle or "~", e.key),
    }
    entries.sort(key=order[args.sort])
    total = sum(e.size for e in entries)
    on_disk = disk_usage(entries)  # less when entries share files (hard links)
    kagglehub = [] if args.older_than else _kagglehub_rows()
    if args.json:
        dump(
            {
                "root": cache.root,
                "entries": [e.to_json() for e in entries],
                "count": len(entries),
                "total_bytes": total,
                "disk_bytes": on_disk,
                "kagglehub": [
                    {"handle": h, "path": p, "size": size, "files": n}
                    for h, p, size, n in kagglehub
                ],
            }
        )
        return 0
    rows = [("HANDLE", "KEY", "SIZE", "FILES", "DOWNLOADED", "LAST USED", "STATE")]
    for e in entries:
        rows.append(
            (
                short(e.handle or "(unknown)"),
                e.key[:12],
                format_size(e.size),
                str(e.files),
                format_time(e.downloaded)[:16].replace("T", " ") if e.downloaded else "-",
                format_age(now - e.last_used) if e.last_used else "-",
                e.state + (f" ({e.reason})" if e.reason else ""),
            )
        )
    for handle, _path, size, count in kagglehub:
        rows.append((short(handle), "-", format_size(size), str(count), "-", "-", "kagglehub"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    shared = (
        f" ({format_size(on_disk)} on disk: linked entries share files)" if on_disk < total else ""
    )
    print(f"{plural_entries(len(entries))}, {format_size(total)}{shared} in {cache.root}")
    return 0


def _kagglehub_rows() -> list[tuple[str, str, int, int]]:
    """Models in kagglehub's cache, which hubcache uses without a request (state
    "kagglehub"); a bad Kaggle setting only hides them."""
    from .._errors import HubcacheError
    from ..kaggle.kagglehub_cache import entries
    from ..kaggle.settings import kaggle_settings

    try:
        root = kaggle_settings().kagglehub_cache
    except HubcacheError:
        return []
    return [(f"kagglehub:{h}", p, size, n) for h, p, size, n in entries(root)]


def _kagglehub_details(target: str) -> dict[str, Any]:
    """The facts of a ``kagglehub:...`` row of ``ls`` (a model in kagglehub's cache), so
    that ``info`` accepts every name ``ls`` prints; {} for any other target."""
    if not target.startswith("kagglehub:"):
        return {}
    for handle, path, size, files in _kagglehub_rows():
        if handle == target:
            return {
                "handle": handle,
                "path": path,
                "size": size,
                "files": files,
                "state": "kagglehub",
                "note": "in kagglehub's cache, used by resolves of this model without a request",
            }
    return {}


def cmd_info(args: argparse.Namespace) -> int:
    if args.root:
        from .common import root_and_why

        root, why = root_and_why(args.cache_dir)
        if args.json:
            from .._config import load_config

            dump({"root": root, "chosen_by": load_config(cache_dir=args.cache_dir).root_source})
        else:
            print(root)  # as `cache-dir`: the root on stdout, why on stderr
            say(args, why)
        return 0
    if args.target is None:
        raise UsageError("give a HANDLE_OR_KEY, or --root")
    details = _kagglehub_details(args.target) or open_cache(args).details(args.target)
    if args.json:
        dump(details)
        return 0
    for name, value in details.items():
        shown = value
        if isinstance(value, (dict, list)):
            shown = json.dumps(value)
        elif isinstance(value, float) and name in ("downloaded", "last_used"):
            shown = format_time(value) if value else "-"
        print(f"{name}: {str(shown).rstrip()}".replace("\n", "\n    "))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    cache = open_cache(args)
    results = cache.verify(args.targets, deep=args.deep)
    fixed = []
    failed = 0  # the exit code of the first fix that failed, as prefetch does
    if args.fix:
        for r in results:
            if not r.ok:
                say(args, f"re-downloading {r.handle or r.key}")
                try:
                    cache.fix(r)
                except HubcacheError as exc:
                    # this one cannot be fixed (unknown handle, the network, the server, the
                    # archive); the others still can: a failed download stopped them all
                    print(f"hubcache: error: {exc}", file=sys.stderr)
                    if not isinstance(exc, DamagedEntryError):
                        failed = failed or exc.exit_code
                    continue
                fixed.append(r.key)
    bad = [r for r in results if not r.ok and r.key not in fixed]
    if args.json:
        dump(
            {
                "results": [r.to_json() for r in results],
                "fixed": fixed,
                "damaged": [r.key for r in bad],
            }
        )
    else:
        for r in results:
            status = "fixed" if r.key in fixed else ("ok" if r.ok else "DAMAGED")
            status = "skipped" if r.state == "leftovers" else status
            detail = "; ".join(r.problems) or r.note
            print(
                f"{status:8} {r.state:11} {r.handle or r.key}" + (f"  ({detail})" if detail else "")
            )
        say(args, f"{plural_entries(len(results))} checked, {len(bad)} damaged, {len(fixed)} fixed")
    return failed or (EXIT_DAMAGED if bad else 0)
