"""All configuration in one frozen object, read from the environment on every call.

Nothing here runs at import time: tests and long-lived notebooks change ``TFHUB_CACHE_DIR``
between calls and expect the next call to see it (tensorflow_hub reads it per call too).
The environment is passed in as a mapping so tests never have to patch ``os.environ``.

Cache root, first match wins (docs/configuration.md):

1. an explicit ``cache_dir=`` argument or ``--cache-dir`` flag;
2. ``TFHUB_CACHE_DIR`` when non-empty;
3. the absl flag ``--tfhub_cache_dir`` when some program defined it (tensorflow_hub does);
4. ``os.path.join(tempfile.gettempdir(), "tfhub_modules")``, checked for safety (§5).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from ._errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
LOAD_FORMATS = ("AUTO", "COMPRESSED", "UNCOMPRESSED")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may make us write (defaults are generous on purpose:
    the largest public SavedModels are a few tens of GB and a few thousand files)."""

    max_total_bytes: int = 256 * 1024**3  # 256 GiB of extracted data
    max_members: int = 1_000_000
    max_name_length: int = 4096  # bytes of a member's path, PATH_MAX on Linux
    max_depth: int = 64  # path components
    max_ratio: float = 2000.0  # extracted bytes per compressed byte, past 16 MiB of output
    max_component_length: int = 255  # bytes of one path component, NAME_MAX on Linux


