"""A cache root on an object store (``TFHUB_CACHE_DIR=gs://bucket/prefix``) as the place a
resolve publishes to: the store's answers to the resolve skeleton (``_resolve.acquire``)::

    hit:      complete_manifest(key)?        (2 requests: manifest, listing) + the pin
    lock:     "<key>.lock" (create-if-absent, lease on the store's clock)
    prepare:  re-check -> retire debris (manifest-less tree of a dead uploader) -> a LOCAL
              temporary folder <tmp>/hubcache-stage.<host>.<pid>.<uid>/<key> to stage into
              (the stager: the normal streamed, safe pipeline)
    publish:  upload: descriptor, files in parallel (streamed), "<key>.manifest.json" LAST
    -> "<root>/<key>"  (TensorFlow reads gs:// and s3:// directly)

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
from typing import Optional

from .._config import Config
from .._errors import CacheDirError, HubcacheError
from ..local.gc import GRACE, Debris
from ..local.holder import parse_holder
from ..local.manifest import Manifest, check_pin
from ..local.publish import descriptor_text
from ..local.tree import tree_stats
from .backend import open_storage
from .lock import StorageLock
from .storage import Storage

log = logging.getLogger(__name__)

STAGE_PREFIX = "hubcache-stage."


class StoreTarget:
    """The store root's answers to the resolve skeleton (``_resolve.acquire``)."""

    def __init__(self, store: Storage, key: str, handle: str, config: Config) -> None:
        self.store = store
        self.key = key
        self.handle = handle  # as shown: credentials hidden
        self.config = config
        self.path = store.join(key)
        self.where = config.root
        self._tmp = ""

    def hit(self, sha256: Optional[str]) -> bool:
        manifest = self.store.complete_manifest(self.key)
        if manifest is None:
            return False
        check_pin(manifest, sha256, fresh=False, where=self.path)
        self.store.record_use(self.key)  # last use for `ls` and `prune` (hourly at most)
        return True

    def lock(self, on_wait: Optional[Callable[[str], None]]) -> StorageLock:
        return StorageLock(
            self.store,
            self.key,
            handle=self.handle,
            lease=self.config.lock_lease,
            timeout=self.config.lock_timeout,
            on_wait=on_wait,
        )

    def done(self) -> bool:
        return self.store.complete_manifest(self.key) is not None

    def prepare(self, uid: str, sha256: Optional[str]) -> Optional[str]:
        """Under the lock: None when a previous holder's entry serves, else a local staging
        folder (``<tmp>/hubcache-stage.<host>.<pid>.<uid>/<key>``, named after its owner so
        the next resolve and ``hubcache gc`` remove it if this process is killed)."""
        if self.hit(sha256):
            return None
        self.store.retire(self.key)  # a stale entry, or the debris of an unfinished upload
        for item in stale_local_stagings(grace=GRACE):  # what killed resolves left here
            shutil.rmtree(item.path, ignore_errors=True)
        owner = f"{socket.gethostname()}.{os.getpid()}.{uid}"  # as a lock names its holder
        self._tmp = os.path.join(tempfile.gettempdir(), STAGE_PREFIX + owner)
        os.mkdir(self._tmp, 0o700)
        return os.path.join(self._tmp, self.key)

    def publish(self, staging: str, manifest: Manifest) -> None:
        """Upload: descriptor, files in parallel, the manifest LAST and only if absent."""
        descriptor = descriptor_text(manifest.handle)
        if not self.store.upload_entry(self.key, staging, manifest, descriptor):
            log.info("another process published %s first; using its copy", self.handle)

    def cleanup(self, staging: str) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def unusable(self, exc: OSError) -> CacheDirError:
        return CacheDirError(
            f"cannot stage {self.handle} for {self.where} in the local temporary folder: {exc}",
            errno=exc.errno,
        )

    def close(self) -> None:
        """The resolve is over: close the store's client (its connections)."""
        self.store.close()


def open_target(handle: str, key: str, config: Config) -> StoreTarget:
    return StoreTarget(open_storage(config.root, handle, config.store_timeout), key, handle, config)


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


def is_remote_directory(url: str, handle: str, timeout: float) -> bool:
    """Whether ``url`` (``gs://``, ``s3://``...) is an existing folder: a directory handle
    on a store is returned as it is, after this check."""
    from ..fetch.objectstore import close_client, first_contact, store_error
    from ..fetch.source import filesystem

    fs, path = filesystem(url, handle)
    try:
        first_contact(url, timeout, lambda: fs.isdir(path))
        return bool(fs.isdir(path))
    except HubcacheError:
        raise
    except Exception as exc:
        raise store_error(url, exc, handle) from exc
    finally:
        close_client(fs)
