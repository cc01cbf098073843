"""What every command module of the CLI shares: the usage error (exit 2), the exit codes,
what the command says to people (help epilogs with exit codes, environment and defaults;
counted nouns), so ``--help``, the messages and docs/cli.md agree, and how it says it
(status lines on stderr unless ``-q``, ``--json`` documents on stdout).

Lives apart from ``main`` so that command modules never import the module that imports them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DAMAGED = 5  # verify found damage, import rejected an entry: the "bad archive" code
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_PIPE = 141  # stdout's reader went away (128 + SIGPIPE), as a shell reports it
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

EXIT_CODES = """\
exit codes:
  0    ok (also: a removal you declined at the prompt; nothing removed)
  1    unexpected error, or stdout could not be written
  2    usage: a bad option, handle, variable, file or key prefix; or an
       optional extra is missing (the message names it)
  3    not found: no such model on the server, or not in the cache
  4    network or server error (after retries)
  5    bad archive or checksum; verify found damage; import rejected an entry;
       export met an entry that is not complete
  6    cache folder unusable, read-only or full
  7    offline and not cached
  8    lock timeout, or the entry is in use by a live process
  130  interrupted (Ctrl-C)
  141  stdout closed early (e.g. `hubcache ls | head -1`): output stops quietly
  143  terminated (SIGTERM)"""

ENVIRONMENT = """\
environment (an option given on the command line wins):
  TFHUB_CACHE_DIR          cache root; default <tmp>/tfhub_modules (a private
                           tfhub_modules-<uid> when that one is not safe to share)
  TFHUB_MODEL_LOAD_FORMAT  AUTO (default), COMPRESSED or UNCOMPRESSED
  TFHUB_DOWNLOAD_PROGRESS  1/0: progress bar on/off (default: on when stderr is a terminal)
  HUBCACHE_OFFLINE         1: never use the network (default 0)
  HUBCACHE_MIRRORS         PREFIX=REPLACEMENT,... URL rewrites tried before the origin
  HUBCACHE_SHARED_CACHE    a second, shared cache tier (a folder, gs://, s3://)
  HUBCACHE_MAX_SIZE        after a download, prune LRU entries beyond this size (e.g. 20GB)
  HUBCACHE_LOCK_TIMEOUT    seconds to wait for another download of the same model
                           (default: wait while it makes progress)
  HUBCACHE_RETRIES         retries of one download, in all (default 5)
  ...and more (timeouts, limits, headers): see docs/configuration.md
full reference: docs/cli.md"""


#: The positional argument of the commands that name entries (info, verify, rm, export...).
TARGET = "HANDLE_OR_KEY"
TARGET_HELP = "a handle, a cache key, or a unique key prefix (the 12 hex digits ls prints)"


def offline_option(parser: argparse.ArgumentParser) -> None:
    """``--offline`` for the commands that resolve (resolve, prefetch): None when not given,
    so ``HUBCACHE_OFFLINE`` decides."""
    parser.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never use the network (default: $HUBCACHE_OFFLINE, else off)",
    )


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """``"1 entry"``, ``"2 entries"``, ``"0 items"``."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def entries(count: int) -> str:
    return plural(count, "entry", "entries")


def epilog(note: str = "") -> str:
    """A subcommand's epilog: its own note, then the exit codes every command shares."""
    import textwrap

    return f"{textwrap.fill(note, 88)}\n\n{EXIT_CODES}" if note else EXIT_CODES


class UsageError(Exception):
    """A command line that cannot be carried out as given: one line on stderr, exit 2."""


def root_and_why(cache_dir: Optional[str]) -> tuple[str, str]:
    """The root the rules select and one phrase saying why, for ``cache-dir`` and
    ``info --root``: the rule that chose it, or that the default was unsafe and why."""
    from .._config import load_config
    from ..local.root import choose_root, unsafe_reason

    config = load_config(cache_dir=cache_dir)
    root = choose_root(config)
    if config.root_is_default and root != config.root:
        reason = unsafe_reason(config.root) or "it was not safe to share"
        return root, f"fell back to {root} because the default {config.root}: {reason}"
    rule = {"argument": "--cache-dir", "default": "the default (<tmp>/tfhub_modules)"}
    return root, f"chosen by {rule.get(config.root_source, config.root_source)}"


def open_cache(args: argparse.Namespace) -> Any:
    """The ``Cache`` of ``--cache-dir`` (imported on use: ``--help`` stays light)."""
    from .._cache import Cache

    return Cache(args.cache_dir)


def say(args: argparse.Namespace, message: str) -> None:
    """A status line on stderr (stdout is for results), unless ``--quiet``."""
    if not args.quiet:
        print(f"hubcache: {message}", file=sys.stderr, flush=True)


def dump(data: Any) -> None:
    """``--json`` output: one document on stdout, keys sorted so diffs stay small."""
    print(json.dumps(data, indent=1, sort_keys=True))


def short(text: str, width: int = 56) -> str:
    """A handle cut from the left to fit a column (its end tells models apart)."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]
