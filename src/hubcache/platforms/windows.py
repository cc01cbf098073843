"""Windows: no signals, no owners, no ``pread``, renames refused while a file is open.

Chosen by the façade ``hubcache._platform`` when ``sys.platform`` is ``win32``. Everything
here uses only names every platform's :mod:`os` has, so it is type-checked and tested on
Linux too (the Win32 calls against a fake kernel32):

* a process is probed by psutil when installed, else by kernel32 through ctypes; never by
  ``os.kill``, which on Windows *terminates* the process for any other value than the two
  console events;
* a start token is psutil's create time, else the Win32 creation FILETIME (``w``);
* a rename or delete refused because another process holds the file (a reader, an antivirus
  scanner) is retried for about a second; create-if-absent is a rename, which never replaces;
* the default root is private when it lies inside the user's profile (no owner to check);
* folders cannot be opened, so they are not fsynced (NTFS journals names itself), and a file
  is fsynced through a handle open for writing (``FlushFileBuffers`` needs one).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .. import _faults
from .common import O_BINARY, PSUTIL_CLOCK, StartClock, inside, processor_vendor, psutil

T = TypeVar("T")

SYNC_FILE = os.O_WRONLY | O_BINARY
SYNC_DIRS = False


def pid_alive(pid: int) -> Optional[bool]:
    """Whether process ``pid`` exists on this host; None when this platform cannot tell.
    Never a signal: on Windows ``os.kill(pid, 0)`` would terminate the process."""
    module = psutil()
    if module is not None:
        try:
            return bool(module.pid_exists(pid))
        except (OSError, module.Error):
            return None
    return _win32_process(pid)[0]


def _win32_start(pid: int) -> Optional[int]:
    return _win32_process(pid)[1]


#: psutil first (the same tokens as on macOS), else the Win32 creation FILETIME (exact).
CLOCKS = (PSUTIL_CLOCK, StartClock("w", _win32_start, 0))

_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_SYNCHRONIZE = 0x00100000
_ERROR_ACCESS_DENIED = 5
_ERROR_INVALID_PARAMETER = 87  # OpenProcess's answer for a PID that does not exist
_WAIT_OBJECT_0 = 0
_WAIT_TIMEOUT = 0x102


def _win32_process(pid: int, api: Any = None) -> tuple[Optional[bool], Optional[int]]:
    """(alive, creation FILETIME) of ``pid`` from kernel32; (None, None) when unknown.

    ``api`` is an object with kernel32's ``OpenProcess``, ``WaitForSingleObject``,
    ``GetProcessTimes``, ``CloseHandle`` and a ``last_error()``: the tests pass a fake one.
    """
    import ctypes

    if api is None:
        api = _kernel32()
        if api is None:
            return None, None
    handle = api.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION | _SYNCHRONIZE, False, pid)
    if not handle:
        error = api.last_error()
        if error == _ERROR_INVALID_PARAMETER:
            return False, None
        return (True if error == _ERROR_ACCESS_DENIED else None), None
    try:
        waited = api.WaitForSingleObject(handle, 0)
        alive = True if waited == _WAIT_TIMEOUT else False if waited == _WAIT_OBJECT_0 else None
        times = [ctypes.c_uint64() for _ in range(4)]  # creation, exit, kernel, user
        if not api.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return alive, None
        return alive, times[0].value or None
    finally:
        api.CloseHandle(handle)


class _Kernel32:
    """kernel32 through ctypes, with the argument types spelled out (64-bit handles)."""

    def __init__(self) -> None:
        import ctypes

        dll = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        handle, dword, ptr = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p
        dll.OpenProcess.restype = handle
        dll.OpenProcess.argtypes = [dword, ctypes.c_int, dword]
        dll.WaitForSingleObject.restype = dword
        dll.WaitForSingleObject.argtypes = [handle, dword]
        dll.GetProcessTimes.restype = ctypes.c_int
        dll.GetProcessTimes.argtypes = [handle, ptr, ptr, ptr, ptr]
        dll.CloseHandle.restype = ctypes.c_int
        dll.CloseHandle.argtypes = [handle]
        self.OpenProcess = dll.OpenProcess
        self.WaitForSingleObject = dll.WaitForSingleObject
        self.GetProcessTimes = dll.GetProcessTimes
        self.CloseHandle = dll.CloseHandle
        self.last_error: Callable[[], int] = ctypes.get_last_error  # type: ignore[attr-defined,unused-ignore]


_KERNEL32: list[Optional[_Kernel32]] = []


def _kernel32() -> Optional[_Kernel32]:
    if not _KERNEL32:
        try:
            _KERNEL32.append(_Kernel32())
        except (AttributeError, OSError):  # not Windows
            _KERNEL32.append(None)
    return _KERNEL32[0]


# -- files -------------------------------------------------------------------------------
def pread(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset``. Windows has no ``pread``: seek, then read, so
    one descriptor must not be shared between readers (each response opens its own)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


CAN_SENDFILE = False  # the mirror falls back to aiohttp's own file sending


def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """Windows has no ``os.sendfile``: callers check ``CAN_SENDFILE`` first."""
    raise OSError(errno.ENOSYS, "os.sendfile does not exist on Windows")


CAN_FORK = False  # ``hubcache serve --workers N`` is refused here


def fork() -> int:
    """Windows has no ``fork``: callers check ``CAN_FORK`` first."""
    raise OSError(errno.ENOSYS, "fork() does not exist on Windows")


def ask_to_stop(pid: int) -> None:
    """No children are ever forked on Windows (``os.kill`` would terminate, not ask)."""


def wait_child() -> tuple[int, bool]:
    """No children are ever forked on Windows."""
    raise ChildProcessError(errno.ECHILD, "no child processes")


def flush_drive_cache(path: str) -> None:
    """Nothing to do: Windows' fsync (FlushFileBuffers) already flushed the drive's cache."""


# Windows refuses to rename or delete a file that another process holds open (a reader of a
# manifest or lock, an antivirus scanner looking at a fresh file): that passes in moments.
_BUSY_RETRIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # ~1.2 s in all


def retry_busy(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, a PermissionError retried for about a second first."""
    for delay in _BUSY_RETRIES:
        try:
            return call(*args, **kwargs)
        except PermissionError:
            time.sleep(delay)
    return call(*args, **kwargs)


