"""All configuration in one frozen object, read from the environment on every call.

Nothing here runs at import time: tests and long-lived notebooks change ``TFHUB_CACHE_DIR``
between calls and expect the next call to see it (tensorflow_hub reads it per call too).
The environment is passed in as a mapping so tests never have to patch ``os.environ``.

Cache root, first match wins (docs/configuration.md):

1. an explicit ``cache_dir=`` argument or ``--cache-dir`` flag;
2. ``TFHUB_CACHE_DIR`` when non-empty;
3. the absl flag ``--tfhub_cache_dir`` when some program defined it (tensorflow_hub does);
4. ``os.path.join(tempfile.gettempdir(), "tfhub_modules")``, checked for safety: a real
   directory owned by this user and writable by no one else (docs/configuration.md).

Layer: core (docs/architecture.md); it stands on the values layer (``_values``, ``_units``)
and ``_errors``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, TypeVar, Union

from ._errors import ConfigurationError
from ._values import NO_WORDS, flag, integer, number, parse_json

T = TypeVar("T")
LOAD_FORMATS = ("AUTO", "COMPRESSED", "UNCOMPRESSED")
MAX_CONNECTIONS = 8  # parallel ranged connections: more only adds load on the server
MAX_RETRIES = 100
MAX_BACKOFF = 60.0  # seconds: a first retry delay beyond this is a typo
# seconds: a socket or store timeout beyond a day is a typo, and 1e300 (a finite decimal)
# would overflow the C time type under socket.settimeout() and thread waits
MAX_TIMEOUT = 86400.0


class Limits(NamedTuple):
    """Bounds on what one archive may make us write (defaults are generous on purpose:
    the largest public SavedModels are a few tens of GB and a few thousand files)."""

    max_total_bytes: int = 256 * 1024**3  # 256 GiB of extracted data
    max_members: int = 1_000_000
    max_name_length: int = 4096  # bytes of a member's path, PATH_MAX on Linux
    max_depth: int = 64  # path components
    max_ratio: float = 2000.0  # extracted bytes per compressed byte, past 16 MiB of output
    max_component_length: int = 255  # bytes of one path component, NAME_MAX on Linux


# environment variable -> (Limits field, type): every limit can be tightened or loosened
_DEFAULT_LIMITS = Limits()
_LIMIT_VARS = {
    "HUBCACHE_MAX_BYTES": ("max_total_bytes", int),
    "HUBCACHE_MAX_MEMBERS": ("max_members", int),
    "HUBCACHE_MAX_NAME_LENGTH": ("max_name_length", int),
    "HUBCACHE_MAX_DEPTH": ("max_depth", int),
    "HUBCACHE_MAX_RATIO": ("max_ratio", float),
}


class Config(NamedTuple):
    """One resolve call's settings. Build it with :func:`load_config`."""

    root: str
    root_source: str  # "argument", "TFHUB_CACHE_DIR", "--tfhub_cache_dir", "default"
    root_is_default: bool = False
    load_format: str = "AUTO"
    progress: Optional[bool] = None  # None: on when stderr is a TTY
    verify_tls: bool = True
    # The CA variables as set (SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE,
    # CURL_CA_BUNDLE; "" when unset): the TLS context of a connection pool is built from them
    ca_variables: tuple[str, ...] = ("", "", "", "")
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
    limits: Limits = Limits()
    mirrors: tuple[tuple[str, str], ...] = ()  # (URL prefix, replacement), tried in order
    no_origin: bool = False  # with mirrors: never fall back to the handle's own URL
    # HUBCACHE_STORE_TIMEOUT: how long an object store (gs://, s3://) may take to answer
    # before it counts as unreachable; without it a store with no credentials or a wrong
    # endpoint keeps its client library retrying for a minute or more.
    store_timeout: float = 10.0
    max_size: Optional[int] = None  # HUBCACHE_MAX_SIZE: prune LRU beyond it after a download
    shared_cache: str = ""  # HUBCACHE_SHARED_CACHE: a second tier (gs://, s3://, a path)
    kagglehub: bool = False  # HUBCACHE_KAGGLEHUB: also publish Kaggle models in kagglehub's cache
    # As tensorflow_hub's plug-in: a lock written by tensorflow_hub itself is judged by its
    # rule (no progress for this many seconds), not by ``lock_lease``. None: ours for all.
    foreign_lock_lease: Optional[float] = None


