"""``hubcache serve DIR``: the command line of the server in ``hubcache.serve``.

Checks every option before anything listens (one line and exit 2 for a bad one), needs
the ``[server]`` extra (aiohttp, prometheus_client) and says so in one line when it is
missing, prints ``serving DIR at URL`` on stdout once listening (scripts wait for it), and
an access-log line per request on stderr.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import re
import socket
import stat
import sys
from typing import Any, Optional

from .. import _platform
from .._errors import CacheDirError, ConfigurationError, HubcacheError

WORKERS_PER_CORE = 4  # --workers above this many per core is refused (a typo, not a plan)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")  # one label of a host name


class ServeError(ConfigurationError):
    """A server that cannot start because of how it was asked to (exit 2)."""


class ServeDirError(CacheDirError):
    """DIR cannot hold what a mirror fetches (exit 6)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "directory", metavar="DIR", help="a folder, or gs://... / s3://... with --upstream"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000; 0: any free)")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="[PREFIX=]URL",
        help="pull-through: fetch what DIR lacks from URL (repeatable; with PREFIX, only "
        "paths under /PREFIX/ go to that URL); a Kaggle upstream (www.kaggle.com) also "
        "answers Kaggle's model API",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="require 'Authorization: Bearer <token>', a token of FILE (one per line)",
    )
    p.add_argument(
        "--max-size",
        metavar="SIZE",
        help="evict what the mirror stored beyond SIZE (e.g. 500GB), least recently served first",
    )
    p.add_argument(
        "--rate-limit",
        metavar="BYTES_PER_SEC",
        help="throttle each response, e.g. 20M (for testing; sizes as in --max-size)",
    )
    p.add_argument(
        "--negative-ttl",
        default="30s",
        metavar="DURATION",
        help="remember an upstream 404 this long (30s)",
    )
    p.add_argument(
        "--negative-max",
        type=int,
        default=10_000,
        metavar="N",
        help="remember at most N upstream 404s, the oldest forgotten first (10000)",
    )
    p.add_argument(
        "--max-fills",
        type=int,
        default=64,
        metavar="N",
        help="fetch at most N archives from upstreams at once; other misses get 503 with "
        "Retry-After (64)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve with N processes sharing the port and DIR, for N cores (1; at most "
        f"{WORKERS_PER_CORE} per core); not with --max-size, not on Windows",
    )
    p.add_argument(
        "--header-timeout",
        default="10s",
        metavar="DURATION",
        help="close a connection whose request headers are not whole this long after they "
        "began (after it opened, for its first request) (10s)",
    )
    p.add_argument(
        "--idle-timeout",
        default="60s",
        metavar="DURATION",
        help="close a keep-alive connection idle between requests this long, and cut a "
        "response whose client takes no byte for this long (60s)",
    )
    p.add_argument(
        "--drain-timeout",
        default="30s",
        metavar="DURATION",
        help="on SIGTERM, let in-flight responses finish for exactly this long, then cut "
        "them (30s; 0: cut at once)",
    )


def _size(text: Optional[str], option: str) -> Optional[int]:
    from .._units import parse_size

    if text is None:
        return None
    try:
        value = parse_size(text)
    except ConfigurationError as exc:
        raise ServeError(f"{option}: {exc}") from None
    if value <= 0:
        raise ServeError(f"{option} must be more than 0, e.g. 20M")
    return value


def _duration(text: str, option: str) -> float:
    from .._units import parse_duration

    try:
        return parse_duration(text)
    except ConfigurationError as exc:
        raise ServeError(f"{option}: {exc}") from None


def _positive(text: str, option: str) -> float:
    value = _duration(text, option)
    if value <= 0:
        raise ServeError(f"{option} must be more than 0, e.g. 10s")
    return value


def _count(value: int, option: str) -> int:
    if value < 1:
        raise ServeError(f"{option} must be 1 or more")
    return value


