"""``export`` and ``import``: complete entries carried to another machine in one tar.

Registered by ``cli.main.build_parser``; the work is in ``Cache.export`` and
``Cache.import_archive`` (manage/transfer). stdout lists the entries, stderr the summary;
an imported entry that does not match its manifest is rejected (exit 5).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .common import EXIT_DAMAGED, TARGET, TARGET_HELP, UsageError, epilog, open_cache, say
from .common import entries as plural_entries


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "export",
        help="write complete entries into one tar for another machine",
        epilog=epilog("OUT.tar appears only when whole (written beside it, then renamed)."),
    )
    common(p)
    p.add_argument("out", metavar="OUT.tar")
    p.add_argument("targets", nargs="*", metavar=TARGET, help=TARGET_HELP)
    p.add_argument("--all", action="store_true", help="every complete entry")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        help="verify and publish the entries of an exported tar",
        epilog=epilog("An entry that does not match its manifest is rejected (exit 5)."),
    )
    common(p)
    p.add_argument("archive", metavar="IN.tar")
    p.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    if bool(args.targets) == bool(args.all):
        raise UsageError("name the entries to export, or --all (not both)")
    handles = open_cache(args).export(args.out, args.targets)
    for handle in handles:
        print(handle)
    say(args, f"exported {plural_entries(len(handles))} to {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    results = open_cache(args).import_archive(args.archive)
    for r in results:
        print(f"{r.status:15} {r.handle or r.key}" + (f"  ({r.reason})" if r.reason else ""))
    rejected = [r for r in results if r.status == "rejected"]
    say(args, f"{plural_entries(len(results) - len(rejected))} available, {len(rejected)} rejected")
    return EXIT_DAMAGED if rejected else 0
