"""Pull-through: fetch an archive from upstream once, hand its bytes to every waiting client.

The :class:`Mirror` maps request paths to upstream URLs and keeps one
:class:`~hubcache.serve.fill.Fill` per archive at a time (single flight); how one fill
fetches, verifies and keeps an archive while clients read it is told in ``serve.fill``.
A fill that fails keeps nothing and is forgotten: the next request starts a fresh one.

Replicas sharing a store take the store's lock first (``.hubcache-locks``), then look
again: the second replica finds the archive the first one kept and serves it, so each
archive crosses from upstream once. Upstream 404/410 answers are remembered for
``negative_ttl`` seconds. With ``max_size``, archives the mirror stored are evicted least
recently served first, never one being served or filled.

Credentials: the fetch uses only the server's own configuration (``HUBCACHE_HTTP_HEADERS``
for the upstream host, proxies, certificates). Nothing from a client's request (its
``Authorization``, cookies, query) is forwarded, so nothing fetched with a client's own
credentials can end up stored for others.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from .._config import Config
from .._errors import ConfigurationError
from .._handles import append_format_query
from ..kaggle.upstream import is_kaggle_host, upstream_credential
from ..serve.archives import ArchiveStore, Stored
from ..serve.static import is_archive_name
from .fill import Fill, Named

log = logging.getLogger(__name__)

_PATH_SAFE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]+")  # a path component, RFC 3986


@dataclass(frozen=True)
class Upstream:
    prefix: str  # "" (everything) or "tfhub.dev/": the first components of a request path
    url: str  # where those paths live upstream, ending in "/"


def parse_upstream(spec: str) -> Upstream:
    """``URL`` or ``PREFIX=URL`` -> Upstream; raises ConfigurationError naming the input.

    Refused: a prefix that no request path could match (``..``, a dot-component, spaces or
    other characters a path would carry escaped, a leading ``/``), a URL that is not http(s)
    with a host, an out-of-range port, broken IPv6 brackets, and a query or fragment (the
    model path is appended to the URL's path; a query or fragment would swallow it)."""
    example = "e.g. --upstream https://tfhub.dev/ or --upstream tfhub.dev/=https://tfhub.dev/"
    prefix, url = "", spec.strip()
    head, sep, tail = url.partition("=")
    if sep and "://" not in head:
        raw, url = head.strip(), tail.strip()
        components = raw.rstrip("/").split("/")
        if (
            raw.startswith("/")
            or not raw.rstrip("/")
            or any(not c or c.startswith(".") or not _PATH_SAFE.fullmatch(c) for c in components)
        ):
            raise ConfigurationError(
                f"--upstream {spec!r}: the prefix {raw!r} can never match a request path; give "
                f"path components without '..', spaces or a leading '/', {example}"
            )
        prefix = "/".join(components) + "/"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"--upstream {spec!r}: not a valid URL ({exc}); {example}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"--upstream {spec!r}: expected URL or PREFIX=URL with an http(s) URL, {example}"
        )
    if port == 0:
        raise ConfigurationError(f"--upstream {spec!r}: port 0 is not a port to connect to")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigurationError(
            f"--upstream {spec!r}: a URL with a query or fragment cannot have model paths "
            f"appended; give the folder URL, {example}"
        )
    return Upstream(prefix, url.rstrip("/") + "/")


def upstream_url(upstreams: tuple[Upstream, ...], parts: list[str]) -> Optional[str]:
    """The upstream URL for a request path: the longest matching prefix wins."""
    rel = "/".join(parts)
    best: Optional[Upstream] = None
    for up in upstreams:
        if (rel + "/").startswith(up.prefix) and (
            best is None or len(up.prefix) > len(best.prefix)
        ):
            best = up
    if best is None or not rel[len(best.prefix) :]:
        return None
    url = best.url + urllib.parse.quote(rel[len(best.prefix) :])
    return url if is_archive_name(rel) else append_format_query(url, "compressed")


