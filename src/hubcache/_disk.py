"""What the disk said: a failed write, sync or rename as a CacheDirError that says why.

Every layer that writes into a cache (the safe writer, publishing, locks) reports a full
disk or a permission problem the same way: the filesystem, its free bytes, how much was
written and how much more is needed, and what to do. It sits at the bottom of the package
(beside ``_platform``) so each of them can use it without importing another's internals.

Layer: core (docs/architecture.md), beside ``_platform``; it stands on ``_errors`` alone.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Optional

from ._errors import CacheDirError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def disk_error(
    exc: OSError,
    where: str,
    written: Optional[int],
    needed: Optional[int],
    *,
    handle: Optional[str] = None,
) -> CacheDirError:
    """Turn ENOSPC/EDQUOT/EFBIG and permission errors into a CacheDirError that says why.
    ``written`` is None when the step that failed does not count bytes (publishing)."""
    what = f"cannot store {handle}: " if handle else ""
    if exc.errno in _DISK_FULL:
        need = f", at least {needed} more bytes needed" if needed else ""
        after = f" after writing {written} bytes" if written is not None else ""
        mount, free = _filesystem(where)
        if exc.errno == errno.EFBIG:  # not a full disk: "no space left (70 GB free)" misled
            text = (
                f"{what}{where} reached the largest file this process may write on the "
                f"filesystem mounted at {mount} (File too large: a `ulimit -f` limit, or a "
                f"filesystem such as FAT32 that caps files at 4 GiB){after}{need}; raise the "
                "limit or set TFHUB_CACHE_DIR to another filesystem"
            )
        else:
            text = (
                f"{what}no space left on the filesystem mounted at {mount} ({free} bytes free) "
                f"for {where} ({os.strerror(exc.errno or 0)}){after}{need}; "
                "free space or set TFHUB_CACHE_DIR to a larger disk"
            )
        return CacheDirError(
            text,
            handle=handle,
            errno=exc.errno,
            filesystem=mount,
            written=written,
            needed=needed,
        )
    return CacheDirError(f"{what}cannot write in {where}: {exc}", handle=handle, errno=exc.errno)


def _filesystem(path: str) -> tuple[str, str]:
    """The mount point holding ``path`` and its free bytes (for users, best effort)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        device = os.stat(path).st_dev
        while os.path.dirname(path) != path and os.stat(os.path.dirname(path)).st_dev == device:
            path = os.path.dirname(path)
        return path, str(shutil.disk_usage(path).free)  # statvfs's f_bavail * f_frsize
    except OSError:
        return path, "unknown"
