"""The shared tier (``HUBCACHE_SHARED_CACHE``): a second cache behind every node's local one.

Only the slow path comes here (a local miss, under the local lock); a warm hit never
touches the tier. ::

    shared entry complete?  -> copy it down in parallel, each file checked against the
                               shared manifest -> publish locally (the normal atomic rename)
    else lock "<key>.lock" on the tier (so other nodes wait for us instead of the origin)
      -> re-check -> origin download -> publish locally -> upload to the tier (manifest last)

A thousand nodes thus cost one origin download. The tier is an optimisation, never a
requirement: any failure of it (unreachable, no permission, bad credentials, a missing
extra, a damaged shared copy) is logged as ONE warning per tier and process, and the resolve
continues from the origin as if no tier were configured.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .. import _faults
from .._config import Config
from .._handles import Handle
from ..local.entry import Entry
from ..local.publish import descriptor_text, discard, publish
from .backend import open_storage
from .lock import StorageLock
from .remote import pin_matches
from .storage import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")
Download = Callable[[Handle, Entry, Config, str, Optional[str]], None]
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


class _Tier:
    """One resolve's view of the tier; the first failure turns it off for this resolve."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broken = False

    def call(self, what: str, work: Callable[[], T]) -> tuple[bool, Optional[T]]:
        """(True, result), or (False, None) after a failure, warned about once."""
        if self.broken:
            return False, None
        try:
            return True, work()
        except Exception as exc:  # any failure of the tier degrades to the origin
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
            return False, None


def download_via_tier(
    handle: Handle,
    entry: Entry,
    config: Config,
    uid: str,
    *,
    sha256: Optional[str],
    download: Download,
) -> None:
    """Fill the local ``entry`` from the tier, or from the origin and then fill the tier."""
    tier = _Tier(config.shared_cache)
    _ok, store = tier.call(
        "opening it", lambda: open_storage(config.shared_cache, handle.shown, config.store_timeout)
    )
    if store is None:
        download(handle, entry, config, uid, sha256)
        return
    if _copy_down(tier, store, entry, config, uid=uid, sha256=sha256):
        return
    lock = StorageLock(
        store,
        entry.key,
        handle=handle.shown,
        lease=config.lock_lease,
        timeout=config.lock_timeout,
    )
    _ok, held = tier.call(
        "locking",
        lambda: lock.wait_for_turn(lambda: store.complete_manifest(entry.key) is not None),
    )
    try:
        if held is not None and _copy_down(tier, store, entry, config, uid=uid, sha256=sha256):
            return  # another node filled the tier while we waited (or just before our lock)
        download(handle, entry, config, uid, sha256)
        if held:
            tier.call("uploading", lambda: _upload(store, entry, handle))
    finally:
        if held:
            lock.release()


def _copy_down(
    tier: _Tier, store: Storage, entry: Entry, config: Config, *, uid: str, sha256: Optional[str]
) -> bool:
    """Publish the tier's complete copy locally; False when it has none (or fails)."""
    _ok, manifest = tier.call("reading", lambda: store.complete_manifest(entry.key))
    if manifest is None or not pin_matches(manifest, sha256):
        return False
    staging = entry.staging(uid)
    _faults.fs.mkdir(staging, 0o755)
    try:
        copied, _ = tier.call(
            "copying from it",
            lambda: store.download_entry(entry.key, manifest, staging, fsync=config.fsync),
        )
        if not copied:
            return False
        local: dict[str, Any] = {**manifest, "copied_from": store.join(entry.key)}
        if not publish(entry, staging, local, fsync=config.fsync):
            log.info("another process published %s first; using its copy", entry.key)
        log.info("copied %s from the shared cache %s", manifest.get("handle"), tier.url)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            discard(staging)


def _upload(store: Storage, entry: Entry, handle: Handle) -> None:
    """Upload the freshly published local entry (we hold the tier's lock)."""
    manifest = entry.read_manifest()
    if manifest is None or store.complete_manifest(entry.key) is not None:
        return
    store.retire(entry.key)  # debris of a node that died while uploading
    store.upload_entry(entry.key, entry.path, manifest, descriptor_text(handle.shown))
