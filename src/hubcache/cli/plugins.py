"""``hubcache tfhub | kagglehub  enable | disable | status``: hubcache as the resolver of
unmodified tensorflow_hub or kagglehub code.

``enable`` and ``disable`` print the ``.pth`` path they wrote or removed on stdout;
``status`` prints ``key: value`` lines (or ``--json``). The work is in
``hubcache.tensorflow_hub`` and ``hubcache.kagglehub``; this module only prints. A
site-packages folder that cannot be written (or a file there that hubcache did not write) is
a usage error, exit 2: the command was run with the wrong python or user, as ``export`` into
an unwritable folder is.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shlex
from collections.abc import Callable
from typing import Any

from .common import UsageError, dump, epilog, say


@dataclasses.dataclass(frozen=True)
class Plugin:
    command: str  # hubcache <command> enable
    package: str  # the library it plugs into, as imported
    module: str  # hubcache's plug-in module (relative to the hubcache package)
    pth: str  # the .pth file's name
    switch: str  # the kill switch variable
    doc: str  # docs/<doc>

    def api(self) -> Any:
        return importlib.import_module(self.module, "hubcache")


PLUGINS = (
    Plugin(
        "tfhub",
        "tensorflow_hub",
        ".tensorflow_hub",
        "hubcache-tfhub.pth",
        "HUBCACHE_TFHUB_PLUGIN",
        "tensorflow_hub.md",
    ),
    Plugin(
        "kagglehub",
        "kagglehub",
        ".kagglehub",
        "hubcache-kagglehub.pth",
        "HUBCACHE_KAGGLEHUB_PLUGIN",
        "kagglehub.md",
    ),
)


def _notes(p: Plugin) -> dict[str, str]:
    return {
        "enable": f"Writes {p.pth} into this python's site-packages (or --site-dir): every "
        f"later `import {p.package}` in this environment registers hubcache as its first "
        f"resolver. Nothing is imported at start-up. {p.switch}=0 turns it off for a "
        "process. stdout: the path written.",
        "disable": "Removes the .pth that enable wrote (never a file hubcache did not write). "
        "stdout: the path removed, nothing when there was none.",
        "status": "Whether a new process here would use the plug-in, where the .pth is, the "
        f"switch, the installed {p.package} version and whether its registry is one the "
        f"plug-in knows (read from its source, without importing {p.package}).",
    }


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    for plugin in PLUGINS:
        _add(sub, common, plugin)


def _add(sub: Any, common: Callable[[argparse.ArgumentParser], None], p: Plugin) -> None:
    parser = sub.add_parser(
        p.command,
        help=f"use hubcache from unmodified {p.package} code (enable, disable, status)",
        epilog=epilog(f"See docs/{p.doc}."),
    )
    common(parser)  # `hubcache tfhub -q status` as well as `hubcache tfhub status -q`
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    notes = _notes(p)
    for name, helptext, func in (
        ("enable", f"make every `import {p.package}` here use hubcache", _cmd_enable),
        ("disable", f"undo enable: {p.package} uses its own resolvers again", _cmd_disable),
        ("status", f"is the plug-in active, which {p.package}, where the .pth is", _cmd_status),
    ):
        q = actions.add_parser(name, help=helptext, epilog=epilog(notes[name]))
        common(q)
        q.add_argument(
            "--site-dir",
            metavar="DIR",
            help="the site-packages folder of the .pth (default: this python's)",
        )
        if name == "status":
            q.add_argument("--json", action="store_true", help="print JSON for scripts")
        q.set_defaults(func=func, plugin=p)


def _version(state: Any, p: Plugin) -> Any:
    return getattr(state, f"{p.package}_version")


def _site_dir(args: argparse.Namespace) -> Any:
    """``--site-dir``; an empty one is refused rather than read as "this python's"."""
    if args.site_dir is not None and not args.site_dir.strip():
        raise UsageError(
            "--site-dir '' names no folder; give a site-packages path, or leave it out"
        )
    return args.site_dir


def _cmd_enable(args: argparse.Namespace) -> int:
    p: Plugin = args.plugin
    api = p.api()
    try:
        path = api.enable(_site_dir(args))
    except FileExistsError as exc:
        raise UsageError(f"{exc}; remove or rename it first if it is not needed") from None
    except OSError as exc:
        raise UsageError(
            f"cannot write the .pth in {_folder(exc, args)}: {exc.strerror or exc}; run "
            f"`hubcache {p.command} enable` with the environment's own python, as a user who "
            "may write its site-packages (or use a virtual environment)"
        ) from None
    print(path)
    if not args.quiet:
        state = api.status(args.site_dir)
        version = f"{p.package} {_version(state, p) or 'not installed yet'}"
        # the undo names the folder enable wrote into: without it, disable looks elsewhere
        undo = f"hubcache {p.command} disable" + (
            f" --site-dir {shlex.quote(args.site_dir)}" if args.site_dir is not None else ""
        )
        if not state.switch.startswith("on"):
            say(
                args,
                f"enabled, but {_switch_words(p)} keeps it off in this shell "
                f"({version}); undo with `{undo}`",
            )
        elif not state.site_dir_read:
            say(
                args,
                f"enabled in {args.site_dir}, but this python does not read .pth files from "
                "there: it takes effect for the python whose site-packages that is; undo "
                f"with `{undo}`",
            )
        elif not state.registry.startswith("differs"):
            say(
                args,
                f"{p.package} will use hubcache in this environment ({version}); undo with "
                f"`{undo}`",
            )
        if state.registry.startswith("differs"):
            say(
                args,
                f"warning: this {version} is not one the plug-in knows (registry "
                f"{state.registry}): {p.package} keeps resolving on its own, with one warning "
                f"in each process that imports it; undo with `{undo}`",
            )
    return 0


def _cmd_disable(args: argparse.Namespace) -> int:
    p: Plugin = args.plugin
    try:
        path = p.api().disable(_site_dir(args))
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
    say(args, f"{p.package} uses its own resolvers again")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    p: Plugin = args.plugin
    state = p.api().status(_site_dir(args))
    if args.json:
        dump(dataclasses.asdict(state))
        return 0
    unread = "" if state.site_dir_read else " (this python does not read .pth files from there)"
    print(f"active: {'yes' if state.active else 'no'}{unread}")
    print(f"pth: {state.pth_path} ({'present' if state.pth_present else 'absent'})")
    print(f"switch: {state.switch}")
    print(f"{p.package}: {_version(state, p) or 'not installed'}")
    print(f"registry: {state.registry}")
    return 0


def _switch_words(p: Plugin) -> str:
    """``<switch>=<value>`` as it is set in this environment."""
    import os

    return f"{p.switch}={os.environ.get(p.switch, '')}"


def _folder(exc: OSError, args: argparse.Namespace) -> str:
    import os

    return os.path.dirname(str(exc.filename)) if exc.filename else str(args.site_dir)
