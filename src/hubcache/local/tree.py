"""One walk over a folder: its bytes, its files and its newest change.

The lock (how far a holder has got), gc (whether debris is still moving) and ``ls`` (an
entry's size) all ask these questions of a tree; they share this walk so the three answers
agree (regular files only, symlinks not followed, files vanishing mid-walk skipped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat


@dataclasses.dataclass(frozen=True)
class TreeStats:
    size: int  # bytes in regular files
    files: int  # regular files
    newest: float  # latest mtime of the folder itself or of anything below it (0: absent)


def tree_stats(path: str) -> TreeStats:
    """Walk ``path`` (a folder or a single file); an absent path gives zeros."""
    try:
        top = os.lstat(path)
    except OSError:
        return TreeStats(0, 0, 0.0)
    if not stat.S_ISDIR(top.st_mode):
        regular = stat.S_ISREG(top.st_mode)
        return TreeStats(top.st_size if regular else 0, int(regular), top.st_mtime)
    size = files = 0
    newest = top.st_mtime
    for dirpath, dirs, names in os.walk(path):
        for name in dirs + names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                newest = max(newest, st.st_mtime)
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
                    files += 1
    return TreeStats(size, files, newest)
