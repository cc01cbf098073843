"""Linux: a process's start time read from ``/proc``; the rest is :mod:`.posix`'s.

The façade ``hubcache._platform`` takes the process clock and the drive flush from here.
The ``t`` tokens are clock ticks since boot, the format every lock written on Linux carries.
"""

from __future__ import annotations

from typing import Optional

from .common import StartClock


def _proc_ticks(pid: int) -> Optional[int]:
    """The start time of ``pid`` in clock ticks since boot, from /proc."""
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


#: Exact: both readings come from the same kernel counter.
CLOCKS = (StartClock("t", _proc_ticks, 0),)


def flush_drive_cache(path: str) -> None:
    """Nothing to do: Linux's fsync already flushed the drive's cache."""


def cpu_vendor() -> str:
    """The CPU's vendor (``vendor_id`` in ``/proc/cpuinfo``), "" when it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return ""
    for line in head.splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()
    return ""
