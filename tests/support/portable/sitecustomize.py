"""Run hubcache in a child process as if on macOS or Windows, with the POSIX-only calls gone.

A test puts this folder on ``PYTHONPATH`` and sets ``HUBCACHE_TEST_PLATFORM`` to ``win32``
or ``darwin``. Python imports this module at start-up, before the code under test:

* the names of :mod:`os` that typeshed marks absent on that platform are deleted (``win32``:
  ``geteuid``, ``getegid``, ``statvfs``, ``fstatvfs``, ``fdatasync``, ``sendfile``,
  ``O_NOFOLLOW``, ``O_CLOEXEC``, ``O_NOATIME``; ``darwin``: ``fdatasync``, ``O_NOATIME``), so
  any unguarded use fails with AttributeError instead of silently working;
* ``hubcache._platform`` is re-executed while ``sys.platform`` says ``win32`` / ``darwin``,
  so the façade chooses that platform's modules of ``hubcache.platforms`` (``sys.platform``
  is restored after; the rest of the process, the standard library included, runs as on
  Linux);
* on ``win32``, ``os.kill`` called from hubcache's code raises: a liveness check by signal
  would terminate the process there (psutil's own use of it on Linux is let through);
* on ``darwin`` with ``HUBCACHE_TEST_FULLFSYNC_LOG=PATH``, ``fcntl`` gets macOS's
  ``F_FULLFSYNC`` and each such call appends a line to PATH;
* ``HUBCACHE_TEST_NO_PSUTIL=1`` makes ``import psutil`` fail (a platform without its
  wheel) and ``/proc`` unreadable from hubcache, so only the last fallbacks remain.
"""

from __future__ import annotations

import builtins
import importlib
import os
import sys
from typing import Any

_PLATFORM = os.environ.get("HUBCACHE_TEST_PLATFORM", "")
_REMOVED = {
    "win32": (
        "geteuid", "getegid", "statvfs", "fstatvfs", "fdatasync", "sendfile",
        "O_NOFOLLOW", "O_CLOEXEC", "O_NOATIME",
    ),
    "darwin": ("fdatasync", "O_NOATIME"),
}  # fmt: skip


def _from_hubcache() -> bool:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", "")).startswith("hubcache")


def _install() -> None:
    real_open = builtins.open
    for name in _REMOVED[_PLATFORM]:
        if hasattr(os, name):
            delattr(os, name)
    if os.environ.get("HUBCACHE_TEST_NO_PSUTIL") == "1":
        sys.modules["psutil"] = None  # type: ignore[assignment]

        def no_proc_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if str(file).startswith("/proc/") and _from_hubcache():
                raise FileNotFoundError(2, "no /proc on this platform", str(file))
            return real_open(file, *args, **kwargs)

        builtins.open = no_proc_open
    if _PLATFORM == "win32":
        real_kill = os.kill

        def kill(pid: int, sig: int) -> None:
            if _from_hubcache():
                raise AssertionError(f"hubcache called os.kill({pid}, {sig}) on Windows")
            real_kill(pid, sig)

        os.kill = kill
    import hubcache._platform

    log = os.environ.get("HUBCACHE_TEST_FULLFSYNC_LOG")
    if _PLATFORM == "darwin" and log:  # record the drive flushes macOS would do
        import fcntl

        real_fcntl = fcntl.fcntl
        full = 51  # F_FULLFSYNC's value on macOS

        def fake_fcntl(fd: Any, op: int, *args: Any) -> Any:
            if op == full:
                os.fstat(fd)
                with real_open(log, "a") as f:
                    f.write("F_FULLFSYNC\n")
                return 0
            return real_fcntl(fd, op, *args)

        fcntl.F_FULLFSYNC = full  # type: ignore[attr-defined]
        fcntl.fcntl = fake_fcntl  # type: ignore[assignment]
    real_platform = sys.platform
    sys.platform = _PLATFORM  # only while _platform's definitions are chosen
    try:
        importlib.reload(hubcache._platform)  # the same module object every importer holds
    finally:
        sys.platform = real_platform


if _PLATFORM in _REMOVED:
    _install()
