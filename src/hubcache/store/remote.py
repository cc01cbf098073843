"""Resolve into a cache root on an object store (``TFHUB_CACHE_DIR=gs://bucket/prefix``).

::

    complete_manifest(key)?            -> return "<root>/<key>"   (2 requests: manifest, listing)
    lock "<key>.lock" (create-if-absent, lease on the store's clock)
      -> re-check -> retire debris (manifest-less tree of a dead uploader)
      -> fetch + extract into a LOCAL temporary folder (the normal streamed, safe pipeline),
         <tmp>/hubcache-stage.<host>.<pid>.<uid>, named after its owner so that the next
         resolve and ``hubcache gc`` remove it when a killed process left it behind
      -> upload: descriptor, files in parallel (streamed), "<key>.manifest.json" LAST
      -> unlock -> return "<root>/<key>"  (TensorFlow reads gs:// and s3:// directly)

There is no atomic rename on an object store, so the manifest is the only proof of
completeness: it is created last, only if absent, and a reader checks every file it lists
(name and size, one listing). A failed or killed upload leaves no manifest; the next
resolve under the lock (or ``hubcache gc``, see ``manage.store_gc``) removes the debris.
tensorflow_hub's own entries on a bucket carry no manifest and cannot be told apart from a
partial upload (its "rename" is a copy then a delete), so we download those once more
rather than trust them. A hit records its use in ``<key>.used`` (``Storage.record_use``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any, Optional

from .._config import Config
from .._errors import ChecksumMismatchError, OfflineError
from .._handles import Handle
from ..local.gc import GRACE, Debris
from ..local.holder import new_uid, parse_holder
from ..local.publish import descriptor_text
from ..local.tree import tree_stats
from .backend import open_storage
from .lock import StorageLock
from .storage import Storage

log = logging.getLogger(__name__)

STAGE_PREFIX = "hubcache-stage."
Stage = Callable[[Handle, str, str, Config, Optional[str]], dict[str, Any]]


def pin_matches(manifest: dict[str, Any], sha256: Optional[str]) -> bool:
    recorded = manifest.get("archive", {}).get("sha256", "")
    return sha256 is None or recorded == sha256.lower()


def resolve_remote(
    handle: Handle,
    config: Config,
    *,
    sha256: Optional[str],
    on_wait: Optional[Callable[[str], None]],
    stage: Stage,
) -> str:
    store = open_storage(config.root, handle.shown, config.store_timeout)
    key = handle.key
    manifest = store.complete_manifest(key)
    if manifest is not None:
        return _checked(handle, store, key, manifest, sha256)
    if config.offline:
        raise OfflineError(
            f"{handle.shown} is not in the cache at {config.root} and offline mode is on "
            "(HUBCACHE_OFFLINE / offline=True)",
            handle=handle.shown,
        )
    lock = StorageLock(
        store,
        key,
        handle=handle.shown,
        lease=config.lock_lease,
        timeout=config.lock_timeout,
        on_wait=on_wait,
    )
    if not lock.wait_for_turn(lambda: store.complete_manifest(key) is not None):
        return resolve_remote(handle, config, sha256=sha256, on_wait=on_wait, stage=stage)
    try:
        manifest = store.complete_manifest(key)  # re-check: the previous holder may have won
        if manifest is not None:
            return _checked(handle, store, key, manifest, sha256)
        store.retire(key)  # a stale entry, or the debris of an upload that never finished
        upload(handle, store, config, sha256, stage)
        return store.join(key)
    finally:
        lock.release()


def upload(
    handle: Handle, store: Storage, config: Config, sha256: Optional[str], stage: Stage
) -> dict[str, Any]:
    """Fetch and extract into local temporary space, then upload with the manifest last."""
    for item in stale_local_stagings(grace=GRACE):  # what killed resolves left here
        shutil.rmtree(item.path, ignore_errors=True)
    owner = f"{socket.gethostname()}.{os.getpid()}.{new_uid()}"  # as a lock names its holder
    tmp = os.path.join(tempfile.gettempdir(), STAGE_PREFIX + owner)
    os.mkdir(tmp, 0o700)
    try:
        staging = os.path.join(tmp, handle.key)
        manifest = stage(handle, handle.key, staging, config, sha256)
        if not store.upload_entry(handle.key, staging, manifest, descriptor_text(handle.shown)):
            log.info("another process published %s first; using its copy", handle.shown)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def stale_local_stagings(grace: float) -> list[Debris]:
    """The local staging folders of remote resolves that died (this host: the process is
    gone; a folder named after another host: untouched for ``grace`` seconds). Only names
    we make (``hubcache-stage.<host>.<pid>.<uid>``) are ever considered."""
    where = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(where) if n.startswith(STAGE_PREFIX)]
    except OSError:
        return []
    found = []
    for name in sorted(names):
        path = os.path.join(where, name)
        holder = parse_holder(name[len(STAGE_PREFIX) :])
        if holder is None or os.path.islink(path) or not os.path.isdir(path):
            continue
        if holder.is_dead_here():
            why = f"a remote resolve's local staging; its process (pid {holder.pid}) is gone"
        elif holder.host != socket.gethostname() and _age(path) > grace:
            why = f"a remote resolve's local staging from {holder.host}, idle for over {grace:g}s"
        else:
            continue
        found.append(Debris(path, "staging", why, tree_stats(path).size))
    return found


def _age(path: str) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _checked(
    handle: Handle, store: Storage, key: str, manifest: dict[str, Any], sha256: Optional[str]
) -> str:
    if not pin_matches(manifest, sha256):
        raise ChecksumMismatchError(
            f"the cached archive of {handle.shown} at {store.join(key)} has sha256 "
            f"{manifest.get('archive', {}).get('sha256')}, not the pinned {sha256}",
            handle=handle.shown,
        )
    store.record_use(key)  # a hit: last use for `hubcache ls` and `prune` (hourly at most)
    return store.join(key)
