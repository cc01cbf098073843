"""``hubcache prefetch FILE``: fill a cache from a list, for CI images and air-gapped moves.

Registered by ``cli.main.build_parser``. FILE holds one handle per line, optionally followed
by ``sha256=<64 hex>`` (the archive's pin); blank lines and ``#`` comments are ignored. Each
handle is resolved in turn with its own progress bar off and one overall line instead
("[3/10] handle"), so a long list reads as one job. A failure does not stop the rest; the
summary lists every failure and the exit code is the first failure's (docs/cli.md codes), so
a script can tell "offline" from "404".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, Optional

from .._errors import ConfigurationError, HubcacheError, hide_credentials
from .common import epilog, offline_option, plural

_PIN = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "prefetch",
        help="resolve every handle listed in FILE",
        epilog=epilog("A failure does not stop the rest; the exit code is the first failure's."),
    )
    common(p)
    p.add_argument("file", metavar="FILE", help="one handle per line, optional sha256=HEX, # notes")
    offline_option(p)
    p.set_defaults(func=cmd_prefetch)


def cmd_prefetch(args: argparse.Namespace) -> int:
    return prefetch_file(
        args.file, cache_dir=args.cache_dir, offline=args.offline, quiet=args.quiet
    )


def parse_list(text: str, name: str = "FILE") -> list[tuple[str, Optional[str]]]:
    """``[(handle, sha256 or None), ...]`` in file order; bad lines name their number."""
    items: list[tuple[str, Optional[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
        if not words:
            continue
        pin = None
        for word in words[1:]:
            match = _PIN.match(word)
            if match is None:
                raise ConfigurationError(
                    f"{name}:{number}: {word!r} is neither sha256=<64 hex> nor a comment"
                )
            pin = match.group(1).lower()
        items.append((words[0], pin))
    return items


def prefetch_file(
    path: str, *, cache_dir: Optional[str], offline: Optional[bool], quiet: bool
) -> int:
    from .._cache import Cache
    from .._resolve import resolve

    try:
        with open(path, encoding="utf-8-sig") as f:  # a BOM (Windows editors) is not a handle
            text = f.read()
        items = parse_list(text, path) if "\x00" not in text else None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path} is not a text file (byte {exc.start} is not UTF-8); give a list of "
            "handles, one per line"
        ) from None
    if items is None:  # valid UTF-8 but binary (a tar): its first "word" was a KB-long line
        raise ConfigurationError(
            f"{path} is not a text file (it holds NUL bytes); give a list of handles, one per line"
        )
    cache = Cache(cache_dir)
    tty = sys.stderr.isatty()
    done, cached, failed = 0, 0, []
    for index, (handle, pin) in enumerate(items, 1):
        if not quiet:
            end = "\r" if tty else "\n"
            print(
                f"\x1b[2K[{index}/{len(items)}] {_shown(handle)}"
                if tty
                else f"hubcache: [{index}/{len(items)}] {_shown(handle)}",
                end=end,
                file=sys.stderr,
                flush=True,
            )
        was_cached = cache.is_complete(handle)
        try:
            resolve(handle, cache_dir=cache_dir, offline=offline, sha256=pin, progress=False)
        except HubcacheError as exc:
            failed.append((handle, exc))
            continue
        cached += was_cached
        done += not was_cached
    if not quiet:
        if tty:
            print("\x1b[2K", end="", file=sys.stderr)
        print(
            f"hubcache: prefetched {plural(len(items), 'handle')}: {done} downloaded, "
            f"{cached} already cached, {len(failed)} failed",
            file=sys.stderr,
        )
    for handle, error in failed:
        print(f"hubcache: failed: {_shown(handle)}: {error}", file=sys.stderr)
    return failed[0][1].exit_code if failed else 0


def _shown(handle: str) -> str:
    """The handle as a line on stderr may show it: a password in it hidden (``user:***@``),
    as every other line does, and control characters (a terminal's escape sequences in a
    list file) escaped; the handle's own check refuses those later, with its own line."""
    shown = hide_credentials(handle)
    return shown if shown.isprintable() else repr(shown)
