"""The shared tier (``HUBCACHE_SHARED_CACHE``): a second cache behind every node's local one.

Only the slow path comes here (a local miss, under the local lock); a warm hit never
touches the tier. The resolve skeleton (``_resolve.acquire``) uses it at two steps::

    source:    shared entry complete?  -> a FileSetPlan of its files (the stager copies them
                                          down through the safe writer, each checked against
                                          the shared manifest's size and sha256)
               else lock "<key>.lock" on the tier (so other nodes wait for us, not the
               origin) -> re-check -> None: the origin it is
    publisher: after the local publish, upload the entry (manifest last), unlock

A thousand nodes thus cost one origin download. The tier is an optimisation, never a
requirement: any failure of it (unreachable, no permission, bad credentials, a missing
extra, a damaged shared copy) is logged as ONE warning per tier and process, and the resolve
continues from the origin as if no tier were configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import IO, Optional, TypeVar

from .._config import Config
from ..fetch.plan import FileSet, FileSetPlan
from ..fetch.retry import RetryBudget
from ..fetch.source import FileSource, Source
from ..local.manifest import Manifest, check_pin
from ..local.publish import descriptor_text
from .backend import open_storage
from .lock import StorageLock
from .storage import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


class _StoredFile(FileSource):
    """One object of the tier, read as a source (the stager's file-set path)."""

    def __init__(self, opener: Callable[[], IO[bytes]], display: str, handle: str) -> None:
        self._opener = opener
        self.display = display
        self.handle = handle

    def open(self) -> None:
        self._file = self._opener()


class Tier:
    """One resolve's view of the tier; the first failure turns it off for this resolve."""

    def __init__(self, url: str, handle: str, key: str, config: Config) -> None:
        self.url = url
        self.handle = handle
        self.key = key
        self.config = config
        self.broken = False
        self.store: Optional[Storage] = None
        self._lock: Optional[StorageLock] = None

    def call(self, what: str, work: Callable[[], T]) -> tuple[bool, Optional[T]]:
        """(True, result), or (False, None) after a failure, warned about once."""
        if self.broken:
            return False, None
        try:
            return True, work()
        except Exception as exc:  # any failure of the tier degrades to the origin
            self.fail(what, exc)
            return False, None

    def fail(self, what: str, exc: BaseException) -> None:
        self.broken = True
        with _WARNED_LOCK:
            first = self.url not in _WARNED
            _WARNED.add(self.url)
        (log.warning if first else log.debug)(
            "the shared cache %s is not usable (%s failed: %s: %s); downloading from "
            "the origin instead",
            self.url,
            what,
            exc.__class__.__name__,
            exc,
        )

    def plan(self, sha256: Optional[str]) -> Optional[tuple[FileSetPlan, Manifest]]:
        """The tier's complete copy as files to copy down, with the manifest to publish
        them under; None when it has none (lock it with :meth:`hold`, so other nodes wait
        for our origin download)."""
        if self.store is None:
            _ok, self.store = self.call(
                "opening it",
                lambda: open_storage(self.url, self.handle, self.config.store_timeout),
            )
        store = self.store
        if store is None:
            return None
        _ok, manifest = self.call("reading", lambda: store.complete_manifest(self.key))
        if manifest is None:
            return None
        try:
            check_pin(manifest, sha256, fresh=False, where=store.join(self.key))
        except Exception:  # a copy with another archive is no copy of this one
            return None
        key = self.key

        def open_file(rel: str, _budget: RetryBudget) -> Source:
            name = f"{key}/{rel}"
            return _StoredFile(lambda: store.open_read(name), store.join(name), self.handle)

        files = tuple(FileSet(rel, size, digest) for rel, (size, digest) in manifest.files.items())
        plan = FileSetPlan(
            files, open_file, self.handle, manifest.source, manifest.kaggle, manifest.dirs
        )
        return plan, manifest.replace(extra={**manifest.extra, "copied_from": store.join(key)})

    def hold(self) -> bool:
        """Take the tier's lock for our origin download; False when the tier is unusable."""
        store = self.store
        if store is None or self.broken:
            return False
        lock = StorageLock(
            store,
            self.key,
            handle=self.handle,
            lease=self.config.lock_lease,
            timeout=self.config.lock_timeout,
        )
        _ok, held = self.call(
            "locking",
            lambda: lock.wait_for_turn(lambda: store.complete_manifest(self.key) is not None),
        )
        if held:
            self._lock = lock
        return bool(held)

    def upload(self, path: str, manifest: Manifest) -> None:
        """After the local publish: fill the tier (we hold its lock), then unlock."""
        store, lock = self.store, self._lock
        if store is None or lock is None:
            return
        try:
            self.call("uploading", lambda: self._upload(store, path, manifest))
        finally:
            self.release()

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            self.call("unlocking", lock.release)

    def close(self) -> None:
        """The resolve is over: close the tier's client (after :meth:`release`)."""
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def _upload(self, store: Storage, path: str, manifest: Manifest) -> None:
        if store.complete_manifest(self.key) is not None:
            return
        store.retire(self.key)  # debris of a node that died while uploading
        store.upload_entry(self.key, path, manifest, descriptor_text(manifest.handle))
