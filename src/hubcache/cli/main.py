"""The ``hubcache`` command: a thin layer over the library, and the only place that prints.

This module is the parser and the dispatch: the common options, one ``add_commands`` call
per command group (each group's module under ``cli/`` holds its parsers and handlers), the
logging set-up, and ``main``, which maps errors to exit codes.

stdout carries data only (paths, tables, JSON); everything for people goes to stderr.
Exit codes are listed in ``cli/common.py`` (shown by ``--help``) and docs/cli.md.

The common options (``--cache-dir``, ``-q``, ``-v``) are accepted before and after the
command: the top-level parser has them with their defaults, each subparser has them with
``SUPPRESS`` defaults, so a value given after the command wins and none is lost.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Optional

from .._errors import HubcacheError
from .common import (
    ENVIRONMENT,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_TERMINATED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    UsageError,
    epilog,
)


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so ``finally`` blocks clean up like on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands report their own unknown options.

    argparse hands a subcommand's leftovers back to the top-level parser, which then prints
    the top-level usage; a user who mistyped ``resolve --ofline`` needs resolve's usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--cache-dir``, ``-q``, ``-v``: on the top-level parser with defaults, on each
    subcommand without (``SUPPRESS``), so both places work and the later one wins."""
    default: Any = argparse.SUPPRESS
    parser.add_argument(
        "--cache-dir",
        "--tfhub_cache_dir",
        dest="cache_dir",
        metavar="DIR",
        default=None if top else default,
        help="cache root (default: $TFHUB_CACHE_DIR, else <tmp>/tfhub_modules)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else default,
        help="only errors on stderr",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose_top" if top else "verbose",
        default=0 if top else default,
        help="more log output (-vv: debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hubcache",
        description="Resolve TF Hub / Kaggle model handles into a local, "
        "tensorflow_hub-compatible cache.",
        epilog=f"{EXIT_CODES}\n\n{ENVIRONMENT}",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"hubcache {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # One module per command group, each registering its commands; --help lists them in
    # this order. serve's options live in cli/serve.py, which is imported only to run it
    # or to build this parser.
    from . import cache, demo, gc, plugins, prefetch, remove, resolve, transfer

    resolve.add_commands(sub, _common)  # resolve, cache-dir
    _add_serve(sub)
    demo.add_commands(sub, _common)
    gc.add_commands(sub, _common)
    cache.add_commands(sub, _common)  # ls, info, verify
    remove.add_commands(sub, _common)  # rm, prune
    prefetch.add_commands(sub, _common)
    transfer.add_commands(sub, _common)  # export, import
    plugins.add_commands(sub, _common)  # tfhub | kagglehub  enable | disable | status
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    args.verbose = getattr(args, "verbose", 0) + args.verbose_top
    level = (
        logging.ERROR
        if args.quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hubcache: %(message)s"))
    root = logging.getLogger("hubcache")
    root.addHandler(handler)
    root.setLevel(level)
    # The object-store libraries log their own retries and failures with tracebacks (which
    # Python's last-resort handler prints); hubcache reports those failures itself in one
    # line, so their records are shown only with -vv, through our handler.
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.propagate = False
        library.addHandler(handler if args.verbose >= 2 else logging.NullHandler())
        library.setLevel(logging.DEBUG if args.verbose >= 2 else logging.CRITICAL + 1)


_LIBRARY_LOGGERS = ("gcsfs", "s3fs", "fsspec", "aiobotocore", "botocore", "google", "asyncio")
# every logger the commands configure (``_setup_logging``, ``serve``'s access log)
_CONFIGURED = (
    "hubcache",
    "hubcache.serve.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.access",
    *_LIBRARY_LOGGERS,
)
_LoggerState = tuple[logging.Logger, list[logging.Handler], int, bool]


def _logging_state() -> list[_LoggerState]:
    """What ``main`` changes in the logging tree, so a program that calls ``main()`` in its
    own process (tests, notebooks, wrappers) gets it back: a ``-q`` there must not silence
    the library's warnings for the rest of that process."""
    found = []
    for name in _CONFIGURED:
        logger = logging.getLogger(name)
        found.append((logger, list(logger.handlers), logger.level, logger.propagate))
    return found


def _restore_logging(saved: list[_LoggerState]) -> None:
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="host the models in DIR over HTTP (TF Hub protocol); with --upstream, a "
        "pull-through mirror (needs hubcache[server])",
        epilog=epilog(),
    )
    _common(p)
    from .serve import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import run

    return run(args)


def _quiet_stdout() -> None:
    """The reader of stdout went away (``hubcache ls | head -1``): point stdout at
    /dev/null so the interpreter's final flush cannot fail again, and stop quietly, as a
    program killed by SIGPIPE would (the exit code says so)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (embedded use)
        pass


class _WatchedStdout:
    """stdout, noting whether a write to it failed: an OSError from stdout (a full disk,
    a device that refuses writes) is reported as such, any other one is not hidden."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except OSError:
            self.failed = True
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            self.failed = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _check_cache_dir(args: argparse.Namespace) -> None:
    """``--cache-dir ''`` would quietly mean the default root, shared by every user."""
    if args.cache_dir is not None and not args.cache_dir.strip():
        raise UsageError("--cache-dir '' names no folder; give a path, or leave it out")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = _logging_state()  # an embedding program keeps its logging as it was
    _setup_logging(args)
    previous: Optional[Callable[..., Any] | int] = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use)
        previous = None
    stdout = _WatchedStdout(sys.stdout)
    sys.stdout = stdout
    try:
        _check_cache_dir(args)
        code: int = args.func(args)
        sys.stdout.flush()  # here, so a closed pipe is reported below, not at interpreter exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except UsageError as exc:
        print(f"hubcache: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HubcacheError as exc:
        print(f"hubcache: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if not stdout.failed:
            raise
        # stdout is a full disk, a device that refuses writes...: say so in one line
        # instead of a traceback, and keep the interpreter's final flush quiet.
        print(f"hubcache: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        _quiet_stdout()
        return EXIT_UNEXPECTED
    except KeyboardInterrupt:
        print("hubcache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("hubcache: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        sys.stdout = stdout.stream
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _restore_logging(saved)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
