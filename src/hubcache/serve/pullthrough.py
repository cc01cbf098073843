"""Pull-through: fetch an archive from upstream once, hand its bytes to every waiting client.

One :class:`Fill` per archive at a time (single flight). Its thread fetches with hubcache's
own HTTP source (redirects checked hop by hop, retries, resume), writes the bytes to a
partial file, hashes them and checks the archive's integrity as they pass
(``archive.verify``), then keeps it through :class:`~hubcache.serve.archives.ArchiveStore`.
Clients read the partial file as it grows; the last byte is held back until the archive
is verified and kept, so no client ever receives a whole-looking body of an archive that
was then refused. A fill that fails tells its readers to break their connections, keeps
nothing, and is forgotten: the next request starts a fresh one.

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

import asyncio
import contextlib
import dataclasses
import email.utils
import hashlib
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

from .._config import Config
from .._errors import (
    ConfigurationError,
    CorruptArchiveError,
    DownloadError,
    HubcacheError,
    ModelNotFoundError,
)
from .._handles import append_format_query
from ..archive.verify import ArchiveVerifier
from ..kaggle.identity import KAGGLE_HOSTS
from ..serve.archives import ArchiveStore, Stored
from ..serve.ranges import file_etag
from ..serve.static import FORMAT_SUFFIX, is_archive_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upstream:
    prefix: str  # "" (everything) or "tfhub.dev/": the first components of a request path
    url: str  # where those paths live upstream, ending in "/"


def parse_upstream(spec: str) -> Upstream:
    """``URL`` or ``PREFIX=URL`` -> Upstream; raises ConfigurationError naming the input."""
    prefix, url = "", spec.strip()
    head, sep, tail = url.partition("=")
    if sep and "://" not in head:
        prefix, url = head.strip().strip("/"), tail.strip()
        prefix = f"{prefix}/" if prefix else ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"--upstream {spec!r}: expected URL or PREFIX=URL with an http(s) URL, "
            "e.g. --upstream https://tfhub.dev/ or --upstream tfhub.dev/=https://tfhub.dev/"
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


class Fill:
    """One upstream fetch and the clients reading it (module docstring).

    State, changed only on the event loop: ``pending`` (waiting for the store's lock or
    the upstream's answer) -> ``streaming`` (``part`` grows; ``total`` may be known) ->
    ``stored``; or ``missing`` (upstream 404/410) or ``failed`` (anything else)."""

    def __init__(self, mirror: Mirror, parts: list[str], fmt: Optional[str], url: str) -> None:
        self.mirror = mirror
        self.parts = parts
        self.fmt = fmt
        self.base = "/".join(parts)
        self.url = url
        self.state = "pending"
        self.total: Optional[int] = None
        self.size = 0
        self.part = ""
        self.name = ""  # the stored name, known once the format is
        self.etag: Optional[str] = None
        self.last_modified = ""
        self.stored: Optional[Stored] = None
        self.error = ""
        self.readers = 0
        self.started_ns = time.time_ns() // 10**9 * 10**9  # whole seconds: every FS keeps them
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._tick = asyncio.Event()

    # -- the loop side ------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in ("stored", "missing", "failed")

    def available(self) -> int:
        """Bytes a reader may send now: all once kept, else all but the last."""
        return self.size if self.state == "stored" else max(0, self.size - 1)

    def tick(self) -> asyncio.Event:
        """The event set at the next change; take it before looking at the state."""
        return self._tick

    def _apply(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
        if self.finished:
            self.mirror.finished(self)

    def _post(self, **changes: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._apply, changes)

    # -- the thread side ----------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._run, name=f"hubcache-fill {self.base}", daemon=True).start()

    def _run(self) -> None:
        store = self.mirror.store
        lock = None
        try:
            stored = store.find(self.parts, self.fmt)
            if stored is None:
                lock = store.lock(self.base, self.mirror.config)
                found: list[Stored] = []

                def done() -> bool:
                    hit = store.find(self.parts, self.fmt)
                    if hit is not None:
                        found.append(hit)
                    return hit is not None or self.cancel.is_set()

                if not lock.wait_for_turn(done):
                    lock = None
                    stored = found[0] if found else None
                else:
                    stored = store.find(self.parts, self.fmt)  # kept while we took the lock?
            if stored is not None:
                self._post(state="stored", stored=stored, size=stored.size, total=stored.size)
                return
            if not self.cancel.is_set():
                self._fetch()
            else:
                self._post(state="failed", error="the mirror is shutting down")
        except ModelNotFoundError as exc:
            self._post(state="missing", error=str(exc))
        except Exception as exc:  # any failure ends this fill, never the server
            message = str(exc) if isinstance(exc, HubcacheError) else f"{type(exc).__name__}: {exc}"
            log.warning("fill of %s from %s failed: %s", self.base, self.url, message)
            self._post(state="failed", error=message)
        finally:
            if lock is not None:
                lock.release()

    def _name(self, fmt: str) -> str:
        """Where the archive is kept: the requested archive name, or the model path with
        the suffix of the format its bytes have."""
        return self.base if is_archive_name(self.base) else self.base + FORMAT_SUFFIX[fmt]

    def _fetch(self) -> None:
        from ..fetch.http import HTTPSource
        from ..fetch.source import RestartDownloadError

        mirror = self.mirror
        source = HTTPSource(self.url, self.url, mirror.config_for(self.url))
        part = ""
        try:
            source.open()
            part = mirror.store.partial()
            total = source.total
            with open(part, "wb") as out:
                opened: dict[str, Any] = {
                    "state": "streaming",
                    "part": part,
                    "total": total,
                    "etag": None if total is None else file_etag(total, self.started_ns),
                    "last_modified": email.utils.formatdate(self.started_ns / 1e9, usegmt=True),
                }
                sha = hashlib.sha256()
                verifier = ArchiveVerifier(mirror.config.limits)
                size = restarts = 0
                stream = source.chunks()
                while True:
                    try:
                        for chunk in stream:
                            if self.cancel.is_set():
                                raise CorruptArchiveError("the mirror is shutting down")
                            verifier.feed(chunk)  # first: HTML is refused before a byte goes out
                            out.write(chunk)
                            out.flush()
                            sha.update(chunk)
                            size += len(chunk)
                            mirror.on_upstream_bytes(len(chunk))
                            if verifier.format and opened:
                                opened["name"] = self._name(verifier.format)
                                self._post(**opened)  # readers start once it looks like one
                                opened = {}
                            self._post(size=size)
                        break
                    except RestartDownloadError as exc:
                        restarts += 1
                        if restarts > mirror.config.retries:
                            raise DownloadError(
                                f"the upstream stream broke after {size} bytes and could not be "
                                f"resumed ({exc}), {restarts} times; nothing kept"
                            ) from None
                        log.warning(
                            "fill of %s broke after %d bytes (%s); fetching it again from the "
                            "start and checking those bytes against what was already sent",
                            self.base,
                            size,
                            exc,
                        )
                        source.close()
                        source = HTTPSource(self.url, self.url, mirror.config_for(self.url))
                        source.open()
                        if total is not None and source.total != total:
                            raise DownloadError(
                                f"the upstream's archive changed during the fill ({total} "
                                f"bytes, now {source.total}); nothing kept"
                            ) from None
                        stream = _after_same_prefix(source.chunks(), part, size)
                if total is not None and size != total:
                    raise CorruptArchiveError(f"the upstream sent {size} of {total} bytes")
                verifier.finish(part)
                if opened:
                    opened["name"] = self._name(verifier.format)
                    self._post(**opened)  # a tiny archive: whole before it was recognised
                if mirror.config.fsync:
                    os.fsync(out.fileno())
            name = self._name(verifier.format)
            stored = mirror.store.publish(part, name, sha.hexdigest(), self.started_ns)
            part = ""
            log.info("stored %s (%d bytes, sha256 %s)", name, size, sha.hexdigest())
            self._post(state="stored", stored=stored, size=size, total=size)
        finally:
            source.close()
            if part:
                with contextlib.suppress(OSError):
                    os.unlink(part)


def _after_same_prefix(chunks: Iterator[bytes], path: str, length: int) -> Iterator[bytes]:
    """The bytes of a restarted stream that follow its first ``length``, which must equal
    the first ``length`` bytes of ``path``: readers already have those, so a restart that
    does not repeat them exactly (an object that changed, with no validator to tell) fails
    the fill instead of handing anyone a mix of two versions."""
    changed = DownloadError(
        "the upstream answered different bytes when the fill started again (the archive "
        "changed, and it gives no validator to tell); nothing kept"
    )
    with open(path, "rb") as sent:
        for data in chunks:
            rest = data
            if length:
                head, rest = data[:length], data[length:]
                if sent.read(len(head)) != head:
                    raise changed
                length -= len(head)
            if rest:
                yield rest
    if length:
        raise changed  # shorter than what readers already have


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
        on_upstream_bytes: Callable[[int], None] = lambda n: None,
        on_event: Callable[[str], None] = lambda what: None,
    ) -> None:
        self.store = store
        self.upstreams = upstreams
        self.config = config
        self.negative_ttl = negative_ttl
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
        if host not in KAGGLE_HOSTS:
            return self.config
        if self._kaggle is None:
            from .._config import kaggle_settings
            from ..kaggle.credentials import find_credential

            found = find_credential(kaggle_settings())
            self._kaggle = found.authorization if found is not None else ""
            if found is not None:
                log.info("Kaggle upstreams get the credential from %s", found.source)
        if not self._kaggle or any(k.lower() == "authorization" for k, _ in self.config.headers):
            return self.config
        headers = (*self.config.headers, ("Authorization", self._kaggle))
        return dataclasses.replace(self.config, headers=headers)

    def url_for(self, parts: list[str]) -> Optional[str]:
        return upstream_url(self.upstreams, parts)

    def known_missing(self, parts: list[str]) -> bool:
        key = "/".join(parts)
        until = self._negative.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._negative[key]
        return False

    def fill(self, parts: list[str], fmt: Optional[str], url: str) -> Fill:
        """The running fill for this archive, or a new one (single flight)."""
        key = "/".join(parts)
        fill = self.fills.get(key)
        if fill is None:
            fill = self.fills[key] = Fill(self, parts, fmt, url)
            self.on_event("fill-started")
            fill.start()
        return fill

    def finished(self, fill: Fill) -> None:
        if self.fills.get(fill.base) is fill:
            del self.fills[fill.base]
        self.on_event(f"fill-{fill.state}")
        if fill.state == "missing":
            self._negative[fill.base] = time.monotonic() + self.negative_ttl
        if fill.state == "stored" and fill.stored is not None:
            if fill.readers:
                self.draining.add(fill)
            self.noted(fill.stored, force=True)
            self.evict()

    def reader_done(self, fill: Fill) -> None:
        fill.readers -= 1
        if fill.readers <= 0:
            self.draining.discard(fill)

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

    def shutdown(self) -> None:
        for fill in list(self.fills.values()):
            fill.cancel.set()
