"""Everything that differs between Linux, macOS and Windows, behind one portable contract.

The rest of hubcache never tests ``sys.platform`` nor touches a POSIX-only name of :mod:`os`;
it asks this module. Each function says what it promises on every platform, and what it
returns when a platform cannot tell (``None``: the caller then takes the cautious path).
``docs/platforms.md`` says what each guarantee means per platform.

Processes (who holds a lock):

* :func:`pid_alive`: Linux, macOS and other POSIX systems send signal 0, as before. On Windows
  that would be fatal (``os.kill`` with any other value than the two console events
  *terminates* the process), so it asks psutil when installed (``hubcache[psutil]``), else
  the Win32 API through ctypes; ``None`` when neither answers.
* :func:`start_token` / :func:`same_start`: when a process started, as ``<method><hex>`` so
  a reused PID is told apart. ``t``: clock ticks since boot from ``/proc`` (Linux, unchanged);
  ``p``: psutil's create time in ms (macOS, BSDs, Windows); ``w``: the Win32 creation
  FILETIME (Windows without psutil). A token is only compared by the method that wrote it;
  a method unavailable here answers ``None`` ("cannot tell"), never "reused".

Files: open flags (``O_BINARY`` on Windows, where ``os.open`` is otherwise a *text* mode that
rewrites newlines), syncing (``fdatasync`` or ``fsync``; directories cannot be synced on
Windows; macOS flushes the drive's cache only with ``F_FULLFSYNC``), renames that Windows
refuses while another process has the file open (retried briefly), a create-if-absent that
works without hard links, the default root's privacy check, read-only detection, and the
member names Windows cannot hold or would misread as drives, devices or separators.

Only :mod:`os`, :mod:`sys`, :mod:`stat`, :mod:`errno` and :mod:`time` are imported here;
psutil, ctypes and fcntl are imported on first use, so ``import hubcache`` stays cheap.
Calls that write the cache go through ``_faults.fs`` like every other such call, so the
fault-injection tests reach them.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from . import _faults

T = TypeVar("T")

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

# -- open flags --------------------------------------------------------------------------
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: no newline translation, no Ctrl-Z EOF
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)  # Windows: descriptors are not inherited anyway
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)  # Windows: O_EXCL alone refuses a link there
O_NOATIME: int = getattr(os, "O_NOATIME", 0)  # Linux only: reading must not look like use
READ = os.O_RDONLY | O_BINARY | O_CLOEXEC
CREATE_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY | O_CLOEXEC
CREATE_NEW_FILE = CREATE_EXCLUSIVE | O_NOFOLLOW  # a member file: never follow, never overwrite
WRITE_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_BINARY | O_CLOEXEC
# Windows' fsync (FlushFileBuffers) needs a handle open for writing; POSIX syncs a read-only one.
SYNC_FILE = (os.O_WRONLY | O_BINARY) if WINDOWS else READ
#: Whether a directory can be opened and fsynced (its new names made durable). Not on Windows,
#: where NTFS journals names itself and a directory cannot be opened as a file.
SYNC_DIRS = not WINDOWS


# -- processes ---------------------------------------------------------------------------
# Each platform-dependent function is defined once per platform, chosen at import by
# ``sys.platform`` tests that mypy understands: ``mypy --platform win32`` then checks that
# the Windows definitions use nothing POSIX-only, and the reverse.
if sys.platform == "win32":

    def pid_alive(pid: int) -> Optional[bool]:
        """Whether process ``pid`` exists on this host; None when this platform cannot tell.
        Never a signal: on Windows ``os.kill(pid, 0)`` would terminate the process."""
        psutil = _psutil()
        if psutil is not None:
            try:
                return bool(psutil.pid_exists(pid))
            except (OSError, psutil.Error):
                return None
        return _win32_process(pid)[0]

else:

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


def start_token(pid: int) -> Optional[str]:
    """When ``pid`` started, as ``<method letter><hex>``; None when no method here knows."""
    for letter in _PREFERRED:
        value = _START_METHODS[letter](pid)
        if value is not None:
            return f"{letter}{value:x}"
    return None


def same_start(pid: int, token: str) -> Optional[bool]:
    """Whether ``pid`` is still the process that wrote ``token`` (False: the PID was reused);
    None when the token's method is not available here or ``pid`` cannot be inspected."""
    letter, digits = token[:1], token[1:]
    if letter not in _PREFERRED:
        return None
    try:
        expected = int(digits, 16)
    except ValueError:
        return None
    now = _START_METHODS[letter](pid)
    if now is None:
        return None
    return abs(now - expected) <= _TOLERANCE[letter]