def _tokens(path: Optional[str]) -> frozenset[str]:
    """The tokens of ``--token-file``: one a line, blank lines and ``#`` comments (after
    any indentation) skipped. Only a regular file is read: a FIFO or a device would block
    the start forever or never end."""
    if path is None:
        return frozenset()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ServeError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ServeError(f"--token-file {path} is not a regular file; give a file of tokens")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        tokens = frozenset(line for line in lines if line and not line.startswith("#"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(f"--token-file {path}: cannot read it ({exc})") from None
    if not tokens:
        raise ServeError(f"--token-file {path} holds no token (one per line)")
    return tokens


def _check_host(host: str) -> str:
    """An IP address or a host name by RFC 1123, else one line (a traceback from deep in
    the resolver is what an operator would get otherwise)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ServeError(
            f"--host {host!r} is not an IP address or a host name; e.g. --host 127.0.0.1 "
            "or --host 0.0.0.0 (every interface)"
        )
    return host


def _check_directory(directory: str, pull_through: bool) -> str:
    if not directory.strip():
        raise ServeError("DIR is empty; name the folder to serve, e.g. hubcache serve ./models")
    if "://" in directory and not directory.startswith("file://"):
        if not pull_through:
            raise ServeError(f"{directory}: a bucket can be served only as a mirror (--upstream)")
        return directory.rstrip("/")
    directory = os.path.abspath(os.path.expanduser(directory.removeprefix("file://")))
    if not os.path.isdir(directory):
        raise ServeError(f"{directory} is not a directory; create it or name another")
    if pull_through and not os.access(directory, os.W_OK | os.X_OK):
        raise ServeDirError(
            f"{directory} is not writable, and a mirror stores what it fetches there; "
            "fix its permissions or name another DIR"
        )
    return directory


def run(args: argparse.Namespace) -> int:
    """The ``serve`` command. Raises ServeError / HubcacheError for the CLI to print."""
    import importlib.util

    # found, not imported: with --workers, prometheus_client must first be imported by the
    # workers, after the parent has chosen its multiprocess mode (serve.metrics)
    if any(importlib.util.find_spec(name) is None for name in ("aiohttp", "prometheus_client")):
        raise ServeError("hubcache serve needs the server extra: pip install 'hubcache[server]'")
    from ..serve.metrics import MULTIPROC_ENV

    # prometheus_client's multiprocess switch is the server's own (--workers sets a private
    # folder): one inherited from the environment pointed the counters at another program's
    # folder, or at none (a traceback at start)
    os.environ.pop(MULTIPROC_ENV, None)
    from .._config import load_config
    from ..serve.pullthrough import parse_upstream

    host = _check_host(args.host)
    if not 0 <= args.port <= 65535:
        raise ServeError(f"--port {args.port} is not a port number (0-65535; 0 picks a free one)")
    try:
        upstreams = tuple(parse_upstream(spec) for spec in args.upstream)
    except ConfigurationError as exc:
        raise ServeError(str(exc)) from None
    prefixes = [u.prefix for u in upstreams]
    if len(set(prefixes)) != len(prefixes):
        raise ServeError("two --upstream options share a prefix; give each prefix once")
    max_size = _size(args.max_size, "--max-size")
    if max_size is not None and not upstreams:
        raise ServeError("--max-size needs --upstream: only what the mirror stored is evicted")
    directory = _check_directory(args.directory, bool(upstreams))
    if max_size is not None and "://" in directory:
        raise ServeError(
            "--max-size works on a local DIR; on a bucket use its lifecycle rules instead"
        )
    if args.workers < 1:
        raise ServeError(f"--workers {args.workers}: give 1 or more processes")
    cores = os.cpu_count() or 1
    if args.workers > WORKERS_PER_CORE * cores:
        # a typo (--workers 10000) would otherwise fork that many servers at once
        raise ServeError(
            f"--workers {args.workers}: at most {WORKERS_PER_CORE * cores} here "
            f"({WORKERS_PER_CORE} per core, {cores} cores); about one per core serves best"
        )
    if args.workers > 1 and max_size is not None:
        raise ServeError(
            "--workers with --max-size is refused: eviction keeps its index of sizes and uses "
            "in one process's memory; use one process (--workers 1) or drop --max-size"
        )
    if args.workers > 1 and not _platform.CAN_FORK:
        raise ServeError("--workers needs fork(), which Windows lacks; use --workers 1")
    from ..serve.app import Settings

    settings = Settings(
        directory=directory,
        host=host,
        port=args.port,
        upstreams=upstreams,
        tokens=_tokens(args.token_file),
        access_log=None if args.quiet else sys.stderr,  # one line per request
        max_size=max_size,
        rate_limit=_size(args.rate_limit, "--rate-limit"),
        negative_ttl=_duration(args.negative_ttl, "--negative-ttl"),
        negative_max=_count(args.negative_max, "--negative-max"),
        max_fills=_count(args.max_fills, "--max-fills"),
        drain=_duration(args.drain_timeout, "--drain-timeout"),
        header_timeout=_positive(args.header_timeout, "--header-timeout"),
        idle_timeout=_positive(args.idle_timeout, "--idle-timeout"),
    )
    config = load_config(cache_dir=None, progress=False)
    if "://" in directory:
        _probe_store(directory, config.store_timeout)
    _quiet_aiohttp()
    return _run(settings, config, directory, args.workers)


def _probe_store(url: str, timeout: float) -> None:
    """Read one (absent) object, within ``timeout`` seconds: a bucket that cannot be reached
    or read is one line and exit 4 at start, not an error on every request later."""
    import threading

    from .._errors import DownloadError
    from ..serve.archives import ArchiveStore

    outcome: list[BaseException] = []

    def probe() -> None:
        try:
            ArchiveStore(url).storage.read(".hubcache-probe")
        except BaseException as exc:  # reported below, in this thread's words
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="hubcache-store-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DownloadError(
            f"{url} did not answer within {timeout:g}s (HUBCACHE_STORE_TIMEOUT); check the "
            "bucket's endpoint, network and credentials"
        )
    if outcome:
        exc = outcome[0]
        if isinstance(exc, HubcacheError):
            raise exc
        raise DownloadError(
            f"{url} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); check the bucket "
            "name, its endpoint and the credentials"
        )


def _quiet_aiohttp() -> None:
    """aiohttp's own loggers speak through ours, in one line and without tracebacks (the
    access log is ``serve.accesslog``'s, on stderr unless -q)."""
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "asyncio"):
        logging.getLogger(name).addHandler(_OneLine())
        logging.getLogger(name).propagate = False


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            exc = record.exc_info[1] if record.exc_info else None
            detail = f": {type(exc).__name__}: {exc}" if exc else ""
            print(f"hubcache: {record.getMessage()}{detail}", file=sys.stderr, flush=True)


def _run(settings: Any, config: Any, directory: str, workers: int = 1) -> int:
    import asyncio

    from ..serve.app import Server, run_workers, serve

    def ready(url: str) -> None:
        print(f"serving {directory} at {url}", flush=True)

    try:
        if workers > 1:
            return run_workers(settings, config, workers, ready)
        asyncio.run(serve(Server(settings, config), ready))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {settings.port} on {settings.host} is in use; stop what uses it or "
                "choose another with --port"
            ) from None
        if exc.errno in (errno.EACCES, errno.EADDRNOTAVAIL) or isinstance(exc, socket.gaierror):
            raise ServeError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                "choose another --host or --port (ports below 1024 need privileges)"
            ) from None
        raise
    return 0
