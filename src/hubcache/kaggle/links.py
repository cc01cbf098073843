"""Fill one folder from another without doubling disk use: hard links, copies as a fallback.

Used to fill a second cache entry (another spelling of the same Kaggle model, a tfhub.dev
handle that redirects to it) and kagglehub's cache from a finished tree. A hard link shares
the file's inode, so both names show the same bytes; where links are impossible (another
filesystem, a filesystem without them) the file is copied.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import Any

# Windows reports a filesystem without links (FAT, some shares) as EINVAL.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES, errno.EINVAL}
_NO_LINK |= {errno.ENOSYS, errno.EOPNOTSUPP}


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