# environment variable -> (Limits field, type): every limit can be tightened or loosened
_LIMIT_VARS = {
    "HUBCACHE_MAX_BYTES": ("max_total_bytes", int),
    "HUBCACHE_MAX_MEMBERS": ("max_members", int),
    "HUBCACHE_MAX_NAME_LENGTH": ("max_name_length", int),
    "HUBCACHE_MAX_DEPTH": ("max_depth", int),
    "HUBCACHE_MAX_RATIO": ("max_ratio", float),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One resolve call's settings. Build it with :func:`load_config`."""

    root: str
    root_source: str  # "argument", "TFHUB_CACHE_DIR", "--tfhub_cache_dir", "default"
    root_is_default: bool = False
    load_format: str = "AUTO"
    progress: Optional[bool] = None  # None: on when stderr is a TTY
    verify_tls: bool = True
    offline: bool = False
    lock_timeout: Optional[float] = None  # None: wait while the holder makes progress
    lock_lease: float = 120.0  # a holder on another host silent this long is taken over
    connect_timeout: float = 30.0
    read_timeout: float = 60.0  # seconds of silence on the socket (each read)
    # Stall detector: a server can drip one byte per second forever and never trip the read
    # timeout, so over every window of ``stall_timeout`` seconds at least ``min_speed``
    # bytes per second must arrive on average, or the stream counts as broken.
    stall_timeout: float = 60.0
    min_speed: float = 1024.0
    retries: int = 5
    connections: Optional[int] = None  # parallel ranged connections; None: adaptive
    backoff: float = 0.5  # first retry delay in seconds, doubled each time, with jitter
    fsync: bool = True
    headers: tuple[tuple[str, str], ...] = ()  # HUBCACHE_HTTP_HEADERS, for the origin host only
    limits: Limits = dataclasses.field(default_factory=Limits)
    mirrors: tuple[tuple[str, str], ...] = ()  # (URL prefix, replacement), tried in order
    no_origin: bool = False  # with mirrors: never fall back to the handle's own URL
    max_size: Optional[int] = None  # HUBCACHE_MAX_SIZE: prune LRU beyond it after a download
    shared_cache: str = ""  # HUBCACHE_SHARED_CACHE: a second tier (gs://, s3://, a path)
    # As tensorflow_hub's plug-in: a lock written by tensorflow_hub itself is judged by its
    # rule (no progress for this many seconds), not by ``lock_lease``. None: ours for all.
    foreign_lock_lease: Optional[float] = None


def _flag(environ: Mapping[str, str], name: str) -> Optional[bool]:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigurationError(f"{name}={raw!r} must not be negative")
    return value


def _limits(environ: Mapping[str, str]) -> Limits:
    values: dict[str, Any] = {}
    for name, (attr, kind) in _LIMIT_VARS.items():
        if environ.get(name, "").strip():
            value = _number(environ, name, 0.0)
            if value <= 0:
                raise ConfigurationError(f"{name}={environ[name]!r} must be positive")
            values[attr] = kind(value)
    return Limits(**values)


def _headers(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``HUBCACHE_HTTP_HEADERS``: a JSON object of extra request headers (e.g. a token).

    JSON because header values contain ``;``, ``,`` and ``=``. They are sent to the host of
    the handle only, never after a redirect to another host (docs/architecture.md: credentials never
    travel to another host)."""
    raw = environ.get("HUBCACHE_HTTP_HEADERS", "").strip()
    if not raw:
        return ()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
        for k, v in parsed.items()
    ):
        raise ConfigurationError(
            "HUBCACHE_HTTP_HEADERS must be a JSON object of header names to string values, "
            'e.g. {"Authorization": "Bearer ..."}'
        )
    return tuple(parsed.items())


def _absl_cache_dir() -> Optional[str]:
    """The value of ``--tfhub_cache_dir`` if some program defined the absl flag.

    We never import absl ourselves (and never define the flag: tensorflow_hub defines it at
    import and a second definition is an error); we only look when absl is already loaded.
    """
    flags_module = sys.modules.get("absl.flags")
    if flags_module is None:
        return None
    flags = getattr(flags_module, "FLAGS", None)
    try:
        if flags is None or "tfhub_cache_dir" not in flags:
            return None
        value = flags["tfhub_cache_dir"].value
    except Exception:
        return None
    return str(value) if value else None


def expand(path: str) -> str:
    """Expand ``~`` and ``$VARS`` in a local path; URLs are returned unchanged."""
    if "://" in path or ("~" not in path and "$" not in path):
        return path
    return os.path.expanduser(os.path.expandvars(path))


def select_root(cache_dir: Optional[str], environ: Mapping[str, str]) -> tuple[str, str]:
    """Return (root, which rule chose it) without touching the disk."""
    if cache_dir:
        return expand(os.fspath(cache_dir)), "argument"
    env = environ.get("TFHUB_CACHE_DIR", "")
    if env:
        return expand(env), "TFHUB_CACHE_DIR"
    flag = _absl_cache_dir()
    if flag:
        return expand(flag), "--tfhub_cache_dir"
    return os.path.join(tempfile.gettempdir(), "tfhub_modules"), "default"


def parse_mirrors(spec: Union[str, Sequence[str], None]) -> tuple[tuple[str, str], ...]:
    """``"https://tfhub.dev/=https://m.example/tfhub/,..."`` (or a list of such pairs) ->
    ((prefix, replacement), ...), order kept: the order is the order they are tried."""
    if not spec:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs = []
    for item in items:
        if not item.strip():
            continue
        prefix, sep, replacement = item.strip().partition("=")
        if not sep or "://" not in prefix or "://" not in replacement:
            raise ConfigurationError(
                f"mirror {item.strip()!r} is not PREFIX=REPLACEMENT with two URLs, e.g. "
                "https://tfhub.dev/=https://mirror.example/tfhub/"
            )
        pairs.append((prefix, replacement))
    return tuple(pairs)


def load_config(
    *,
    cache_dir: Optional[str] = None,
    offline: Optional[bool] = None,
    progress: Optional[bool] = None,
    environ: Optional[Mapping[str, str]] = None,
    mirrors: Union[str, Sequence[str], None] = None,
    no_origin: Optional[bool] = None,
) -> Config:
    """Read the settings of one call: explicit arguments win over the environment."""
    env = os.environ if environ is None else environ
    root, source = select_root(cache_dir, env)
    load_format = env.get("TFHUB_MODEL_LOAD_FORMAT", "AUTO").strip().upper() or "AUTO"
    if load_format not in LOAD_FORMATS:
        raise ConfigurationError(
            f"TFHUB_MODEL_LOAD_FORMAT={env['TFHUB_MODEL_LOAD_FORMAT']!r} is not one of "
            f"{', '.join(LOAD_FORMATS)} (case-insensitive); fix or unset it"
        )
    if offline is None:
        offline = bool(_flag(env, "HUBCACHE_OFFLINE"))
    if progress is None:
        progress = _flag(env, "TFHUB_DOWNLOAD_PROGRESS")
    lock_timeout: Optional[float] = None
    if env.get("HUBCACHE_LOCK_TIMEOUT", "").strip():
        lock_timeout = _number(env, "HUBCACHE_LOCK_TIMEOUT", 0.0)
    # tensorflow_hub's exact semantics: only the exact string "true" disables checks.
    verify_tls = env.get("TFHUB_DISABLE_CERT_VALIDATION", "") != "true"
    return Config(
        root=root,
        root_source=source,
        root_is_default=source == "default",
        load_format=load_format,
        progress=progress,
        verify_tls=verify_tls,
        offline=offline,
        lock_timeout=lock_timeout,
        lock_lease=_number(env, "HUBCACHE_LOCK_LEASE", Config.lock_lease),
        connect_timeout=_number(env, "HUBCACHE_CONNECT_TIMEOUT", Config.connect_timeout),
        read_timeout=_number(env, "HUBCACHE_READ_TIMEOUT", Config.read_timeout),
        retries=int(_number(env, "HUBCACHE_RETRIES", Config.retries)),
        connections=int(_number(env, "HUBCACHE_CONNECTIONS", 0)) or None,
        backoff=_number(env, "HUBCACHE_RETRY_BACKOFF", Config.backoff),
        stall_timeout=_number(env, "HUBCACHE_STALL_TIMEOUT", Config.stall_timeout),
        min_speed=_number(env, "HUBCACHE_MIN_SPEED", Config.min_speed),
        fsync=_flag(env, "HUBCACHE_FSYNC") is not False,
        headers=_headers(env),
        limits=_limits(env),
        mirrors=parse_mirrors(env.get("HUBCACHE_MIRRORS", "") if mirrors is None else mirrors),
        no_origin=bool(_flag(env, "HUBCACHE_NO_ORIGIN")) if no_origin is None else no_origin,
        max_size=_max_size(env),
        shared_cache=expand(env.get("HUBCACHE_SHARED_CACHE", "").strip()),
    )


def tfhub_plugin_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """``HUBCACHE_TFHUB_PLUGIN``: unset or yes turns the tensorflow_hub plug-in on when its
    ``.pth`` is installed, no (``0``) turns it off without uninstalling it."""
    env = os.environ if environ is None else environ
    raw = env.get("HUBCACHE_TFHUB_PLUGIN", "").strip()
    if not raw:
        return True
    value = _flag(env, "HUBCACHE_TFHUB_PLUGIN")
    if value is None:
        raise ConfigurationError(
            f"HUBCACHE_TFHUB_PLUGIN={raw!r} is not a yes/no value (1/0, true/false, yes/no, "
            "on/off); set it to 0 to turn the tensorflow_hub plug-in off, or unset it"
        )
    return value


def _max_size(environ: Mapping[str, str]) -> Optional[int]:
    raw = environ.get("HUBCACHE_MAX_SIZE", "").strip()
    if not raw:
        return None
    from ._units import parse_size

    return parse_size(raw)
