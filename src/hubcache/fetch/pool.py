"""HTTP plumbing under :mod:`._fetch`: connection pools (proxies, TLS) and stall-aware reads.

Pools are cached because a TLS handshake costs more than a small model's download, but the
settings are read on every call (``load_config``, docs/configuration.md): the cache key holds
everything a pool was built from (the proxy urllib's ``getproxies`` names for this URL, from
the environment or the system's settings; whether to verify; the CA variables as the call's
``Config`` read them), so changing ``https_proxy`` or ``SSL_CERT_FILE`` between two calls is
honoured.

``TFHUB_DISABLE_CERT_VALIDATION=true`` only affects the pools made here: no global
``ssl`` default and no global ``warnings`` filter is touched, so other urllib3, requests or
``ssl`` clients in the process keep verifying. urllib3 would emit an
``InsecureRequestWarning`` on every connection of an unverified pool; we replace it with
one loud log line per process instead of per-connection warning spam in the user's code.
"""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._config import Config
from .._errors import ConfigurationError, hide_credentials

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

_MANAGERS: dict[tuple[str, bool, bool, tuple[str, ...]], urllib3.PoolManager] = {}
_WARNED_INSECURE = False
_FLUSH_EVERY = 0.25  # seconds: hand partial chunks on so progress and stall checks run


class StallError(OSError):
    """Bytes still trickle in, but too slowly to ever finish: treated as a broken stream."""


