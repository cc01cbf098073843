"""macOS: ``F_FULLFSYNC`` to flush the drive's cache; start times from psutil.

The façade ``hubcache._platform`` takes the process clock and the drive flush from here, and
the rest from :mod:`.posix`.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from .common import PSUTIL_CLOCK, READ, processor_vendor

# mypy's idiom for a module of one platform family: fcntl has no functions on win32, so the
# rest is not checked there; never imported on Windows.
assert sys.platform != "win32"  # noqa: S101

#: macOS has no /proc: psutil tells when a process started, or no one does.
CLOCKS = (PSUTIL_CLOCK,)


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


#: No /proc here: the processor string names the vendor, or nothing does.
cpu_vendor = processor_vendor
