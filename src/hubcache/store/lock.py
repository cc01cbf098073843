"""The download lock on a storage root: ``<key>.lock``, created only if absent.

Same contents as the local lock (``<host>.<pid>.<uid>``, tensorflow_hub's format), but the
rules differ because there is no process table or staging folder to look at on a bucket:

* **acquire**: ``Storage.create`` -- a real precondition on GCS and S3 (see
  ``store.fsspec`` for the best-effort fallback elsewhere);
* **heartbeat**: while held, the holder rewrites its lock every few seconds, which moves
  the object's modification time on the store's clock;
* **lease**: a waiter compares that modification time with the store's clock now (read
  from a probe object, ``Storage.server_time``), so hosts with skewed clocks agree; a lock
  not refreshed for ``lease`` seconds is taken over. A holder on this host whose process
  is dead is taken over at once.

Taking over deletes the lock only if it still holds what was judged stale; the read and
the delete are two requests, so two waiters can, rarely, both proceed. As everywhere,
the lock only saves duplicate downloads: correctness comes from the manifest being
written last, only if absent, and checked file by file by every reader.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Optional

from ..local.holder import Holder
from ..local.lock import LockBase, parse_holder
from .storage import Storage

log = logging.getLogger(__name__)

_CLOCK_EVERY = 30.0  # seconds between readings of the store's clock while waiting


class StorageLock(LockBase):
    """``<key>.lock`` on a :class:`Storage`; acquired atomically, refreshed while held."""

    _log = log
    _first_delay = 0.05  # each poll is a request to the store
    _breaking = "taking over"
    _stale = "not refreshed"
    _task = "publish"

    def __init__(
        self,
        store: Storage,
        key: str,
        *,
        handle: str,
        lease: float,
        timeout: Optional[float],
        on_wait: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.store = store
        self.name = f"{key}.lock"
        super().__init__(
            store.join(self.name), handle=handle, lease=lease, timeout=timeout, on_wait=on_wait
        )
        # Refresh often enough that a short lease (tests, fast stores) is never missed.
        self._beat_every = max(0.2, min(5.0, lease / 4))
        self._offset: Optional[float] = None  # store clock minus our clock
        self._offset_at = 0.0

    def _create(self) -> bool:
        return self.store.create(self.name, self.contents.encode())

    def _read(self) -> Optional[str]:
        raw = self.store.read(self.name)
        return raw.decode("utf-8", "replace") if raw is not None else None

    def _break(self, judged: str) -> None:
        # Two requests, not one: two waiters may, rarely, both proceed (module docstring).
        if self._read() == judged:
            self.store.remove(self.name)

    def _touch(self) -> None:
        self.store.write(self.name, self.contents.encode())

    def _delete(self) -> None:
        self.store.remove(self.name)

    def _release_failed(self, exc: Exception) -> None:
        pass  # an expired lock is taken over anyway; the tier warns once per resolve

    def _idle_for(self, holder: Optional[Holder], contents: str) -> float:
        """Age of the last refresh on the store's clock, so skewed hosts agree."""
        now = time.monotonic()
        if self._offset is None or now - self._offset_at > _CLOCK_EVERY:
            self._offset, self._offset_at = self.store.server_time() - time.time(), now
        touched = self.store.modified(self.name)
        return (time.time() + self._offset - touched) if touched is not None else 0.0

    def _describe(self, holder: Optional[Holder], contents: str) -> str:
        return f"{contents.strip()} (lock {self.where})"


def judge_store_lock(
    store: Storage, key: str, lease: float, now: Optional[float]
) -> tuple[str, Optional[str]]:
    """``(contents, why it is stale)`` of ``<key>.lock``, or ``(contents, None)`` while live.

    Stale means: no lock, a holder that is a dead process on this host, or no refresh for
    ``lease`` seconds on the store's clock (``now``; None when it cannot be read, in which
    case only a dead holder makes a lock stale). Removal (``lease``) and gc (its grace)
    judge with this one rule.
    """
    raw = store.read(f"{key}.lock")
    if raw is None:
        return "", "no lock"
    contents = raw.decode("utf-8", "replace")
    holder = parse_holder(contents)
    if holder is not None and holder.is_dead_here():
        return contents, f"holder pid {holder.pid} is dead"
    touched = store.modified(f"{key}.lock")
    if touched is not None and now is not None and now - touched > lease:
        return contents, f"no progress for {now - touched:.0f}s"
    return contents, None
