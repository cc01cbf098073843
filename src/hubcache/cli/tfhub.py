"""``hubcache tfhub enable | disable | status``: hubcache as tensorflow_hub's resolver.

``enable`` and ``disable`` print the ``.pth`` path they wrote or removed on stdout;
``status`` prints ``key: value`` lines (or ``--json``). The work is in
``hubcache.tensorflow_hub``; this module only prints. A site-packages folder that cannot be
written (or a file there that hubcache did not write) is a usage error, exit 2: the command
was run with the wrong python or user, as ``export`` into an unwritable folder is.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .common import UsageError, dump, epilog, say

_NOTES = {
    "enable": "Writes hubcache-tfhub.pth into this python's site-packages (or --site-dir): "
    "every later `import tensorflow_hub` in this environment registers hubcache as its first "
    "resolver. Nothing is imported at start-up. HUBCACHE_TFHUB_PLUGIN=0 turns it off for a "
    "process. stdout: the path written.",
    "disable": "Removes the .pth that enable wrote (never a file hubcache did not write). "
    "stdout: the path removed, nothing when there was none.",
    "status": "Whether a new process here would use the plug-in, where the .pth is, the "
    "switch, the installed tensorflow_hub version and whether its registry is one the plug-in "
    "knows (read from its source, without importing TensorFlow).",
}


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "tfhub",
        help="use hubcache from unmodified tensorflow_hub code (enable, disable, status)",
        epilog=epilog("See docs/tensorflow_hub.md."),
    )
    common(p)  # `hubcache tfhub -q status` as well as `hubcache tfhub status -q`
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, helptext, func in (
        ("enable", "make every `import tensorflow_hub` here use hubcache", _cmd_enable),
        ("disable", "undo enable: tensorflow_hub uses its own resolvers again", _cmd_disable),
        ("status", "is the plug-in active, which tensorflow_hub, where the .pth is", _cmd_status),
    ):
        q = actions.add_parser(name, help=helptext, epilog=epilog(_NOTES[name]))
        common(q)
        q.add_argument(
            "--site-dir",
            metavar="DIR",
            help="the site-packages folder of the .pth (default: this python's)",
        )
        if name == "status":
            q.add_argument("--json", action="store_true", help="print JSON for scripts")
        q.set_defaults(func=func)


def _site_dir(args: argparse.Namespace) -> Any:
    """``--site-dir``; an empty one is refused rather than read as "this python's"."""
    if args.site_dir is not None and not args.site_dir.strip():
        raise UsageError(
            "--site-dir '' names no folder; give a site-packages path, or leave it out"
        )
    return args.site_dir


def _cmd_enable(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import enable, status

    try:
        path = enable(_site_dir(args))
    except FileExistsError as exc:
        raise UsageError(f"{exc}; remove or rename it first if it is not needed") from None
    except OSError as exc:
        raise UsageError(
            f"cannot write the .pth in {_folder(exc, args)}: {exc.strerror or exc}; run "
            "`hubcache tfhub enable` with the environment's own python, as a user who may "
            "write its site-packages (or use a virtual environment)"
        ) from None
    print(path)
    if not args.quiet:
        state = status(args.site_dir)
        version = state.tensorflow_hub_version or "not installed yet"
        if not state.switch.startswith("on"):
            say(
                args,
                f"enabled, but {_switch_words()} keeps it off in this shell "
                f"(tensorflow_hub {version}); undo with `hubcache tfhub disable`",
            )
        elif not state.site_dir_read:
            say(
                args,
                f"enabled in {args.site_dir}, but this python does not read .pth files from "
                "there: it takes effect for the python whose site-packages that is; undo "
                "with `hubcache tfhub disable --site-dir`",
            )
        else:
            say(
                args,
                f"tensorflow_hub will use hubcache in this environment (tensorflow_hub "
                f"{version}); undo with `hubcache tfhub disable`",
            )
        if state.registry.startswith("differs"):
            say(args, f"warning: registry {state.registry}")
    return 0


def _cmd_disable(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import disable

    try:
        path = disable(_site_dir(args))
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(
            f"cannot remove the .pth in {_folder(exc, args)}: {exc.strerror or exc}"
        ) from None
    if path is None:
        say(args, "the plug-in was not enabled here; nothing to do")
        return 0
    print(path)
    say(args, "tensorflow_hub uses its own resolvers again")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from ..tensorflow_hub import status

    state = status(_site_dir(args))
    if args.json:
        dump(dataclasses.asdict(state))
        return 0
    unread = "" if state.site_dir_read else " (this python does not read .pth files from there)"
    print(f"active: {'yes' if state.active else 'no'}{unread}")
    print(f"pth: {state.pth_path} ({'present' if state.pth_present else 'absent'})")
    print(f"switch: {state.switch}")
    print(f"tensorflow_hub: {state.tensorflow_hub_version or 'not installed'}")
    print(f"registry: {state.registry}")
    return 0


def _switch_words() -> str:
    """``HUBCACHE_TFHUB_PLUGIN=<value>`` as it is set in this environment."""
    import os

    return f"HUBCACHE_TFHUB_PLUGIN={os.environ.get('HUBCACHE_TFHUB_PLUGIN', '')}"


def _folder(exc: OSError, args: argparse.Namespace) -> str:
    import os

    return os.path.dirname(str(exc.filename)) if exc.filename else str(args.site_dir)
