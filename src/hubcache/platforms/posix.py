"""Linux, macOS and the BSDs: what every POSIX system does alike.

Chosen by the façade ``hubcache._platform`` on every OS but Windows, together with the
module of the OS itself (``linux``, ``darwin``; another Unix uses this one's defaults: start
times from psutil, no drive cache to flush beyond fsync). A process is probed by signal 0;
a file is created if absent by a hard link; a folder is private when we own it and no one
else may write it; folders are fsynced like files.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .. import _faults
from .common import CREATE_EXCLUSIVE, PSUTIL_CLOCK, READ, processor_vendor

# mypy's idiom for a module of one platform family: with --platform win32 the rest is not
# checked (it names os.geteuid and os.sendfile, which Windows lacks); never imported there.
assert sys.platform != "win32"  # noqa: S101

T = TypeVar("T")

#: The descriptor a file is fsynced through: a read-only one is enough on POSIX.
SYNC_FILE = READ
#: Folders can be opened and fsynced, which makes their new names durable.
SYNC_DIRS = True
#: Start times from psutil: what a Unix without its own module here offers.
CLOCKS = (PSUTIL_CLOCK,)


def pid_alive(pid: int) -> Optional[bool]:
    """Whether process ``pid`` exists on this host; None when this platform cannot tell."""
    try:
        os.kill(pid, 0)  # signal 0: a permission and existence check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except OSError:
        return None
    return True


def pread(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset`` without moving the descriptor's position."""
    return os.pread(fd, size, offset)


CAN_SENDFILE = hasattr(os, "sendfile")


def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """``os.sendfile``: the mirror's fast path sends stored archives with it."""
    return os.sendfile(out_fd, in_fd, offset, count)


CAN_FORK = True  # ``hubcache serve --workers N``


def fork() -> int:
    """``os.fork``: 0 in the child, the child's PID in the parent."""
    return os.fork()


def ask_to_stop(pid: int) -> None:
    """SIGTERM to a child (a worker drains, then exits); nothing if it is gone already."""
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def wait_child() -> tuple[int, bool]:
    """Wait for any child process to end: (its PID, whether it failed: a signal or a
    non-zero exit). ChildProcessError when there is none left."""
    pid, status = os.wait()
    return pid, os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0


def flush_drive_cache(path: str) -> None:
    """Nothing to do: fsync already flushed the drive's cache (macOS has its own module)."""


def retry_busy(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)`` once: on POSIX a PermissionError is a real permission
    problem, raised at once (an open file never blocks a rename here)."""
    return call(*args, **kwargs)


def create_from(tmp: str, path: str) -> bool:
    """Give ``path`` the contents of ``tmp`` only if ``path`` is absent, by a hard link
    (atomic). Without links (FAT, some network shares) the copy is an exclusive create,
    then the bytes: one creator only, but a reader may see it half-written for a moment."""
    fs = _faults.fs
    try:
        fs.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
    try:  # no hard links here: an exclusive create, then the bytes
        fd = fs.open(path, CREATE_EXCLUSIVE, 0o644)
    except FileExistsError:
        return False
    try:
        with open(tmp, "rb") as src:
            while data := src.read(1 << 20):
                view = memoryview(data)
                while view:
                    view = view[fs.write(fd, view) :]
    finally:
        fs.close(fd)
    return True


def location_problem(path: str) -> Optional[str]:
    """None: on POSIX a folder not made yet is created private (0700) by us."""
    return None


def owner_problem(path: str, st: os.stat_result) -> Optional[str]:
    """Why the folder ``st`` describes could be controlled by another user, or None."""
    if st.st_uid != os.geteuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH:
        return "it is writable by other users"
    if st.st_mode & stat.S_IWGRP and st.st_gid != os.getegid():
        return "it is writable by another group"
    return None


def private_fallback(root: str) -> str:
    """Where to go when the shared default root is unsafe: ``<root>-<uid>``."""
    return f"{root}-{os.geteuid()}"


def raise_fd_limit() -> Optional[int]:
    """Raise this process's open-file limit to its hard limit (every connection of a server
    is a descriptor; a busy mirror needs thousands) and return the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else int(soft)


#: No /proc here: the processor string names the vendor, or nothing does.
cpu_vendor = processor_vendor
