"""The download lock: :class:`LockBase` owns the waiting; a backend says where a lock lives.

The lock only avoids duplicate downloads; correctness never depends on it (each attempt
stages in its own folder and publishes with one rename, see ``local.publish``). That is why a
lock can be broken without fear once its holder is judged gone. Its contents name the
holder, ``<host>.<pid>.<uid>`` in tensorflow_hub's format (see ``local.holder``).

:class:`LockBase` holds the rules every backend shares: the wait loop, the timeout, the
"waiting for ..." reports, the heartbeat and release-if-ours. A backend implements only
primitives: create if absent, read, break if unchanged, touch, delete, and how long the
holder has shown no progress. :class:`DownloadLock` here is the local ``<key>.lock`` file;
``StorageLock`` in ``store.lock`` is the same lock on a storage root. A holder is gone:

* when it is on this host and its PID is dead, or alive but started at another time (reused):
  the lock is broken at once;
* when for ``lease`` seconds nothing moved. For the local file: the lock was not refreshed (we
  touch ours every few seconds while downloading) and its staging folder did not grow
  (tensorflow_hub's rule).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Optional

from .. import _faults, _platform
from .._errors import CacheDirError, LockTimeoutError
from .holder import Holder, new_uid, parse_holder
from .tree import tree_stats

__all__ = ["DownloadLock", "Holder", "LockBase", "break_lock", "new_uid", "parse_holder"]
__all__ += ["is_tfhub_uid", "read_text"]

log = logging.getLogger(__name__)

_REPORT_EVERY = 5.0  # seconds between "waiting for ..." log lines
# seconds a lock may stay empty before its taker counts as dead: the contents are written
# at once after the exclusive create, so only a kill in between leaves it empty for long
EMPTY_LEASE = 2.0


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


class LockBase(abc.ABC):
    """A ``<host>.<pid>.<uid>`` lock: acquired atomically, refreshed while held, released if
    still ours. Subclasses say where it lives; this class decides when to wait or break."""

    _log = log  # each backend logs under its own module's name
    _beat_every = 5.0  # seconds between touches of our own lock
    _first_delay = 0.02  # seconds; polling backs off from here to 1s
    # Words for messages: "<breaking> the lock ...: <stale> for 12s", "waiting for X to <task> Y".
    _breaking = "breaking"
    _stale = "no progress"
    _task = "download"

    def __init__(
        self,
        where: str,
        *,
        handle: str,
        lease: float,
        timeout: Optional[float],
        on_wait: Optional[Callable[[str], None]],
    ) -> None:
        self.where = where  # the lock's path or URL, for messages
        self.uid = new_uid()
        self.contents = f"{socket.gethostname()}.{os.getpid()}.{self.uid}"
        self._handle = handle
        self._lease = lease
        self._timeout = timeout
        self._on_wait = on_wait
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- the primitives a backend implements --------------------------------------------
    @abc.abstractmethod
    def _create(self) -> bool:
        """Write :attr:`contents` only if no lock exists; False when one does."""

    @abc.abstractmethod
    def _read(self) -> Optional[str]:
        """The lock's contents, None when there is none."""

    @abc.abstractmethod
    def _break(self, judged: str) -> None:
        """Remove the lock if it still holds ``judged`` (never a fresh one taken meanwhile)."""

    @abc.abstractmethod
    def _touch(self) -> None:
        """Show that we are alive (the heartbeat, only while the lock is ours)."""

    @abc.abstractmethod
    def _delete(self) -> None:
        """Remove our own lock (release)."""

    @abc.abstractmethod
    def _idle_for(self, holder: Optional[Holder], contents: str) -> float:
        """Seconds since the holder (who wrote ``contents``) last showed progress."""

    @abc.abstractmethod
    def _describe(self, holder: Optional[Holder], contents: str) -> str:
        """Who we are waiting for, and how far they got, for the log and ``on_wait``."""

    def _release_failed(self, exc: Exception) -> None:
        if not isinstance(exc, FileNotFoundError):
            self._log.warning("could not remove the lock %s: %s", self.where, exc)

    # -- acquire -------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        if not self._create():
            return False
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name="hubcache-lock-heartbeat", daemon=True
        )
        self._thread.start()
        return True

    def wait_for_turn(self, done: Callable[[], bool]) -> bool:
        """Block until we hold the lock (True) or ``done()`` says the work is done (False)."""
        start = time.monotonic()
        delay = self._first_delay
        last_report = 0.0
        while True:
            if self.try_acquire():
                return True
            if done():
                return False
            contents = self._read()
            if contents is None:
                continue  # released between our two calls: try again at once
            holder = parse_holder(contents)
            why = self._why_gone(holder, contents)
            if why is not None:
                lock = f"{self._handle} held by {contents.strip()} ({self.where})"
                self._log.warning("%s the lock of %s: %s", self._breaking, lock, why)
                self._break(contents)
                continue
            now = time.monotonic()
            if self._timeout is not None and now - start > self._timeout:
                raise LockTimeoutError(
                    f"gave up after {now - start:.0f}s waiting for {contents.strip()} to "
                    f"{self._task} {self._handle} (HUBCACHE_LOCK_TIMEOUT={self._timeout:g}); "
                    f"if that process is gone, delete {self.where}",
                    handle=self._handle,
                )
            if now - last_report >= _REPORT_EVERY:
                last_report = now
                message = self._describe(holder, contents)
                self._log.info("waiting for %s to %s %s", message, self._task, self._handle)
                if self._on_wait is not None:
                    self._on_wait(message)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _why_gone(self, holder: Optional[Holder], contents: str) -> Optional[str]:
        """Why the holder is judged gone, or None while it may still finish."""
        if holder is not None and holder.is_dead_here():
            return f"its holder (pid {holder.pid} on this host) is dead"
        idle = self._idle_for(holder, contents)
        if not contents.strip() and idle > min(self._lease_for(holder), EMPTY_LEASE):
            # Its taker writes the contents right after creating it (_create): empty for
            # seconds means it was killed in between. The full lease cost 120 s a resolve.
            return f"the lock is empty ({self._stale} for {idle:.0f}s): its taker died taking it"
        return f"{self._stale} for {idle:.0f}s" if idle > self._lease_for(holder) else None

    def _lease_for(self, holder: Optional[Holder]) -> float:
        """Seconds without progress after which ``holder`` counts as gone."""
        return self._lease

    # -- hold ----------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self._beat_every):
            with contextlib.suppress(Exception):  # a blip (network, disk) must not end it
                if self._read() != self.contents:
                    return  # taken over: stop refreshing a lock that is not ours
                self._touch()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours. Never raises: a
        lock left behind names a dead holder or stops being refreshed, so it is broken."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return  # never ours (a wait that failed or saw the work done), or released
        thread.join()
        try:
            if self._read() == self.contents:
                self._delete()
        except Exception as exc:
            self._release_failed(exc)


