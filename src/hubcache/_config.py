"""All configuration in one frozen object, read from the environment on every call.

Nothing here runs at import time: tests and long-lived notebooks change ``TFHUB_CACHE_DIR``
between calls and expect the next call to see it (tensorflow_hub reads it per call too).
The environment is passed in as a mapping so tests never have to patch ``os.environ``.

Cache root, first match wins (DESIGN §2):

1. an explicit ``cache_dir=`` argument or ``--cache-dir`` flag;
2. ``TFHUB_CACHE_DIR`` when non-empty;
3. the absl flag ``--tfhub_cache_dir`` when some program defined it (tensorflow_hub does);
4. ``os.path.join(tempfile.gettempdir(), "tfhub_modules")``, checked for safety (§5).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Mapping
from typing import Optional

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
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5  # first retry delay in seconds, doubled each time, with jitter
    fsync: bool = True
    limits: Limits = dataclasses.field(default_factory=Limits)


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
    if "://" in path:
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


def load_config(
    *,
    cache_dir: Optional[str] = None,
    offline: Optional[bool] = None,
    progress: Optional[bool] = None,
    environ: Optional[Mapping[str, str]] = None,
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
        backoff=_number(env, "HUBCACHE_RETRY_BACKOFF", Config.backoff),
        fsync=_flag(env, "HUBCACHE_FSYNC") is not False,
    )
