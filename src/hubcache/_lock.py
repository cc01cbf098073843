"""The download lock: one ``<key>.lock`` file per entry, in tensorflow_hub's format.

The lock only avoids duplicate downloads; correctness never depends on it (each attempt
stages in its own folder and publishes with one rename, see ``_publish``). That is why a
lock can be broken without fear once its holder is judged gone.

Contents: ``<host>.<pid>.<uid>``, as tensorflow_hub writes it, so each client can read the
other's locks. tensorflow_hub takes the text after the last dot as the holder's task id and
watches ``<key>.<uid>.tmp`` grow; our staging folders use the same name, so its stale-lock
check sees our progress. Our uid is ``<32 hex>t<process start time in hex>``: still one
dot-free token for tensorflow_hub, and for us a guard against PID reuse.

A holder is judged gone when:

* it is on this host and its PID is dead, or alive but started at another time (reused):
  the lock is broken at once;
* for ``lease`` seconds nothing moved: the lock file was not refreshed (we touch ours every
  few seconds while downloading) and its staging folder did not grow (tensorflow_hub's rule).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from . import _faults
from ._errors import CacheDirError, LockTimeoutError

log = logging.getLogger(__name__)

_HEARTBEAT = 5.0  # seconds between touches of our own lock
_REPORT_EVERY = 5.0  # seconds between "waiting for ..." log lines


def _start_time(pid: int) -> Optional[int]:
    """The start time of ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, parsed from its contents."""

    host: str
    pid: int
    uid: str
    raw: str

    @property
    def start_time(self) -> Optional[int]:
        if len(self.uid) > 33 and self.uid[32] == "t":
            try:
                return int(self.uid[33:], 16)
            except ValueError:
                return None
        return None

    def is_dead_here(self) -> bool:
        """True when the holder is on this host and its process is gone (or PID reused)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, owned by another user
        except OSError:
            return False
        expected = self.start_time
        return expected is not None and _start_time(self.pid) not in (None, expected)


def parse_holder(text: str) -> Optional[Holder]:
    parts = text.strip().rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Holder(parts[0], int(parts[1]), parts[2], text)


def new_uid() -> str:
    start = _start_time(os.getpid())
    return uuid.uuid4().hex + (f"t{start:x}" if start is not None else "")


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class DownloadLock:
    """``<key>.lock``: acquired atomically, refreshed while held, released if still ours."""

    def __init__(
        self,
        path: str,
        staging_of: Callable[[str], str],
        *,
        handle: str,
        lease: float,
        timeout: Optional[float],
        on_wait: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.path = path
        self.uid = new_uid()
        self.contents = f"{socket.gethostname()}.{os.getpid()}.{self.uid}"
        self._staging_of = staging_of
        self._handle = handle
        self._lease = lease
        self._timeout = timeout
        self._on_wait = on_wait
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.waited = 0.0

    # -- acquire -------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        if _faults.NO_LOCK:  # tests: a filesystem whose locks silently do nothing
            return True
        fs = _faults.fs
        try:
            fd = fs.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._unusable(exc) from exc
        try:
            try:
                fs.write(fd, self.contents.encode())
            finally:
                fs.close(fd)
        except OSError as exc:
            # An empty lock names no holder, so nobody could judge it dead: never leave one.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise self._unusable(exc) from exc
        self._start_heartbeat()
        return True

    def _unusable(self, exc: OSError) -> CacheDirError:
        return CacheDirError(
            f"cannot create the lock file {self.path}: {exc.strerror}; check that the "
            "cache directory is writable and not full",
            handle=self._handle,
            errno=exc.errno,
        )

    def wait_for_turn(self, done: Callable[[], bool]) -> bool:
        """Block until we hold the lock (True) or ``done()`` says the work is done (False)."""
        start = time.monotonic()
        delay = 0.02
        seen: Optional[str] = None
        progress_mark = (0.0, -1)  # (lock mtime, staging size)
        last_progress = time.monotonic()
        last_report = 0.0
        while True:
            if self.try_acquire():
                self.waited = time.monotonic() - start
                return True
            if done():
                self.waited = time.monotonic() - start
                return False
            contents = read_text(self.path)
            if contents is None:
                continue  # released between our two calls: try again at once
            holder = parse_holder(contents)
            now = time.monotonic()
            if contents != seen:
                seen, last_progress, progress_mark = contents, now, (0.0, -1)
            if holder is not None and holder.is_dead_here():
                log.warning(
                    "breaking the lock of %s: its holder (pid %d on this host) is dead",
                    self._handle,
                    holder.pid,
                )
                self._break(contents)
                # Its staging folder can never be published now: remove it at once.
                shutil.rmtree(self._staging_of(holder.uid), ignore_errors=True)
                continue
            mark = self._progress_mark(holder)
            if mark != progress_mark:
                progress_mark, last_progress = mark, now
            elif now - last_progress > self._lease:
                log.warning(
                    "breaking the lock of %s held by %s: no progress for %.0fs",
                    self._handle,
                    contents.strip(),
                    now - last_progress,
                )
                self._break(contents)
                continue
            waited = now - start
            if self._timeout is not None and waited > self._timeout:
                raise LockTimeoutError(
                    f"gave up after {waited:.0f}s waiting for {contents.strip()} to finish "
                    f"downloading {self._handle} (HUBCACHE_LOCK_TIMEOUT={self._timeout:g}); "
                    f"if that process is gone, delete {self.path}",
                    handle=self._handle,
                )
            if now - last_report >= _REPORT_EVERY:
                last_report = now
                message = _describe(holder, contents, mark[1])
                log.info("waiting for %s to download %s", message, self._handle)
                if self._on_wait is not None:
                    self._on_wait(message)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _progress_mark(self, holder: Optional[Holder]) -> tuple[float, int]:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            mtime = 0.0
        size = tree_size(self._staging_of(holder.uid)) if holder is not None else -1
        return (mtime, size)

    def _break(self, judged: str) -> None:
        break_lock(self.path, judged, self.uid)

    # -- hold ----------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name="hubcache-lock-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(_HEARTBEAT):
            if read_text(self.path) != self.contents:
                return  # taken over: stop touching a lock that is not ours
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours. Never raises: a
        lock left behind names a dead holder, which the next process breaks at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if _faults.NO_LOCK:
            return
        try:
            if read_text(self.path) == self.contents:
                _faults.fs.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the lock %s: %s", self.path, exc)


def break_lock(path: str, judged: str, uid: str) -> bool:
    """Remove a lock judged stale, without removing a fresh one taken meanwhile.

    True when the lock we judged is gone. ``uid`` names the aside file, so two
    processes breaking the same lock never move each other's copies.
    """
    aside = f"{path}.{uid}.broken"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    ours = read_text(aside) == judged
    if not ours:
        # Someone replaced the stale lock between our read and rename: put theirs back
        # (link never overwrites, so a third process's newer lock is kept instead).
        with contextlib.suppress(OSError):
            os.link(aside, path)
    with contextlib.suppress(OSError):
        os.unlink(aside)
    return ours


def _describe(holder: Optional[Holder], contents: str, size: int) -> str:
    if holder is None:
        return f"the holder of an unreadable lock ({contents.strip()[:80]!r})"
    done = f", {size / 1e6:.1f} MB extracted so far" if size >= 0 else ""
    return f"pid {holder.pid} on {holder.host}{done}"
