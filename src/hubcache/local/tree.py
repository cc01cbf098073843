"""One walk over a folder: its bytes, its files and its newest change.

The lock (how far a holder has got), gc (whether debris is still moving) and ``ls`` (an
entry's size) all ask these questions of a tree; they share this walk so the three answers
agree (regular files only, symlinks not followed, files vanishing mid-walk skipped).

:func:`link_tree` fills one folder from another without doubling disk use: hard links,
copies where the filesystem cannot link (another device, no link support). It fills
kagglehub's cache from a published entry (a cache entry's own linked copy goes through the
safe writer instead: ``archive.safetree.SafeTree.add_link``). A hard link shares the file's
inode, so both names show the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from typing import Any, NamedTuple

from ..archive.safetree import NO_LINK as _NO_LINK


class TreeStats(NamedTuple):  # not a dataclass: cheaper to import on every miss
    size: int  # bytes in regular files
    files: int  # regular files
    newest: float  # latest mtime of the folder itself or of anything below it (0: absent)
    # regular files with other hard links: ("device:inode", size), so that disk accounting
    # counts a file that several entries share once (``manage.prune.disk_usage``)
    links: tuple[tuple[str, int], ...] = ()


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
    links = []
    for dirpath, dirs, names in os.walk(path):
        for name in dirs + names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                newest = max(newest, st.st_mtime)
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
                    files += 1
                    if st.st_nlink > 1:
                        links.append((f"{st.st_dev}:{st.st_ino}", st.st_size))
    return TreeStats(size, files, newest, tuple(links))


def link_tree(source: str, target: str) -> dict[str, list[Any]]:
    """Recreate ``source`` (regular files and folders only) at ``target``, which must not
    exist; returns {relative path: [size, ""]} of the files made."""
    files: dict[str, list[Any]] = {}
    os.mkdir(target, 0o755)
    for dirpath, dirnames, names in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        out = target if rel == "." else os.path.join(target, rel)
        for name in dirnames:
            os.mkdir(os.path.join(out, name), 0o755)
        for name in names:
            src = os.path.join(dirpath, name)
            st = os.lstat(src)
            if not stat.S_ISREG(st.st_mode):
                continue  # links and devices are never part of a model tree we publish
            dst = os.path.join(out, name)
            try:
                os.link(src, dst)
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                shutil.copyfile(src, dst)
            key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
            files[key] = [st.st_size, ""]
    return files