class DownloadLock(LockBase):
    """The local ``<key>.lock`` file, next to the ``<key>.<uid>.tmp`` staging folders."""

    def __init__(
        self,
        path: str,
        staging_of: Callable[[str], str],
        *,
        handle: str,
        lease: float,
        timeout: Optional[float],
        on_wait: Optional[Callable[[str], None]] = None,
        foreign_lease: Optional[float] = None,
        make_root: Optional[Callable[[], list[str]]] = None,
    ) -> None:
        super().__init__(path, handle=handle, lease=lease, timeout=timeout, on_wait=on_wait)
        self.path = path
        # The root is made for the lock, the first thing a download writes, and removed
        # again on release when this call made it and it holds nothing (a failed resolve
        # leaves no root behind): ``local.root.ensure_root`` / ``remove_made``.
        self._make_root = make_root
        self._made = make_root() if make_root is not None else []
        self._foreign_lease = foreign_lease
        self._staging_of = staging_of
        # Progress seen so far: whose lock, its (mtime, staging size), and when that moved.
        self._seen: Optional[str] = None
        self._mark = (0.0, -1)
        self._moved_at = 0.0

    def _lease_for(self, holder: Optional[Holder]) -> float:
        """As tensorflow_hub's plug-in, its own locks are judged by its rule (``foreign_lease``
        seconds without progress, 600 in every release); a dead holder here is still broken
        at once. Its task id is a bare 32-hex uuid, ours carries ``t<start time>``."""
        if self._foreign_lease is not None and holder is not None and is_tfhub_uid(holder.uid):
            return self._foreign_lease
        return self._lease

    def _create(self) -> bool:
        if not _faults.locking:  # tests: a filesystem whose locks silently do nothing
            return True
        try:
            fd = self._open_exclusive()
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._unusable(exc) from exc
        try:
            try:
                _faults.fs.write(fd, self.contents.encode())
            finally:
                _faults.fs.close(fd)
        except OSError as exc:
            # An empty lock names no holder, so nobody could judge it dead: never leave one.
            with contextlib.suppress(OSError):
                _faults.fs.unlink(self.path)
            raise self._unusable(exc) from exc
        return True

    def _open_exclusive(self) -> int:
        """The lock file, created only if absent. A root that another call made and removed
        again after its own resolve failed (between our making sure of it and now) is made
        once more."""

        def attempt() -> int:
            fd: int = _platform.retry_busy(
                _faults.fs.open, self.path, _platform.CREATE_EXCLUSIVE, 0o644
            )
            return fd

        try:
            return attempt()
        except FileNotFoundError:
            if self._make_root is None:
                raise
            self._made += self._make_root()
            return attempt()

    def release(self) -> None:
        """As :meth:`LockBase.release`, then remove the folders made for the lock if they
        hold nothing (a published entry or another process's lock keeps them)."""
        super().release()
        if self._made:
            from .root import remove_made

            remove_made(self._made)
            self._made = []

    def _unusable(self, exc: OSError) -> CacheDirError:
        return CacheDirError(
            f"cannot create the lock file {self.path}: {exc.strerror}; check that the "
            "cache directory is writable and not full",
            handle=self._handle,
            errno=exc.errno,
        )

    def _read(self) -> Optional[str]:
        return read_text(self.path)

    def _break(self, judged: str) -> None:
        break_lock(self.path, judged, self.uid)
        holder = parse_holder(judged)
        if holder is not None and holder.is_dead_here():
            # Its staging folder can never be published now: remove it at once.
            shutil.rmtree(self._staging_of(holder.uid), ignore_errors=True)

    def _touch(self) -> None:
        _platform.retry_busy(_faults.fs.utime, self.path)  # Windows: a waiter may be reading

    def _delete(self) -> None:
        _platform.retry_busy(_faults.fs.unlink, self.path)  # Windows: a waiter may be reading it

    def _idle_for(self, holder: Optional[Holder], contents: str) -> float:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            mtime = 0.0
        mark = (mtime, tree_stats(self._staging_of(holder.uid)).size if holder is not None else -1)
        now = time.monotonic()
        if contents != self._seen or mark != self._mark:  # a new holder, or it moved
            self._seen, self._mark, self._moved_at = contents, mark, now
        return now - self._moved_at

    def _describe(self, holder: Optional[Holder], contents: str) -> str:
        if holder is None:
            return f"the holder of an unreadable lock ({contents.strip()[:80]!r})"
        size = self._mark[1]
        done = f", {size / 1e6:.1f} MB extracted so far" if size >= 0 else ""
        return f"pid {holder.pid} on {holder.host}{done}"


def is_tfhub_uid(uid: str) -> bool:
    """True for tensorflow_hub's task id (``uuid.uuid4().hex``), which ours extends."""
    return len(uid) == 32 and all(c in "0123456789abcdef" for c in uid)


def break_lock(path: str, judged: str, uid: str) -> bool:
    """Remove a lock judged stale, without removing a fresh one taken meanwhile.

    True when the lock we judged is gone. ``uid`` names the aside file, so two
    processes breaking the same lock never move each other's copies.
    """
    aside = f"{path}.{uid}.broken"
    try:
        _platform.retry_busy(_faults.fs.rename, path, aside)
    except FileNotFoundError:
        return False
    ours = read_text(aside) == judged
    if not ours:
        # Someone replaced the stale lock between our read and rename: put theirs back,
        # never over a third process's newer lock (create_from never overwrites).
        with contextlib.suppress(OSError):
            _platform.create_from(aside, path)
    with contextlib.suppress(OSError):
        _faults.fs.unlink(aside)
    return ours