def create_from(tmp: str, path: str) -> bool:
    """Give ``path`` the contents of ``tmp`` only if ``path`` is absent: a rename, which
    never replaces on Windows (atomic on one NTFS volume)."""
    try:
        retry_busy(_faults.fs.rename, tmp, path)
    except FileExistsError:
        return False
    return True


# -- the default root --------------------------------------------------------------------
def location_problem(path: str) -> Optional[str]:
    """Why a folder at ``path`` (existing or not) would not be private, or None.

    Windows gives no owner nor modes to read (st_uid is 0, the mode only a read-only
    bit). The per-user temp folder (%LOCALAPPDATA%\\Temp) is private by the ACL of the
    profile it lies in, so a folder inside the profile is trusted and one outside not.
    """
    profile = os.path.expanduser("~")
    if not inside(os.path.realpath(os.path.dirname(path)), os.path.realpath(profile)):
        return f"it is outside your user profile {profile}, so other users may write there"
    return None


def owner_problem(path: str, st: os.stat_result) -> Optional[str]:
    """No owner to read: where the folder lies decides (:func:`location_problem`)."""
    return location_problem(path)


def private_fallback(root: str) -> str:
    """Where to go when the shared default root is unsafe: on Windows a folder inside
    the user's profile, whose ACL keeps other users out."""
    return os.path.join(os.path.expanduser("~"), "AppData", "Local", "hubcache", "cache")


def raise_fd_limit() -> Optional[int]:
    """Windows has no per-process open-file limit to raise (see the POSIX definition)."""
    return None


#: No /proc here: the processor string names the vendor, or nothing does.
cpu_vendor = processor_vendor