class Mirror:
    """The pull-through half of the server: fills, negative cache, eviction."""

    def __init__(
        self,
        store: ArchiveStore,
        upstreams: tuple[Upstream, ...],
        config: Config,
        *,
        negative_ttl: float,
        max_size: Optional[int],
        negative_max: int = 10_000,
        max_fills: int = 64,
        on_upstream_bytes: Callable[[int], None] = lambda n: None,
        on_event: Callable[[str], None] = lambda what: None,
    ) -> None:
        self.store = store
        self.upstreams = upstreams
        self.config = config
        self.negative_ttl = negative_ttl
        self.negative_max = negative_max
        self.max_fills = max_fills
        self.max_size = max_size
        self.on_upstream_bytes = on_upstream_bytes
        self.on_event = on_event
        self.fills: dict[str, Fill] = {}
        self.draining: set[Fill] = set()  # kept fills whose readers are still sending
        self._negative: dict[str, float] = {}
        self.serving: dict[str, int] = {}
        self.index = store.inventory()  # stored by the mirror: name -> (size, last served)
        self._noted: dict[str, float] = {}
        self._kaggle: Optional[str] = None  # the Authorization value for Kaggle upstreams

    def config_for(self, url: str) -> Config:
        """The fetch settings for one upstream URL: the server's own, plus its Kaggle
        credential (kagglehub's order, read once) when the upstream is Kaggle's web host.
        HTTPSource sends these headers to that host only, never to a redirect target."""
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        if not is_kaggle_host(host):
            return self.config
        if self._kaggle is None:
            found = upstream_credential()
            self._kaggle = found[0] if found is not None else ""
            if found is not None:
                log.info("Kaggle upstreams get the credential from %s", found[1])
        if not self._kaggle or any(k.lower() == "authorization" for k, _ in self.config.headers):
            return self.config
        headers = (*self.config.headers, ("Authorization", self._kaggle))
        return self.config._replace(headers=headers)

    def url_for(self, parts: list[str]) -> Optional[str]:
        return upstream_url(self.upstreams, parts)

    def known_missing(self, parts: list[str]) -> bool:
        return self.missing_key("/".join(parts))

    def missing_key(self, key: str) -> bool:
        """Whether an upstream 404 for ``key`` (a request path, or a named object's name)
        is still remembered."""
        until = self._negative.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._negative[key]
        return False

    def fill(
        self, parts: list[str], fmt: Optional[str], url: str, *, via: str = ""
    ) -> Optional[Fill]:
        """The running fill for this archive, or a new one (single flight); None when
        ``max_fills`` are running already (the caller answers 503 + Retry-After)."""
        key = "/".join(parts)
        fill = self.fills.get(key)
        if fill is None:
            if len(self.fills) >= self.max_fills:
                return None
            fill = self.fills[key] = Fill(self, parts, fmt, url, via=via)
            self.on_event("fill-started")
            fill.start()
        return fill

    def fill_named(self, named: Named, shown: str, *, via: str = "") -> Optional[Fill]:
        """:meth:`fill` for an object kept under a name of its own (``fill.Named``): one
        fill per name at a time, the same limits."""
        fill = self.fills.get(named.name)
        if fill is None:
            if len(self.fills) >= self.max_fills:
                return None
            parts = named.name.split("/")
            fill = self.fills[named.name] = Fill(self, parts, None, shown, via=via, named=named)
            self.on_event("fill-started")
            fill.start()
        return fill

    def probe(self, parts: list[str], url: str, via: str) -> Optional[int]:
        """A ``HEAD`` for an archive not stored and not being filled: the archive's length
        from the upstream (None when it gives none), without fetching or keeping the body.
        Raises ModelNotFoundError (the caller remembers it like a fill's 404, on the loop)
        or another HubcacheError. Runs on a worker thread."""
        from ..fetch.http import HTTPSource

        config = self.config_for(url)
        config = config._replace(headers=(*config.headers, ("Via", via)))
        source = HTTPSource(url, url, config)
        return source.probe()  # its first byte, not its body: HTTPSource.probe

    def remember_missing(self, key: str) -> None:
        """An upstream 404 for ``key``, kept ``negative_ttl`` seconds, at most
        ``negative_max`` of them (the oldest forgotten first)."""
        self._negative.pop(key, None)  # re-inserted last: the dict stays in age order
        self._negative[key] = time.monotonic() + self.negative_ttl
        while len(self._negative) > self.negative_max:
            del self._negative[next(iter(self._negative))]  # the oldest first

    def finished(self, fill: Fill) -> None:
        if self.fills.get(fill.base) is fill:
            del self.fills[fill.base]
        self.on_event(f"fill-{fill.state}")
        if fill.state == "missing":
            self.remember_missing(fill.base)
        if fill.state == "stored" and fill.stored is not None:
            if fill.readers:
                self.draining.add(fill)
            self.noted(fill.stored, force=True)
            self.evict()

    def reader_done(self, fill: Fill) -> None:
        fill.readers -= 1
        if fill.readers <= 0:
            self.draining.discard(fill)
            fill.release_if_idle()

    # -- use and eviction -----------------------------------------------------------------
    def noted(self, stored: Stored, *, force: bool = False) -> None:
        """A stored archive was served: remember when (at most once a minute on disk)."""
        if stored.path is None:
            return
        now = time.time()
        if stored.name in self.index or force:
            self.index[stored.name] = (stored.size, now)
        if self.max_size is not None and (force or now - self._noted.get(stored.name, 0) > 60):
            self._noted[stored.name] = now
            self.store.note_served(stored)

    def busy(self) -> set[str]:
        names = {name for name, count in self.serving.items() if count > 0}
        names |= {f.stored.name for f in self.draining if f.stored is not None}
        return names

    def evict(self) -> list[str]:
        """Remove archives least recently served first until the total fits max_size."""
        if self.max_size is None:
            return []
        total = sum(size for size, _ in self.index.values())
        busy = self.busy()
        removed: list[str] = []
        for name, (size, _used) in sorted(self.index.items(), key=lambda item: item[1][1]):
            if total <= self.max_size:
                break
            if name in busy:
                continue
            try:
                self.store.remove(name)
            except OSError as exc:
                log.warning("could not evict %s: %s", name, exc)
                continue
            del self.index[name]
            total -= size
            removed.append(name)
            log.info("evicted %s (%d bytes, least recently served)", name, size)
            self.on_event("evicted")
        return removed

    def stored_bytes(self) -> int:
        return sum(size for size, _ in self.index.values())

    def shutdown(self, wait: float = 5.0) -> None:
        """Stop every running fill; each removes its partial file and releases its lock
        (``Fill.stop``), so nothing is left in DIR but complete archives."""
        fills = list(self.fills.values())
        for fill in fills:
            fill.cancel.set()
        deadline = time.monotonic() + wait
        for fill in fills:
            fill.stop(max(0.0, deadline - time.monotonic()))
