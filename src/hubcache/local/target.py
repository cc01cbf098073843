"""A local cache root as the place a resolve publishes to (the common case).

The resolve skeleton (``_resolve.acquire``) asks a target a handful of questions, in the
same order for every kind of root; this is the local answer to each:

* ``hit``: the entry is complete (its manifest proves it; the pin, if any, matches), or
  legacy (tensorflow_hub's, no manifest) and adopted by writing one;
* ``lock``: ``<key>.lock`` with tensorflow_hub's contents, broken at once when its holder
  died (``local.lock``);
* ``prepare``: under the lock, gc this key's debris, re-check, move a damaged tree aside;
  the staging folder is ``<key>.<uid>.tmp`` beside the entry, so publishing is one rename;
* ``publish``: descriptor, the atomic rename, the manifest (``local.publish``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Optional

from .._config import Config
from .._errors import CacheDirError
from .entry import Entry
from .lock import DownloadLock
from .manifest import Manifest, check_pin
from .publish import adopt, discard, publish
from .root import ensure_root

log = logging.getLogger(__name__)


class LocalTarget:
    def __init__(self, entry: Entry, handle: str, config: Config) -> None:
        self.entry = entry
        self.handle = handle  # as shown: credentials hidden
        self.config = config
        self.path = entry.path
        self.where = entry.root

    def hit(self, sha256: Optional[str]) -> bool:
        """True when the entry can be used as it is (adopting a legacy tree on the way)."""
        entry = self.entry
        if entry.is_complete():
            if sha256 is not None:
                manifest = entry.manifest()
                if manifest is not None:
                    check_pin(manifest, sha256, fresh=False, where=entry.path)
            return True
        if sha256 is None and entry.state().name == "legacy":
            if not self.config.offline:
                adopt(entry, self.handle)
            return True
        return False

    def lock(self, on_wait: Optional[Callable[[str], None]]) -> DownloadLock:
        """The entry's lock; the root is made here (the lock is the first thing a miss
        writes) and removed on release if it was made for this call and holds nothing."""
        config = self.config
        root = self.entry.root
        return DownloadLock(
            self.entry.lock_path,
            self.entry.staging,
            handle=self.handle,
            lease=config.lock_lease,
            timeout=config.lock_timeout,
            on_wait=on_wait,
            foreign_lease=config.foreign_lock_lease,
            make_root=lambda: ensure_root(root, private=config.root_is_default),
        )

    def done(self) -> bool:
        return self.entry.is_complete()

    def prepare(self, uid: str, sha256: Optional[str]) -> Optional[str]:
        """Under the lock: None when a previous holder's entry serves (re-checked), else
        the empty staging path to fill (debris gone, a damaged tree moved aside)."""
        entry = self.entry
        if _may_hold_debris(entry):
            from .gc import remove_debris  # only then: gc's import is ~2 ms of a small miss

            remove_debris(entry.root, entry.key, keep=uid)
        state = entry.state()  # re-check: the previous holder may have published
        if state.name in ("complete", "legacy") and self.hit(sha256):
            return None
        if state.name == "damaged":
            log.warning(
                "the cached copy of %s at %s is damaged (%s); downloading it again",
                self.handle,
                entry.path,
                state.reason,
            )
        if state.name != "missing":
            entry.move_aside(uid)
        return entry.staging(uid)

    def publish(self, staging: str, manifest: Manifest) -> None:
        if not publish(self.entry, staging, manifest, fsync=self.config.fsync):
            log.info("another process published %s first; using its copy", self.handle)

    def cleanup(self, staging: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            discard(staging)

    def unusable(self, exc: OSError) -> CacheDirError:
        """Creating or publishing the staging folder failed: the cache's problem."""
        from .._disk import disk_error

        return disk_error(exc, self.entry.root, None, None)


def _may_hold_debris(entry: Entry) -> bool:
    """Whether the root holds a name of this key beyond the entry's own (tree, descriptor,
    manifest, the lock we hold): a staging or trash folder, a ``.part`` file, a broken
    lock. One listing; ``local.gc`` judges what it finds."""
    prefix = entry.key + "."
    own = {prefix + "lock", prefix + "descriptor.txt", prefix + "manifest.json"}
    try:
        names = os.listdir(entry.root)
    except OSError:
        return True  # let gc's own listing decide (and never raise)
    return any(name.startswith(prefix) and name not in own for name in names)
