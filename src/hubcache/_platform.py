"""Everything that differs between Linux, macOS and Windows, behind one portable contract.

Layer: core (docs/architecture.md), beside ``_config`` and ``_handles``; it imports only
:mod:`hubcache.platforms`, the layer below it. The rest of hubcache never tests
``sys.platform`` nor touches a POSIX-only name of :mod:`os`; it asks this module. This is a
façade: the definitions live in one module per OS, chosen here once, at import, by
``sys.platform`` tests that mypy understands (``mypy --platform win32`` checks that the
Windows choice uses nothing POSIX-only, and the reverse):

* ``platforms.common``: the same everywhere (open flags, start tokens, psutil, name rules);
* ``platforms.posix``: Linux, macOS and BSDs alike (signal 0, hard links, owners and modes);
* ``platforms.linux``: start times and the CPU's vendor from ``/proc``;
* ``platforms.darwin``: ``F_FULLFSYNC``; start times from psutil;
* ``platforms.windows``: psutil or kernel32 and never a signal, busy-rename retries, the
  profile as the private place, no folder syncs.

Each name says what it promises on every platform, and what it returns when a platform cannot
tell (``None``: the caller then takes the cautious path). ``docs/platforms.md`` says what each
guarantee means per platform.

Processes (who holds a lock): :func:`pid_alive` (never a signal on Windows, where ``os.kill``
terminates); :func:`start_token` / :func:`same_start`, when a process started as
``<method><hex>`` so a reused PID is told apart (``t``: clock ticks since boot from ``/proc``,
Linux; ``p``: psutil's create time in ms, macOS, BSDs, Windows; ``w``: the Win32 creation
FILETIME, Windows without psutil). A token is only compared by the method that wrote it; a
method unavailable here answers ``None`` ("cannot tell"), never "reused".

Files: open flags (``O_BINARY`` on Windows, where ``os.open`` is otherwise a *text* mode),
syncing (:func:`writeback`, ``SYNC_FILE``, ``SYNC_DIRS``, :func:`flush_drive_cache`), renames
that Windows refuses while another process has the file open (:func:`retry_busy`), a
create-if-absent that works without hard links (:func:`create_from`: True when ours is the
file at ``path``, False when one was there; ``tmp`` may remain either way, the caller removes
it), ``pread``/``sendfile``, the default root's privacy check, read-only detection, and the
member names Windows cannot hold or would misread as drives, devices or separators.

Only :mod:`os` and :mod:`sys` are imported at start-up (with the chosen modules' own few);
psutil, ctypes and fcntl on first use, so ``import hubcache`` stays cheap. Calls that write
the cache go through ``_faults.fs`` like every other such call, so the fault-injection tests
reach them.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from .platforms import common
from .platforms.common import (
    CREATE_EXCLUSIVE,
    CREATE_NEW_FILE,
    O_BINARY,
    O_CLOEXEC,
    O_NOATIME,
    O_NOFOLLOW,
    O_NONBLOCK,
    READ,
    WRITE_TRUNCATE,
    inside,
    make_blocking,
    on_termination,
    read_only_fs,
    user_id,
    writeback,
)

#: "linux", "macos", "windows" or "posix" (another Unix), fixed at import.
SYSTEM = (
    "windows"
    if sys.platform == "win32"
    else "macos"
    if sys.platform == "darwin"
    else "linux"
    if sys.platform.startswith("linux")
    else "posix"
)
WINDOWS = SYSTEM == "windows"

# The family decides processes, files and folders; the system adds its clock and drive flush.
if sys.platform == "win32":
    from .platforms import windows as family
    from .platforms import windows as system
else:
    from .platforms import posix as family

    if sys.platform == "darwin":
        from .platforms import darwin as system
    elif sys.platform.startswith("linux"):
        from .platforms import linux as system
    else:
        from .platforms import posix as system

__all__ = [
    "CAN_FORK",
    "CAN_SENDFILE",
    "CREATE_EXCLUSIVE",
    "CREATE_NEW_FILE",
    "O_BINARY",
    "O_CLOEXEC",
    "O_NOATIME",
    "O_NOFOLLOW",
    "O_NONBLOCK",
    "READ",
    "SYNC_DIRS",
    "SYNC_FILE",
    "SYSTEM",
    "WINDOWS",
    "WRITE_TRUNCATE",
    "ask_to_stop",
    "cpu_vendor",
    "create_from",
    "flush_drive_cache",
    "fork",
    "inside",
    "location_problem",
    "make_blocking",
    "name_problem",
    "on_termination",
    "pid_alive",
    "pread",
    "private_fallback",
    "private_folder_problem",
    "raise_fd_limit",
    "read_only_fs",
    "retry_busy",
    "same_start",
    "sendfile",
    "start_token",
    "user_id",
    "wait_child",
    "writeback",
]

# Windows' fsync (FlushFileBuffers) needs a handle open for writing; POSIX syncs a read-only one.
SYNC_FILE = family.SYNC_FILE
#: Whether a directory can be opened and fsynced (its new names made durable). Not on Windows,
#: where NTFS journals names itself and a directory cannot be opened as a file.
SYNC_DIRS = family.SYNC_DIRS
#: Whether :func:`sendfile` works here; the mirror falls back to aiohttp's sending when not.
CAN_SENDFILE = family.CAN_SENDFILE
#: Whether this process can fork workers (``hubcache serve --workers``): not on Windows.
CAN_FORK = family.CAN_FORK

pid_alive = family.pid_alive
pread = family.pread
sendfile = family.sendfile
fork = family.fork
ask_to_stop = family.ask_to_stop
wait_child = family.wait_child
retry_busy = family.retry_busy
create_from = family.create_from
location_problem = family.location_problem
private_fallback = family.private_fallback
flush_drive_cache = system.flush_drive_cache
#: The CPU's vendor string ("AuthenticAMD", "GenuineIntel"), "" when unknown: /proc/cpuinfo on
#: Linux, the processor string elsewhere (archive.decode picks the inflater by it).
cpu_vendor = system.cpu_vendor
raise_fd_limit = family.raise_fd_limit


def start_token(pid: int) -> Optional[str]:
    """When ``pid`` started, as ``<method letter><hex>``; None when no method here knows."""
    return common.start_token(pid, system.CLOCKS)


def same_start(pid: int, token: str) -> Optional[bool]:
    """Whether ``pid`` is still the process that wrote ``token`` (False: the PID was reused);
    None when the token's method is not available here or ``pid`` cannot be inspected."""
    return common.same_start(pid, token, system.CLOCKS)


def private_folder_problem(path: str, st: os.stat_result) -> Optional[str]:
    """Why the existing folder ``path`` (``st`` from lstat) in a shared temp area could be
    controlled by another user, or None."""
    return common.folder_problem(st) or family.owner_problem(path, st)


def name_problem(part: str, windows: bool = WINDOWS) -> Optional[str]:
    """Why one path component cannot be written safely here, or None. Only Windows restricts
    names beyond ``/`` and NUL (``platforms.common.windows_name_problem`` says how)."""
    return common.windows_name_problem(part) if windows else None