def _proc_ticks(pid: int) -> Optional[int]:
    """Linux: the start time of ``pid`` in clock ticks since boot, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _psutil_ms(pid: int) -> Optional[int]:
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except (OSError, ValueError, psutil.Error):
        return None


def _win32_start(pid: int) -> Optional[int]:
    return _win32_process(pid)[1]


_START_METHODS: dict[str, Callable[[int], Optional[int]]] = {
    "t": _proc_ticks,
    "p": _psutil_ms,
    "w": _win32_start,
}
# psutil derives its create time from a float; allow for rounding across its versions.
_TOLERANCE = {"t": 0, "p": 1000, "w": 0}
_PREFERRED = {"linux": "t", "windows": "pw"}.get(SYSTEM, "p")

_PSUTIL: list[Any] = []  # [module or None], filled on first use


def _psutil() -> Any:
    """psutil when installed (``hubcache[psutil]``), else None; imported once, lazily."""
    if not _PSUTIL:
        try:
            import psutil
        except ImportError:  # no wheel for this platform, or not installed: the fallbacks
            _PSUTIL.append(None)
        else:
            _PSUTIL.append(psutil)
    return _PSUTIL[0]


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


def on_termination(loop: Any, callback: Callable[[], None]) -> None:
    """Run ``callback`` in the asyncio ``loop`` on SIGTERM or SIGINT. Unix loops take signal
    handlers themselves; Windows' loop has no ``add_signal_handler``, so a plain handler
    hands the call over to the loop (Windows delivers SIGINT, Ctrl-C, and SIGTERM only
    from within the process)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, callback)
        except NotImplementedError:
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(callback))


def user_id() -> str:
    """A short name for this user, for per-user folders in a shared temp area: the uid on
    POSIX; on Windows (no uid) the profile folder's name, the temp folder being per-user."""
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        return str(getuid())
    return os.path.basename(os.path.expanduser("~")) or "user"


# -- files -------------------------------------------------------------------------------
if sys.platform == "win32":

    def pread(fd: int, size: int, offset: int) -> bytes:
        """Read ``size`` bytes at ``offset``. Windows has no ``pread``: seek, then read, so
        one descriptor must not be shared between readers (each response opens its own)."""
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)

else:

    def pread(fd: int, size: int, offset: int) -> bytes:
        """Read ``size`` bytes at ``offset`` without moving the descriptor's position."""
        return os.pread(fd, size, offset)


def writeback(fd: int) -> None:
    """Push a file's data towards the disk early (a hint: the final fsync is what counts)."""
    if hasattr(os, "fdatasync"):  # Linux; macOS and Windows have only fsync
        _faults.fs.fdatasync(fd)
    else:
        _faults.fs.fsync(fd)


if sys.platform == "darwin":

    def flush_drive_cache(path: str) -> None:
        """Make everything synced so far durable, not just handed to the drive.

        Linux's and Windows' fsync already flush the drive's write cache; macOS's does not,
        and ``F_FULLFSYNC`` (once per publish: it flushes the whole drive) does. Best effort:
        a filesystem that refuses it (SMB, FAT) got its plain fsync already.
        """
        import fcntl

        full: Optional[int] = getattr(fcntl, "F_FULLFSYNC", None)  # 51 on macOS
        if full is None:
            return
        try:
            fd = os.open(path, READ)
        except OSError:
            return
        try:
            fcntl.fcntl(fd, full)
        except OSError:
            pass
        finally:
            os.close(fd)

else:

    def flush_drive_cache(path: str) -> None:
        """Nothing to do: fsync on Linux and Windows already flushed the drive's cache."""


# Windows refuses to rename or delete a file that another process holds open (a reader of a
# manifest or lock, an antivirus scanner looking at a fresh file): that passes in moments.
_BUSY_RETRIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # ~1.2 s in all


