"""Fault injection for hubcache's child processes in the test suite (never shipped).

A test puts this folder on ``PYTHONPATH`` and sets ``HUBCACHE_TEST_FAULTS``
(``tests/support/procs.child_env`` does both); Python imports this module at start-up, and
it replaces the hook points of ``hubcache._faults`` before the code under test runs.

Grammar: comma-separated ``name=value`` items.

``<point>=kill|stop|term|int|raise|sleep:SECONDS``
    at ``checkpoint(point)`` (first time only): SIGKILL / SIGSTOP / SIGTERM / SIGINT
    ourselves, raise ``OSError(EIO)``, or sleep.
``fs=<op>#<k>[/<ERRNO>]``
    the k-th call of ``op`` (``*``: any of :data:`FaultyOS.OPS`) raises ``OSError(ERRNO)``
    (default EIO); every other call goes through.
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
_SIGNALS = {"kill": "SIGKILL", "stop": "SIGSTOP", "term": "SIGTERM", "int": "SIGINT"}


class Checkpoints:
    def __init__(self, spec: dict[str, str]) -> None:
        self._spec = spec
        self._fired: set[str] = set()

    def __call__(self, point: str) -> None:
        action = self._spec.get(point)
        if action is None or point in self._fired:
            return
        self._fired.add(point)
        if action in _SIGNALS:
            os.kill(os.getpid(), getattr(signal, _SIGNALS[action]))
        elif action == "raise":
            raise OSError(errno.EIO, f"injected fault at {point}")
        elif action.startswith("sleep:"):
            time.sleep(float(action[6:]))


class FaultyOS:
    """The subset of :mod:`os` that writes a cache, counting and failing calls on demand."""

    OPS = (
        "open", "write", "close", "fsync", "fdatasync", "rename", "replace", "mkdir",
        "makedirs", "unlink", "link", "utime",
    )  # fmt: skip

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
        if name in ("write", "close", "fsync", "fdatasync"):
            fd = args[0]
            return self._fds.pop(fd, str(fd)) if name == "close" else self._fds.get(fd, str(fd))
        return " ".join(os.fspath(a) for a in args[:2] if isinstance(a, (str, os.PathLike)))


def _install() -> None:
    from hubcache import _faults

    _faults.checkpoint = Checkpoints(_SPEC)  # type: ignore[assignment]
    if "fs" in _SPEC or "fs-log" in _SPEC:
        _faults.fs = FaultyOS(_SPEC.get("fs", ""), _SPEC.get("fs-log", ""))
    if _SPEC.get("no-lock") == "1":
        _faults.locking = False


if _SPEC:
    _install()
