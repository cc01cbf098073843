"""Fault points that only tests turn on: crash, stop or fail at a named step of a resolve.

The crash and fault-sweep tests need a real process to die or fail at an exact step (after
taking the lock, mid-download, just after the publishing rename...). They set
``HUBCACHE_TEST_FAULTS`` in the environment of a child process; this module reads it once,
at import, because the decision must be made before the first filesystem call and must cost
nothing afterwards. Unset (always, outside tests) the module does nothing:

* :func:`checkpoint` returns after one test of an empty dict;
* :data:`fs` *is* the :mod:`os` module, so ``fs.write(...)`` costs what ``os.write(...)``
  does. The few modules that create, write, sync, rename or remove cache files call
  ``fs.X`` instead of ``os.X`` so the sweep can fail any one of those calls.

Grammar: comma-separated ``name=value`` items.

``<point>=kill|stop|term|int|raise|sleep:SECONDS``
    at :func:`checkpoint(point) <checkpoint>` (first time only): SIGKILL / SIGSTOP / SIGTERM /
    SIGINT ourselves, raise ``OSError(EIO)``, or sleep.
``fs=<op>#<k>[/<ERRNO>]``
    the k-th call of ``op`` (``*``: any of ``open write close fsync rename replace mkdir
    unlink link``) raises ``OSError(ERRNO)`` (default EIO); every other call goes through.
``fs-log=PATH``
    append one line ``op path`` per filesystem call to PATH (the sweep's clean run counts
    them; the fsync test checks their order).
``no-lock=1``
    the download lock succeeds without locking (a filesystem where locks are no-ops).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from typing import Any

_SPEC: dict[str, str] = dict(
    item.split("=", 1)
    for item in os.environ.get("HUBCACHE_TEST_FAULTS", "").split(",")
    if "=" in item
)
_FIRED: set[str] = set()

NO_LOCK = _SPEC.get("no-lock") == "1"

_SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "term": signal.SIGTERM,
            "int": signal.SIGINT}  # fmt: skip


def checkpoint(point: str) -> None:
    """Do what the test asked for at ``point``, once; nothing when no fault is set."""
    if not _SPEC:
        return
    action = _SPEC.get(point)
    if action is None or point in _FIRED:
        return
    _FIRED.add(point)
    if action in _SIGNALS:
        os.kill(os.getpid(), _SIGNALS[action])
    elif action == "raise":
        raise OSError(errno.EIO, f"injected fault at {point}")
    elif action.startswith("sleep:"):
        time.sleep(float(action[6:]))


class _FaultyOS:
    """The subset of :mod:`os` that writes the cache, counting and failing calls on demand."""

    OPS = ("open", "write", "close", "fsync", "rename", "replace", "mkdir", "unlink", "link")

    def __init__(self, target: str, log_path: str) -> None:
        op, _, rest = target.partition("#")
        count, _, name = rest.partition("/")
        self._op = op
        self._k = int(count) if count else 0
        self._errno = getattr(errno, name, errno.EIO) if name else errno.EIO
        self._calls = 0
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        self._fds: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.OPS:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            what = self._describe(name, args)
            with self._lock:
                if self._op in ("*", name):
                    self._calls += 1
                    hit = self._calls == self._k
                else:
                    hit = False
                if self._log is not None:
                    self._log.write(f"{name} {what}\n")
            if hit:
                raise OSError(self._errno, f"injected fault: {name} {what}")
            result = real(*args, **kwargs)
            if name == "open":
                self._fds[result] = what
            return result

        return call

    def _describe(self, name: str, args: tuple[Any, ...]) -> str:
        if name in ("write", "close", "fsync"):
            fd = args[0]
            return self._fds.pop(fd, str(fd)) if name == "close" else self._fds.get(fd, str(fd))
        return " ".join(os.fspath(a) for a in args[:2] if isinstance(a, (str, os.PathLike)))


fs: Any = (
    _FaultyOS(_SPEC.get("fs", ""), _SPEC.get("fs-log", ""))
    if "fs" in _SPEC or "fs-log" in _SPEC
    else os
)
