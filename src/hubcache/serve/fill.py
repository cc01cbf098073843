"""One fill: an archive fetched from upstream once, while every waiting client reads it.

Its thread fetches with hubcache's own HTTP source (redirects checked hop by hop, retries,
resume), writes the bytes to a partial file, hashes them and checks the archive's integrity
as they pass (``archive.verify``), then keeps it through
:class:`~hubcache.serve.archives.ArchiveStore`. Clients read the partial file as it grows,
through the one descriptor the fill holds (``fd``), never by opening a path: the partial is
renamed into place when kept, and a path opened a moment later names nothing (or, after an
eviction, nothing again). The descriptor is closed when the fill is over and its last
reader is done;
the last byte is held back until the archive is verified and kept, so no client ever
receives a whole-looking body of an archive that was then refused. A fill that fails tells
its readers to break their connections and keeps nothing.

An upstream that cannot resume a broken stream (no length or no validator: a streaming
origin) is fetched again from the start, and its first bytes are compared with those
readers already have: the fill goes on only when they are the same. Every retry and
restart of one fill draws on one :class:`~hubcache.fetch.retry.RetryBudget`, as a download
does.

The fill knows its owner (the :class:`~hubcache.serve.pullthrough.Mirror`) only through
:class:`FillOwner`, so this module does not import the one that creates it.

A fill is of a request path (its upstream URL, the archive's format deciding the stored
name) or of a :class:`Named` object: one whose name and source someone else decided (a
Kaggle model version's archive, or one file of it, from a signed URL the Kaggle front asks
for). The same single flight, lock, partial file, sha256, restarts and eviction apply; a
named object that is not an archive (one file of a version) is kept as it came, checked by
its length and, from Kaggle's storage, its md5.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .. import _faults, _platform
from .._config import Config
from .._errors import CorruptArchiveError, DownloadError, HubcacheError, ModelNotFoundError
from ..archive.verify import ArchiveVerifier
from ..serve.archives import ArchiveStore, Stored, stored_name
from ..serve.ranges import file_etag

if TYPE_CHECKING:
    from ..fetch.retry import RetryBudget
    from ..fetch.source import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Named:
    """An object fetched by a source of its own and kept under exactly ``name``."""

    name: str  # where the store keeps it ("/"-separated, under a dot-folder of its own)
    open: Callable[[Config, RetryBudget], Source]  # a fresh source; the fill opens it
    archive: bool  # verify it as an archive (a version's), or keep its bytes as they came


class FillOwner(Protocol):
    """What a fill needs from the mirror that started it."""

    store: ArchiveStore
    config: Config

    def config_for(self, url: str) -> Config: ...

    def on_upstream_bytes(self, n: int) -> None: ...

    def finished(self, fill: Fill) -> None: ...


class Fill:
    """One upstream fetch and the clients reading it (module docstring).

    State, changed only on the event loop: ``pending`` (waiting for the store's lock or
    the upstream's answer) -> ``streaming`` (``part`` grows; ``total`` may be known) ->
    ``stored``; or ``missing`` (upstream 404/410) or ``failed`` (anything else)."""

    def __init__(
        self,
        mirror: FillOwner,
        parts: list[str],
        fmt: Optional[str],
        url: str,
        *,
        via: str = "",
        named: Optional[Named] = None,
    ) -> None:
        self.mirror = mirror
        self.named = named  # set: a named object (module docstring), ``url`` only shown
        self.via = via  # the Via header sent upstream (loop detection, ``app``)
        self.parts = parts
        self.fmt = fmt
        self.base = "/".join(parts)
        self.url = url
        self.state = "pending"
        self.total: Optional[int] = None
        self.size = 0
        self.part = ""
        self.fd: Optional[int] = None  # the partial (then kept) file, open for readers
        self.name = ""  # the stored name, known once the format is
        self.etag: Optional[str] = None
        self.last_modified = ""
        self.stored: Optional[Stored] = None
        self.error = ""
        self.status: Optional[int] = None  # a failed fill: the upstream's HTTP status, if any
        self.readers = 0
        self.started_ns = time.time_ns() // 10**9 * 10**9  # whole seconds: every FS keeps them
        self.cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock: Optional[Any] = None  # the store's lock while this fill holds it
        self._upstream: Optional[Any] = None  # the upstream stream being read
        self._spool = ""  # the partial file while it exists
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
            self.release_if_idle()

    def release_if_idle(self) -> None:
        """Close the readers' descriptor once the fill is over and nobody reads it."""
        if self.finished and self.readers <= 0 and self.fd is not None:
            os.close(self.fd)
            self.fd = None
            if self.part:  # gone already, unless Windows kept it while open (publish)
                with contextlib.suppress(OSError):
                    os.unlink(self.part)

    def _post(self, **changes: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._apply, changes)

    # -- the thread side ----------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"hubcache-fill {self.base}", daemon=True
        )
        self._thread.start()

    def stop(self, wait: float) -> None:
        """At shutdown: cancel, break the upstream read, and wait up to ``wait`` seconds
        for the thread to remove its partial file and release its lock; whatever it has
        not done by then is done here, so a graceful exit leaves nothing in DIR."""
        self.cancel.set()
        source = self._upstream
        if source is not None:
            with contextlib.suppress(Exception):  # a read blocked on the upstream ends now
                source.abort()
        if self._thread is not None:
            self._thread.join(wait)
        if self._spool:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
        lock = self._lock
        if lock is not None:
            lock.release()  # harmless if the thread released it meanwhile

    def _find(self) -> Optional[Stored]:
        """What the store holds for this fill already (asked again under the lock)."""
        store = self.mirror.store
        if self.named is not None:
            return store.find_named(self.named.name)
        return store.find(self.parts, self.fmt)

    def _source(self, config: Config, budget: RetryBudget) -> Source:
        """A fresh upstream source: each restart opens a new one (a named object's may ask
        for a fresh signed URL)."""
        if self.named is not None:
            return self.named.open(config, budget)
        from ..fetch.http import HTTPSource

        return HTTPSource(self.url, self.url, config, budget)

    def _run(self) -> None:
        store = self.mirror.store
        lock = None
        try:
            stored = self._find()
            if stored is None:
                lock = self._lock = store.lock(self.base, self.mirror.config)
                found: list[Stored] = []

                def done() -> bool:
                    hit = self._find()
                    if hit is not None:
                        found.append(hit)
                    return hit is not None or self.cancel.is_set()

                if not lock.wait_for_turn(done):
                    lock = None
                    stored = found[0] if found else None
                else:
                    stored = self._find()  # kept while we took the lock?
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
            status = exc.facts.get("status") if isinstance(exc, HubcacheError) else None
            self._post(state="failed", error=message, status=status)
        finally:
            if lock is not None:
                lock.release()
                self._lock = None

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CorruptArchiveError("the mirror is shutting down")

    def _fetch(self) -> None:
        from ..fetch.retry import RetryBudget, with_restarts

        mirror = self.mirror
        config = mirror.config_for(self.url)
        if self.via:  # to the upstream's host only, like every configured header
            config = config._replace(headers=(*config.headers, ("Via", self.via)))
        budget = RetryBudget.of(config)  # every retry and restart of this fill
        source = self._upstream = self._source(config, budget)
        part = ""
        try:
            source.open()
            part = self._spool = mirror.store.partial()
            total = source.total
            with open(part, "wb") as out:
                self._post(fd=os.open(part, _platform.READ))  # the readers' (module docstring)
                opened: dict[str, Any] = {
                    "state": "streaming",
                    "part": part,
                    "total": total,
                    "etag": None if total is None else file_etag(total, self.started_ns),
                    "last_modified": email.utils.formatdate(self.started_ns / 1e9, usegmt=True),
                }
                sha = hashlib.sha256()
                verifier = ArchiveVerifier(mirror.config.limits)
                check = self.named is None or self.named.archive  # else kept as it came
                size = 0
                first: list[Any] = [source]  # the first attempt reads the source opened above

                def attempt() -> None:
                    """One pass over the upstream's bytes; after a restart, the bytes
                    readers already have must come again unchanged and are skipped."""
                    nonlocal size, opened, source
                    if not first:
                        log.warning(
                            "fill of %s broke after %d bytes; fetching it again from the start "
                            "and checking those bytes against what was already sent",
                            self.base,
                            size,
                        )
                        source.close()
                        source = self._upstream = self._source(config, budget)
                        self._check_cancel()
                        source.open()
                        if total is not None and source.total != total:
                            raise DownloadError(
                                f"the upstream's archive changed during the fill ({total} "
                                f"bytes, now {source.total}); nothing kept"
                            )
                    first.clear()
                    for chunk in _after_same_prefix(source.chunks(), part, size):
                        self._check_cancel()
                        if check:  # first: HTML is refused before a byte goes out
                            verifier.feed(chunk)
                        out.write(chunk)
                        out.flush()
                        sha.update(chunk)
                        size += len(chunk)
                        mirror.on_upstream_bytes(len(chunk))
                        if (verifier.format or not check) and opened:
                            opened["name"] = self._name(verifier.format)
                            self._post(**opened)  # readers start once it looks like one
                            opened = {}
                        self._post(size=size)

                # the one restart loop (fetch.retry): a stream that cannot be resumed in
                # place is fetched again, drawing on this fill's one budget
                with_restarts(budget, self.base, attempt)
                if total is not None and size != total:
                    raise CorruptArchiveError(f"the upstream sent {size} of {total} bytes")
                _faults.checkpoint("fill-before-verify")  # readers wait for the last byte here
                if check:
                    verifier.finish(part)
                if opened:
                    opened["name"] = self._name(verifier.format)
                    self._post(**opened)  # a tiny archive: whole before it was recognised
                if mirror.config.fsync:
                    os.fsync(out.fileno())
            name = self._name(verifier.format)
            stored = mirror.store.publish(part, name, sha.hexdigest(), self.started_ns)
            part = self._spool = ""
            log.info("stored %s (%d bytes, sha256 %s)", name, size, sha.hexdigest())
            self._post(state="stored", stored=stored, size=size, total=size)
        finally:
            source.close()
            if part:
                with contextlib.suppress(OSError):
                    os.unlink(part)
                self._spool = ""

    def _name(self, fmt: Optional[str]) -> str:
        """The stored name: a named object's own, else the request path's for ``fmt``."""
        return self.named.name if self.named is not None else stored_name(self.base, fmt)


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
