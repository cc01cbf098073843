"""The download lock on a storage root: ``<key>.lock``, created only if absent.

Same contents as the local lock (``<host>.<pid>.<uid>``, tensorflow_hub's format), but the
rules differ because there is no process table or staging folder to look at on a bucket:

* **acquire**: ``Storage.create`` -- a real precondition on GCS and S3 (see
  ``_storage_fsspec`` for the best-effort fallback elsewhere);
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

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Optional

from ._errors import LockTimeoutError
from ._lock import new_uid, parse_holder
from ._storage import Storage

log = logging.getLogger(__name__)

_REPORT_EVERY = 5.0
_CLOCK_EVERY = 30.0  # seconds between readings of the store's clock while waiting


class StorageLock:
    """``<key>.lock`` on a :class:`Storage`; acquired atomically, refreshed while held."""

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
        self.uid = new_uid()
        self.contents = f"{socket.gethostname()}.{os.getpid()}.{self.uid}"
        self._handle = handle
        self._lease = lease
        self._timeout = timeout
        self._on_wait = on_wait
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def try_acquire(self) -> bool:
        if not self.store.create(self.name, self.contents.encode()):
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="hubcache-store-lock", daemon=True)
        self._thread.start()
        return True

    def wait_for_turn(self, done: Callable[[], bool]) -> bool:
        """Block until we hold the lock (True) or ``done()`` says the work is done (False)."""
        start = time.monotonic()
        delay = 0.05
        offset: Optional[float] = None  # store clock minus our clock
        offset_at = 0.0
        last_report = 0.0
        while True:
            if self.try_acquire():
                return True
            if done():
                return False
            raw = self.store.read(self.name)
            if raw is None:
                continue  # released between our two calls: try again at once
            contents = raw.decode("utf-8", "replace")
            holder = parse_holder(contents)
            now = time.monotonic()
            if holder is not None and holder.is_dead_here():
                log.warning(
                    "taking over the lock of %s at %s: its holder (pid %d on this host) is dead",
                    self._handle,
                    self.store.join(self.name),
                    holder.pid,
                )
                self._break(contents)
                continue
            if offset is None or now - offset_at > _CLOCK_EVERY:
                offset, offset_at = self.store.server_time() - time.time(), now
            touched = self.store.modified(self.name)
            age = (time.time() + offset - touched) if touched is not None else 0.0
            if age > self._lease:
                log.warning(
                    "taking over the lock of %s held by %s: not refreshed for %.0fs",
                    self._handle,
                    contents.strip(),
                    age,
                )
                self._break(contents)
                continue
            waited = now - start
            if self._timeout is not None and waited > self._timeout:
                raise LockTimeoutError(
                    f"gave up after {waited:.0f}s waiting for {contents.strip()} to finish "
                    f"{self._handle} (HUBCACHE_LOCK_TIMEOUT={self._timeout:g}); if that "
                    f"process is gone, delete {self.store.join(self.name)}",
                    handle=self._handle,
                )
            if now - last_report >= _REPORT_EVERY:
                last_report = now
                message = f"{contents.strip()} (lock {self.store.join(self.name)})"
                log.info("waiting for %s to publish %s", message, self._handle)
                if self._on_wait is not None:
                    self._on_wait(message)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _break(self, judged: str) -> None:
        if self.store.read(self.name) == judged.encode():
            self.store.remove(self.name)

    def _beat(self) -> None:
        interval = max(0.2, min(5.0, self._lease / 4))
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):  # a network blip must not kill the holder
                if self.store.read(self.name) != self.contents.encode():
                    return  # taken over: stop refreshing a lock that is not ours
                self.store.write(self.name, self.contents.encode())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(Exception):  # an expired lock is taken over anyway
            if self.store.read(self.name) == self.contents.encode():
                self.store.remove(self.name)