_DEFAULTS: Mapping[str, Any] = Config._field_defaults  # what an unset variable means


def _limits(environ: Mapping[str, str]) -> Limits:
    values: dict[str, Any] = {}
    for name, (attr, kind) in _LIMIT_VARS.items():
        if kind is int:
            values[attr] = integer(environ, name, getattr(_DEFAULT_LIMITS, attr), low=1)
        else:
            values[attr] = number(environ, name, getattr(_DEFAULT_LIMITS, attr), low_open=True)
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
        parsed = parse_json(raw)
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
    for name, value in parsed.items():
        # what http.client would refuse at the first request with a traceback: an empty
        # name or one with ':' or non-ASCII letters, a value outside Latin-1 or with controls
        if not _TOKEN.fullmatch(name):
            raise ConfigurationError(
                f"HUBCACHE_HTTP_HEADERS: {name!r} is not an HTTP header name (ASCII letters, "
                "digits and !#$%&'*+-.^_`|~ only), e.g. Authorization"
            )
        if name.lower() in _SET_PER_REQUEST:
            raise ConfigurationError(
                f"HUBCACHE_HTTP_HEADERS: {name} is set by hubcache itself for each request "
                "(resumes, parallel parts, the body's framing); one given here would break "
                "every download. Remove it"
            )
        if not all((" " <= c <= "\xff" and c != "\x7f") or c == "\t" for c in value):
            raise ConfigurationError(
                f"HUBCACHE_HTTP_HEADERS: the value of {name} holds a character HTTP cannot "
                "send (a control character, or one outside Latin-1); fix or unset it"
            )
    return tuple(parsed.items())


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110's token: a header name
# headers each request sets for itself: a fixed one (Range: every archive "not an archive")
_SET_PER_REQUEST = frozenset(
    {
        "range",
        "if-range",
        "content-length",
        "transfer-encoding",
        "te",
        "host",
        "connection",
        "accept-encoding",
        "expect",
        "upgrade",
    }
)


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
    if cache_dir is not None:
        text = os.fspath(cache_dir)
        if not str(text).strip():  # an empty variable in a script, not "use the default"
            raise ConfigurationError(
                "cache_dir is empty; pass a folder (or a gs://, s3:// URL), or leave it out "
                "to use TFHUB_CACHE_DIR and the default"
            )
        return expand(_no_blanks("cache_dir", str(text))), "argument"
    env = environ.get("TFHUB_CACHE_DIR", "")
    if env:
        return expand(_no_blanks("TFHUB_CACHE_DIR", env)), "TFHUB_CACHE_DIR"
    flag = _absl_cache_dir()
    if flag:
        return expand(_no_blanks("--tfhub_cache_dir", flag)), "--tfhub_cache_dir"
    return os.path.join(tempfile.gettempdir(), "tfhub_modules"), "default"


def _no_blanks(name: str, text: str) -> str:
    """A root with blanks around it (``TFHUB_CACHE_DIR= /data``, a .env file's ``= /data``)
    made a cache in a folder named " " under the current one, or one named "data ": refused,
    as a handle with surrounding blanks is."""
    if text != text.strip():
        raise ConfigurationError(
            f"{name}={text!r} begins or ends with white space, which would name another "
            "folder; remove it"
        )
    return text


