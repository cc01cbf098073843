"""What every operating system shares, for the per-OS modules beside this one.

The façade ``hubcache._platform`` is what the rest of hubcache imports; it chooses one module
here per OS. This one holds what needs no choice: open flags read from :mod:`os` (0 where the
OS lacks one), the format of a process start token, psutil loaded once, the folder and name
checks that are the same everywhere, and the calls that already adapt at run time.

Nothing here tests ``sys.platform``. A test that loads the macOS or Windows definitions on
Linux shares this module with the real ones, so a decision made here would be Linux's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional

from .. import _faults

# -- open flags --------------------------------------------------------------------------
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: no newline translation, no Ctrl-Z EOF
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)  # Windows: descriptors are not inherited anyway
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)  # Windows: O_EXCL alone refuses a link there
O_NOATIME: int = getattr(os, "O_NOATIME", 0)  # Linux only: reading must not look like use
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO returns at once (none on Windows)
READ = os.O_RDONLY | O_BINARY | O_CLOEXEC
CREATE_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY | O_CLOEXEC
CREATE_NEW_FILE = CREATE_EXCLUSIVE | O_NOFOLLOW  # a member file: never follow, never overwrite
WRITE_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_BINARY | O_CLOEXEC


# -- when a process started --------------------------------------------------------------
class StartClock(NamedTuple):
    """One way to tell when a process started: the letter its tokens carry, how to read the
    time of a PID (None: cannot tell), and how far two readings of one process may differ."""

    letter: str
    read: Callable[[int], Optional[int]]
    tolerance: int = 0


def start_token(pid: int, clocks: Sequence[StartClock]) -> Optional[str]:
    """``<letter><hex>`` from the first of ``clocks`` that can tell; None when none can."""
    for clock in clocks:
        value = clock.read(pid)
        if value is not None:
            return f"{clock.letter}{value:x}"
    return None


def same_start(pid: int, token: str, clocks: Sequence[StartClock]) -> Optional[bool]:
    """Whether ``pid`` still started when ``token`` says, read by the clock that wrote it;
    None when that clock is not among ``clocks`` or cannot read ``pid``."""
    letter, digits = token[:1], token[1:]
    clock = next((c for c in clocks if c.letter == letter), None)
    if clock is None:
        return None
    try:
        expected = int(digits, 16)
    except ValueError:
        return None
    now = clock.read(pid)
    if now is None:
        return None
    return abs(now - expected) <= clock.tolerance


_PSUTIL: list[Any] = []  # [module or None], filled on first use


def psutil() -> Any:
    """psutil when installed (``hubcache[psutil]``), else None; imported once, lazily."""
    if not _PSUTIL:
        try:
            import psutil
        except ImportError:  # no wheel for this platform, or not installed: the fallbacks
            _PSUTIL.append(None)
        else:
            _PSUTIL.append(psutil)
    return _PSUTIL[0]


def _psutil_ms(pid: int) -> Optional[int]:
    module = psutil()
    if module is None:
        return None
    try:
        return int(module.Process(pid).create_time() * 1000)
    except (OSError, ValueError, module.Error):
        return None


#: psutil's create time in ms (macOS, BSDs, Windows). It derives it from a float: readings
#: are allowed to differ by a second, for rounding across psutil's versions.
PSUTIL_CLOCK = StartClock("p", _psutil_ms, 1000)


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
def writeback(fd: int) -> None:
    """Push a file's data towards the disk early (a hint: the final fsync is what counts)."""
    if hasattr(os, "fdatasync"):  # Linux; macOS and Windows have only fsync
        _faults.fs.fdatasync(fd)
    else:
        _faults.fs.fsync(fd)


def make_blocking(fd: int) -> None:
    """Undo ``O_NONBLOCK`` on a descriptor opened with it (nothing to undo on Windows)."""
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)


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


# -- the default root --------------------------------------------------------------------
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT: symlinks and junctions on Windows


def folder_problem(st: os.stat_result) -> Optional[str]:
    """Why what ``st`` (from lstat) describes is not a plain folder, or None. Checked on
    every OS: a link or a Windows junction would send our writes elsewhere."""
    if stat.S_ISLNK(st.st_mode) or getattr(st, "st_file_attributes", 0) & _REPARSE_POINT:
        return "it is a symbolic link or junction"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    return None


def inside(path: str, folder: str, pathmod: Any = os.path) -> bool:
    """Whether ``path`` is ``folder`` or below it (case-insensitively where names are)."""
    path, folder = pathmod.normcase(path), pathmod.normcase(folder)
    try:
        return bool(pathmod.commonpath([path, folder]) == folder)
    except ValueError:  # different drives
        return False


# -- names -------------------------------------------------------------------------------
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
_WINDOWS_DEVICES |= {f"{d}{n}" for d in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
_WINDOWS_BAD = set('<>:"|?*\\') | {chr(c) for c in range(32)}


def windows_name_problem(part: str) -> Optional[str]:
    """Why Windows cannot hold the path component ``part``, or None.

    There ``C:x`` names a drive, ``\\`` is a separator (``\\\\server\\share`` would leave the
    folder), ``a:b`` an alternate data stream, ``NUL`` or ``COM1.txt`` a device, and a
    trailing dot or space is dropped.
    """
    bad = sorted(set(part) & _WINDOWS_BAD)
    if bad:
        return f"contains {bad[0]!r}, which Windows does not allow in file names"
    if part.endswith((".", " ")):
        return "ends with a dot or a space, which Windows drops"
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "is a device name on Windows"
    return None


def processor_vendor() -> str:
    """The CPU's vendor as the processor string names it (Windows: "AMD64 Family 25 ...,
    AuthenticAMD"), "" when it does not (macOS, most Unixes)."""
    import platform  # not at the top: 1.5 ms, and Linux does not need it

    return next((v for v in ("AuthenticAMD", "GenuineIntel") if v in platform.processor()), "")