def retry_busy(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``; on Windows a PermissionError is retried for about a second
    first. Elsewhere a PermissionError is a real permission problem and is raised at once."""
    if not WINDOWS:
        return call(*args, **kwargs)
    for delay in _BUSY_RETRIES:
        try:
            return call(*args, **kwargs)
        except PermissionError:
            time.sleep(delay)
    return call(*args, **kwargs)


def create_from(tmp: str, path: str) -> bool:
    """Give ``path`` the contents of the finished file ``tmp`` only if ``path`` is absent.

    True when ours is the file at ``path``; False when one was already there. Either way
    ``tmp`` may still exist afterwards (the caller removes it). Atomic where the filesystem
    offers it: a hard link (POSIX) or a rename, which never replaces on Windows. Without
    links (FAT, some network shares on POSIX) the copy is exclusive but not atomic: a reader
    may see it half-written for a moment.
    """
    fs = _faults.fs
    if WINDOWS:
        try:
            retry_busy(fs.rename, tmp, path)
        except FileExistsError:
            return False
        return True
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


# -- the default root --------------------------------------------------------------------
def private_folder_problem(path: str, st: os.stat_result) -> Optional[str]:
    """Why the existing folder ``path`` (``st`` from lstat) in a shared temp area could be
    controlled by another user, or None."""
    if stat.S_ISLNK(st.st_mode) or getattr(st, "st_file_attributes", 0) & _REPARSE_POINT:
        return "it is a symbolic link or junction"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    return _owner_problem(path, st)


_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT: symlinks and junctions on Windows

if sys.platform == "win32":

    def _owner_problem(path: str, st: os.stat_result) -> Optional[str]:
        return location_problem(path)

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

    def private_fallback(root: str) -> str:
        """Where to go when the shared default root is unsafe: on Windows a folder inside
        the user's profile, whose ACL keeps other users out."""
        return os.path.join(os.path.expanduser("~"), "AppData", "Local", "hubcache", "cache")

else:

    def location_problem(path: str) -> Optional[str]:
        """None: on POSIX a folder not made yet is created private (0700) by us."""
        return None

    def _owner_problem(path: str, st: os.stat_result) -> Optional[str]:
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


def inside(path: str, folder: str, pathmod: Any = os.path) -> bool:
    """Whether ``path`` is ``folder`` or below it (case-insensitively where names are)."""
    path, folder = pathmod.normcase(path), pathmod.normcase(folder)
    try:
        return bool(pathmod.commonpath([path, folder]) == folder)
    except ValueError:  # different drives
        return False


def read_only_fs(path: str) -> Optional[bool]:
    """Whether ``path`` is on a filesystem mounted read-only; None when unknown (Windows)."""
    statvfs = getattr(os, "statvfs", None)
    flag = getattr(os, "ST_RDONLY", None)
    if statvfs is None or flag is None:
        return None
    try:
        return bool(statvfs(path).f_flag & flag)
    except OSError:
        return None


# -- names -------------------------------------------------------------------------------
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
_WINDOWS_DEVICES |= {f"{d}{n}" for d in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
_WINDOWS_BAD = set('<>:"|?*\\') | {chr(c) for c in range(32)}


def name_problem(part: str, windows: bool = WINDOWS) -> Optional[str]:
    """Why one path component cannot be written safely here, or None.

    Only Windows restricts names beyond ``/`` and NUL: there ``C:x`` names a drive, ``\\`` is
    a separator (``\\\\server\\share`` would leave the folder), ``a:b`` an alternate data
    stream, ``NUL`` or ``COM1.txt`` a device, and a trailing dot or space is dropped.
    """
    if not windows:
        return None
    bad = sorted(set(part) & _WINDOWS_BAD)
    if bad:
        return f"contains {bad[0]!r}, which Windows does not allow in file names"
    if part.endswith((".", " ")):
        return "ends with a dot or a space, which Windows drops"
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "is a device name on Windows"
    return None


# The mirror sends stored archives with os.sendfile from worker threads (serve/app.py);
# Windows has no os.sendfile, and there aiohttp's own file sending is used instead.
if sys.platform == "win32":
    CAN_SENDFILE = False

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        raise OSError(errno.ENOSYS, "os.sendfile does not exist on Windows")

else:
    CAN_SENDFILE = hasattr(os, "sendfile")

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        return os.sendfile(out_fd, in_fd, offset, count)