def _check_mirror_url(item: str, url: str) -> None:
    """A mirror is an HTTP(S) server with a host: anything else would fail later with a
    traceback (an unparsable address) or advice to install an extra (ftp://, gs://)."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(
            f"mirror {item!r}: {url!r} is not a valid URL ({exc}); write it as "
            "http(s)://host[:port]/path/"
        ) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ConfigurationError(
            f"mirror {item!r}: a mirror must be an http:// or https:// URL with a host, not {url!r}"
        )


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
        _check_mirror_url(item.strip(), replacement)
        pairs.append((prefix, replacement))
    return tuple(pairs)


# Every variable load_config reads: the memo below is keyed by their text, so a variable
# missing here would be read once and then ignored (tests/test_config.py keeps it complete).
# Certificate authorities: OpenSSL reads the first two itself; the last two are requests'
# and curl's, which hubcache honours as they do (fetch.pool builds the TLS context).
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
CONFIG_VARIABLES = (
    "TFHUB_CACHE_DIR",
    "TFHUB_MODEL_LOAD_FORMAT",
    "TFHUB_DOWNLOAD_PROGRESS",
    "TFHUB_DISABLE_CERT_VALIDATION",
    *CA_VARIABLES,
    "HUBCACHE_OFFLINE",
    "HUBCACHE_NO_ORIGIN",
    "HUBCACHE_LOCK_TIMEOUT",
    "HUBCACHE_LOCK_LEASE",
    "HUBCACHE_CONNECT_TIMEOUT",
    "HUBCACHE_READ_TIMEOUT",
    "HUBCACHE_RETRIES",
    "HUBCACHE_CONNECTIONS",
    "HUBCACHE_RETRY_BACKOFF",
    "HUBCACHE_STALL_TIMEOUT",
    "HUBCACHE_MIN_SPEED",
    "HUBCACHE_STORE_TIMEOUT",
    "HUBCACHE_FSYNC",
    "HUBCACHE_HTTP_HEADERS",
    "HUBCACHE_MIRRORS",
    "HUBCACHE_MAX_SIZE",
    "HUBCACHE_SHARED_CACHE",
    "HUBCACHE_KAGGLEHUB",
    *_LIMIT_VARS,
)
_MEMO: dict[tuple[Any, ...], Config] = {}
_NO_ARGUMENTS = (None,) * 6
_LAST: list[Any] = []  # [key, Config] of the last call without arguments
_ENCODED: list[tuple[Any, ...]] = []  # the variables' names as os.environ stores them


def _snapshot() -> tuple[Any, ...]:
    """The text of every CONFIG_VARIABLES entry in ``os.environ``, cheaply: a warm resolve
    checks the settings on every call, so this must cost about a microsecond, not the
    ~30 µs of 30 ``os.environ.get`` calls (each encodes its key, and raises KeyError
    inside when the variable is unset). ``os._Environ`` keeps the encoded values in
    ``_data``, keyed by ``encodekey(name)`` on every platform; anything else is read the
    slow way."""
    env = os.environ
    data = getattr(env, "_data", None)
    encode = getattr(env, "encodekey", None)
    if type(data) is not dict or encode is None:
        return tuple(env.get(name) for name in CONFIG_VARIABLES)
    if not _ENCODED:
        _ENCODED.append(tuple(encode(name) for name in CONFIG_VARIABLES))
    return tuple(map(data.get, _ENCODED[0]))


def load_config(
    *,
    cache_dir: Optional[str] = None,
    offline: Optional[bool] = None,
    progress: Optional[bool] = None,
    environ: Optional[Mapping[str, str]] = None,
    mirrors: Union[str, Sequence[str], None] = None,
    no_origin: Optional[bool] = None,
    kagglehub: Optional[bool] = None,
) -> Config:
    """Read the settings of one call: explicit arguments win over the environment.

    Every variable is parsed and checked on every call (a bad value is an error on a cache
    hit as on a miss), but from ``os.environ`` the parsed result is memoised by the text of
    the variables it reads, so repeating a call with unchanged settings costs a lookup."""
    if environ is not None:
        return _load(cache_dir, offline, progress, environ, mirrors, no_origin, kagglehub)
    key: tuple[Any, ...]
    args = (cache_dir, offline, progress, mirrors, no_origin, kagglehub)
    if args == _NO_ARGUMENTS:
        # the common call: every argument left out (the temp folder: the default root's home)
        key = (_snapshot(), _absl_cache_dir(), tempfile.tempdir or tempfile.gettempdir())
        last = _LAST
        if last and last[0] == key:  # the same settings as the last call: no hashing
            config: Config = last[1]
            return config
    else:
        spec = tuple(mirrors) if mirrors is not None and not isinstance(mirrors, str) else mirrors
        key = (_snapshot(), _absl_cache_dir(), tempfile.gettempdir(), cache_dir, offline)
        key += (progress, spec, no_origin, kagglehub)
    found = _MEMO.get(key)
    if found is None:
        found = _load(cache_dir, offline, progress, os.environ, mirrors, no_origin, kagglehub)
        if len(_MEMO) >= 256:
            _MEMO.clear()
        _MEMO[key] = found
    if args == _NO_ARGUMENTS:
        _LAST[:] = [key, found]
    return found


def _load(  # noqa: PLR0917 - the private body of load_config, same parameters in order
    cache_dir: Optional[str],
    offline: Optional[bool],
    progress: Optional[bool],
    env: Mapping[str, str],
    mirrors: Union[str, Sequence[str], None],
    no_origin: Optional[bool],
    kagglehub: Optional[bool],
) -> Config:
    root, source = select_root(cache_dir, env)
    # Kept as given here and checked by check_load_format() in the calls that download: a
    # bad value must not stop `hubcache ls` or `rm`, which never use it.
    load_format = env.get("TFHUB_MODEL_LOAD_FORMAT", "AUTO").strip().upper() or "AUTO"
    # Every variable is checked even when an argument overrides it: a typo is reported
    # the first time, not on the first call that happens to rely on the variable.
    env_offline = flag(env, "HUBCACHE_OFFLINE")
    env_progress = flag(env, "TFHUB_DOWNLOAD_PROGRESS")
    env_no_origin = flag(env, "HUBCACHE_NO_ORIGIN")
    return Config(
        root=root,
        root_source=source,
        root_is_default=source == "default",
        load_format=load_format,
        progress=env_progress if progress is None else progress,
        verify_tls=_verify_tls(env),
        ca_variables=tuple(env.get(name, "") for name in CA_VARIABLES),
        offline=bool(env_offline) if offline is None else offline,
        lock_timeout=number(env, "HUBCACHE_LOCK_TIMEOUT", None),
        lock_lease=number(env, "HUBCACHE_LOCK_LEASE", _DEFAULTS["lock_lease"], low_open=True),
        connect_timeout=_timeout(env, "HUBCACHE_CONNECT_TIMEOUT", _DEFAULTS["connect_timeout"]),
        read_timeout=_timeout(env, "HUBCACHE_READ_TIMEOUT", _DEFAULTS["read_timeout"]),
        retries=integer(env, "HUBCACHE_RETRIES", _DEFAULTS["retries"], high=MAX_RETRIES),
        connections=integer(env, "HUBCACHE_CONNECTIONS", 0, high=MAX_CONNECTIONS) or None,
        backoff=number(env, "HUBCACHE_RETRY_BACKOFF", _DEFAULTS["backoff"], high=MAX_BACKOFF),
        stall_timeout=number(env, "HUBCACHE_STALL_TIMEOUT", _DEFAULTS["stall_timeout"]),
        min_speed=number(env, "HUBCACHE_MIN_SPEED", _DEFAULTS["min_speed"]),
        store_timeout=_timeout(env, "HUBCACHE_STORE_TIMEOUT", _DEFAULTS["store_timeout"]),
        fsync=flag(env, "HUBCACHE_FSYNC") is not False,
        headers=_headers(env),
        limits=_limits(env),
        mirrors=_mirrors(env, mirrors),
        no_origin=bool(env_no_origin) if no_origin is None else no_origin,
        max_size=_max_size(env),
        shared_cache=expand(env.get("HUBCACHE_SHARED_CACHE", "").strip()),
        kagglehub=bool(flag(env, "HUBCACHE_KAGGLEHUB")) if kagglehub is None else kagglehub,
    )


def warm_root(cache_dir: Optional[str]) -> Optional[tuple[str, str]]:
    """(root, which rule chose it) for the tensorflow_hub plug-in's warm path, which keeps
    tensorflow_hub's own reading of the settings (a bad hubcache variable is not its
    concern); None under ``UNCOMPRESSED``, where nothing is cached."""
    environ = os.environ
    if environ.get("TFHUB_MODEL_LOAD_FORMAT", "").strip().upper() == "UNCOMPRESSED":
        return None
    return select_root(cache_dir, environ)


def tfhub_plugin_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """``HUBCACHE_TFHUB_PLUGIN``: unset or yes turns the tensorflow_hub plug-in on when its
    ``.pth`` is installed, no (``0``) turns it off without uninstalling it."""
    value = flag(os.environ if environ is None else environ, "HUBCACHE_TFHUB_PLUGIN")
    return True if value is None else value


def check_load_format(config: Config) -> str:
    """``config.load_format`` when it is one of ``LOAD_FORMATS``, else ConfigurationError
    (exit 2). Called by the calls that download, so other commands work with a bad value."""
    if config.load_format not in LOAD_FORMATS:
        raise ConfigurationError(
            f"TFHUB_MODEL_LOAD_FORMAT={config.load_format.lower()!r} is not one of "
            f"{', '.join(LOAD_FORMATS)} (case-insensitive); fix or unset it"
        )
    return config.load_format


def _mirrors(
    environ: Mapping[str, str], given: Union[str, Sequence[str], None]
) -> tuple[tuple[str, str], ...]:
    """The mirrors argument, else ``HUBCACHE_MIRRORS`` (a bad value names the variable)."""
    if given is not None:
        return parse_mirrors(given)
    try:
        return parse_mirrors(environ.get("HUBCACHE_MIRRORS", ""))
    except ConfigurationError as exc:
        raise ConfigurationError(f"HUBCACHE_MIRRORS: {exc}") from None


def _timeout(environ: Mapping[str, str], name: str, default: float) -> float:
    """A socket or store timeout: more than 0 and at most MAX_TIMEOUT seconds."""
    return number(environ, name, default, low_open=True, high=MAX_TIMEOUT)


def _max_size(environ: Mapping[str, str]) -> Optional[int]:
    raw = environ.get("HUBCACHE_MAX_SIZE", "")
    if not raw.strip():
        return None
    from ._units import parse_size

    try:
        return parse_size(raw)
    except ConfigurationError as exc:
        raise ConfigurationError(f"HUBCACHE_MAX_SIZE={raw!r}: {exc}") from None


def _verify_tls(environ: Mapping[str, str]) -> bool:
    """``TFHUB_DISABLE_CERT_VALIDATION``: tensorflow_hub turns checks off only for the exact
    string ``true``. Other yes-words (``1``, ``TRUE``) would silently keep verifying there,
    so rather than guess either way we name the mistake; no-words and empty keep checks on."""
    raw = environ.get("TFHUB_DISABLE_CERT_VALIDATION", "")
    if raw == "true":
        return False
    if not raw.strip() or raw.strip().lower() in NO_WORDS:
        return True
    raise ConfigurationError(
        f"TFHUB_DISABLE_CERT_VALIDATION={raw!r}: only exactly 'true' turns certificate "
        "checks off (tensorflow_hub's rule); set it to true or false, or unset it"
    )