def proxy_for(url: str) -> str:
    """The proxy the environment names for ``url`` ("" for none), ``no_proxy`` applied."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme, "")
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        return ""
    if proxy:
        _check_proxy(proxy, parts.scheme)
    return proxy


def _check_proxy(proxy: str, scheme: str) -> None:
    """A proxy variable urllib3 cannot use (``garbage``, ``ftp://...``, ``http://[::1``)
    was a ProxySchemeUnknown or ValueError traceback at the first request."""
    try:
        parts = urllib.parse.urlsplit(proxy)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        usable = False
    if not usable:
        raise ConfigurationError(
            f"{scheme}_proxy={hide_credentials(proxy)!r} is not an http:// or https:// proxy "
            "URL with a host; fix it (e.g. http://proxy.example:3128) or unset it"
        )


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without ``user:password@``, the ``Authorization`` header it asked for).

    urllib3 ignores credentials in a URL, so they were silently not sent; they become a
    Basic header here, which callers send to that URL's host only (never after a redirect
    to another host), and the URL that is requested, logged or shown no longer holds them."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    header = {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), header


def manager(url: str, config: Config) -> urllib3.PoolManager:
    """A pooled connection manager for ``url``, through the proxy the environment names,
    verifying TLS as ``config`` says (``TFHUB_DISABLE_CERT_VALIDATION``, the CA variables)."""
    import urllib3

    proxy = proxy_for(url)
    verify = config.verify_tls
    # Plain-http managers get no TLS context: building one costs ~15 ms per process, and
    # each redirect hop asks for the manager of its own scheme.
    tls = url.lower().startswith("https:") or proxy.lower().startswith("https:")
    key = (proxy, verify, tls, config.ca_variables)
    pool = _MANAGERS.get(key)
    if pool is not None:
        return pool
    options: dict[str, Any] = {"num_pools": 16, "maxsize": 16, "block": False}
    if not verify:
        options["cert_reqs"] = "CERT_NONE"
        warn_insecure()
    elif tls:
        options["ssl_context"] = _ssl_context(config.ca_variables)
    if proxy:
        parts = urllib.parse.urlsplit(proxy)
        if parts.username:  # urllib3 does not turn proxy URL credentials into a header
            _bare, auth = split_credentials(proxy)
            options["proxy_headers"] = {"Proxy-Authorization": auth["Authorization"]}
        pool = urllib3.ProxyManager(proxy, **options)
    else:
        pool = urllib3.PoolManager(**options)
    if not verify:
        pool.pool_classes_by_scheme = {
            "http": urllib3.HTTPConnectionPool,
            "https": _quiet_https_pool(),
        }
    _MANAGERS[key] = pool
    return pool


def _ssl_context(values: tuple[str, ...]) -> Any:
    """The default context (OpenSSL honours SSL_CERT_FILE / SSL_CERT_DIR itself) plus the
    bundles REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE name. A bundle that cannot be loaded is
    the setting's mistake, named as such (an OSError here would pass for the cache's)."""
    import ssl

    from .._config import CA_VARIABLES

    context = ssl.create_default_context()
    for name, bundle in zip(CA_VARIABLES[2:], values[2:], strict=True):
        if bundle:
            try:
                context.load_verify_locations(cafile=bundle)
            except OSError as exc:  # missing, unreadable, or no certificate in it
                raise ConfigurationError(
                    f"{name}={bundle!r}: no certificates could be loaded from it "
                    f"({exc.strerror or exc}); point it at a PEM bundle, or unset it"
                ) from None
    return context


_QUIET: Any = None


def _quiet_https_pool() -> Any:
    """An HTTPS pool class that skips urllib3's per-connection InsecureRequestWarning.

    A subclass, not a ``warnings`` filter: filters are process-global (they would hide the
    warning from the user's own clients too) and not thread-safe to toggle around requests.
    """
    global _QUIET  # noqa: PLW0603 - one class per process, made lazily
    if _QUIET is None:
        import urllib3

        class QuietHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
            def _validate_conn(self, conn: Any) -> None:
                # What urllib3's HTTPSConnectionPool does, minus the warning: connect early.
                urllib3.HTTPConnectionPool._validate_conn(self, conn)
                if conn.is_closed:
                    conn.connect()

        _QUIET = QuietHTTPSConnectionPool
    return _QUIET


def warn_insecure() -> None:
    global _WARNED_INSECURE  # noqa: PLW0603 - once per process, as documented
    if not _WARNED_INSECURE:
        _WARNED_INSECURE = True
        log.warning(
            "TFHUB_DISABLE_CERT_VALIDATION=true: TLS certificates are NOT verified for "
            "hubcache downloads in this process; anyone on the network path can swap the "
            "model. Unset it and point SSL_CERT_FILE at your CA bundle instead"
        )


def read_body(response: Any, config: Config, size: int) -> Iterator[bytes]:
    """Yield the body of ``response`` in pieces of about ``size`` bytes, watching for stalls.

    The read timeout only catches silence; a server dripping a byte a second never trips
    it. So reads return as soon as any bytes arrive (``read1``), and over every window of
    ``config.stall_timeout`` seconds at least ``config.min_speed`` bytes per second must
    have come in on average, or :class:`StallError` is raised (the caller resumes).
    Small reads are gathered into big chunks so the pipeline downstream stays cheap.
    """
    window = config.stall_timeout
    needed = config.min_speed * window
    window_start, window_bytes = time.monotonic(), 0
    pending: list[bytes] = []
    held, last_flush = 0, window_start
    while True:
        try:
            data = response.read1(size - held) if size > held else b""
        except BaseException:
            if pending:  # bytes that did arrive are good: keep them, resume after them
                yield b"".join(pending)
            raise
        now = time.monotonic()
        if data:
            pending.append(data)
            held += len(data)
            window_bytes += len(data)
        if held and (not data or held >= size or now - last_flush >= _FLUSH_EVERY):
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, held, last_flush = [], 0, now
        if not data:
            return
        if window > 0 and now - window_start >= window:
            if window_bytes < needed:
                if pending:
                    yield b"".join(pending)
                raise StallError(
                    f"the download stalled: {window_bytes} bytes in the last "
                    f"{now - window_start:.0f}s (HUBCACHE_STALL_TIMEOUT={window:g}s, "
                    f"HUBCACHE_MIN_SPEED={config.min_speed:g} bytes/s)"
                )
            window_start, window_bytes = now, 0
