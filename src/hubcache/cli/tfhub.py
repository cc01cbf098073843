"""``hubcache tfhub enable | disable | status``: hubcache as tensorflow_hub's resolver.

``enable`` and ``disable`` print the ``.pth`` path they wrote or removed on stdout;
``status`` prints ``key: value`` lines (or ``--json``). The work is in
``hubcache.tensorflow_hub``; this module only prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

EXIT_CANNOT_WRITE = 1  # site-packages not writable: documented in docs/cli.md


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("tfhub", help="use hubcache from unmodified tensorflow_hub code")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    site_help = "site-packages folder for the .pth (default: this interpreter's)"
    for name, helptext, func in (
        ("enable", "make every `import tensorflow_hub` here use hubcache", _cmd_enable),
        ("disable", "undo enable: tensorflow_hub uses its own resolvers again", _cmd_disable),
        ("status", "is the plug-in active, which tensorflow_hub, where the .pth is", _cmd_status),
    ):
        q = actions.add_parser(name, help=helptext)
        common(q)
        q.add_argument("--site-dir", metavar="DIR", help=site_help)
        if name == "status":
            q.add_argument("--json", action="store_true", help="print JSON for scripts")
        q.set_defaults(func=func)


def _cmd_enable(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import enable, status

    try:
        path = enable(args.site_dir)
    except OSError as exc:
        print(
            f"hubcache: error: cannot write the .pth in {exc.filename or args.site_dir}: "
            f"{exc.strerror or exc}; run this with the environment's own python as its "
            "owner (or in a virtual environment)",
            file=sys.stderr,
        )
        return EXIT_CANNOT_WRITE
    print(path)
    if not args.quiet:
        state = status(args.site_dir)
        print(
            "hubcache: tensorflow_hub will use hubcache in this environment "
            f"(tensorflow_hub {state.tensorflow_hub_version or 'not installed yet'}; "
            f"plug-in switch {state.switch}); undo with `hubcache tfhub disable`",
            file=sys.stderr,
        )
        if state.registry.startswith("differs"):
            print(f"hubcache: warning: registry {state.registry}", file=sys.stderr)
    return 0


def _cmd_disable(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import disable

    try:
        path = disable(args.site_dir)
    except FileExistsError as exc:
        print(f"hubcache: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except OSError as exc:
        print(
            f"hubcache: error: cannot remove {exc.filename}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_WRITE
    if path is None:
        if not args.quiet:
            print("hubcache: the plug-in was not enabled here; nothing to do", file=sys.stderr)
        return 0
    print(path)
    if not args.quiet:
        print("hubcache: tensorflow_hub uses its own resolvers again", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import status

    state = status(args.site_dir)
    if args.json:
        print(json.dumps(dataclasses.asdict(state), indent=2))
        return 0
    print(f"active: {'yes' if state.active else 'no'}")
    print(f"pth: {state.pth_path} ({'present' if state.pth_present else 'absent'})")
    print(f"switch: {state.switch}")
    print(f"tensorflow_hub: {state.tensorflow_hub_version or 'not installed'}")
    print(f"registry: {state.registry}")
    return 0
