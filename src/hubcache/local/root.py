"""The cache root on disk: created on first write (removed again when nothing was written),
checked for safety, tagged with its first entry.

The default root ``<tmp>/tfhub_modules`` is shared by every user of the machine, so another
user could plant a symlink or a pre-filled folder there (docs/architecture.md, "Default root
safety"). We use it only when it is a real directory owned by us and not writable by
others; otherwise one warning names the reason and ``<tmp>/tfhub_modules-<uid>`` is used.
Windows has no owners or modes to check: there the folder must lie inside the user's
profile, which its ACL keeps private (``_platform.private_folder_problem``).
A root the user named explicitly is trusted as given (it may be a shared group folder).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import Optional

from .. import _faults, _platform
from .._config import Config
from .._errors import CacheDirError

log = logging.getLogger(__name__)

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by hubcache (tensorflow_hub-compatible).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
_WARNED: set[tuple[str, str]] = set()


def is_remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def local_root(root: str) -> str:
    return root[len("file://") :] if root.startswith("file://") else root


def unsafe_reason(path: str) -> Optional[str]:
    """Why a shared-temp folder may not be used, or None (on POSIX also when it is absent)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _platform.location_problem(path)  # Windows: outside the profile is shared
    return _platform.private_folder_problem(path, st)


def choose_root(config: Config) -> str:
    """The root this call reads from, with the default-root check applied. No writes."""
    root = local_root(config.root)
    if not config.root_is_default:
        return root
    reason = unsafe_reason(root)
    if reason is None:
        return root
    fallback = _platform.private_fallback(root)
    if (root, reason) not in _WARNED:
        _WARNED.add((root, reason))
        log.warning(
            "not using the shared cache folder %s because %s; using %s instead. Set "
            "TFHUB_CACHE_DIR to a folder of your own to silence this",
            root,
            reason,
            fallback,
        )
    second = unsafe_reason(fallback)
    if second is not None:
        raise CacheDirError(
            f"neither {root} nor {fallback} can be used safely ({reason}; {second}); set "
            "TFHUB_CACHE_DIR to a folder of your own"
        )
    return fallback


def ensure_root(root: str, *, private: bool) -> list[str]:
    """Create the root (0700 when it is the shared-temp default) just before the first thing
    is written into it (a lock); return the folders made here, deepest first, so a call that
    ends writing nothing removes them again (:func:`remove_made`). The CACHEDIR.TAG is not
    written here but with the first entry (:func:`tag_root`): a failed resolve leaves a root
    as it found it, or no root at all."""
    missing = _missing_folders(root)
    try:
        if private:
            if _platform.WINDOWS:  # its fallback lies in a folder of the profile's own
                _faults.fs.makedirs(os.path.dirname(root), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                _faults.fs.mkdir(root, 0o700)
            reason = unsafe_reason(root)
            if reason is not None:  # lost a race with another user creating it
                raise CacheDirError(f"cannot use {root}: {reason}")
        else:
            _faults.fs.makedirs(root, exist_ok=True)
    except PermissionError as exc:
        raise CacheDirError(
            f"cannot create the cache folder {root}: permission denied; set "
            "TFHUB_CACHE_DIR to a writable folder",
            errno=exc.errno,
        ) from exc
    except OSError as exc:
        if isinstance(exc, CacheDirError):
            raise
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # a file (or a broken link) in the way
            raise not_a_folder(root, under_a_file=exc.errno == errno.ENOTDIR) from exc
        raise CacheDirError(f"cannot create the cache folder {root}: {exc}") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        # A read-only cache (a mounted volume, a container image) still serves complete
        # entries through the fast path; a miss must fail now, not after waiting on a lock
        # file it can never create.
        raise CacheDirError(
            f"the cache folder {root} is read-only for this process: cached models are "
            "served from it, but this one is missing and cannot be downloaded there; fill "
            "the cache where it is writable, or set TFHUB_CACHE_DIR to a writable folder",
            errno=errno.EROFS if _platform.read_only_fs(root) else errno.EACCES,
        )
    return missing


def _missing_folders(root: str) -> list[str]:
    """``root`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(root)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_made(made: list[str]) -> None:
    """Remove the folders :func:`ensure_root` made, deepest first, while they are empty. A
    folder holding anything (an entry, another process's lock or staging) stays, and so do
    its parents; that process re-creates a root removed under it (``local.lock``)."""
    for path in made:
        try:
            _faults.fs.rmdir(path)
        except OSError:
            return


def tag_root(root: str, *, fsync: bool) -> None:
    """Write CACHEDIR.TAG if the root has none, before an entry is published into it, and
    make it and the root's own name durable (the publish's sync of the root then covers the
    tag's name). Best effort: the tag only tells backup tools to skip the folder."""
    tag = os.path.join(root, "CACHEDIR.TAG")
    if os.path.exists(tag):
        return
    try:
        write_atomic(tag, CACHEDIR_TAG, fsync=fsync)
    except OSError as exc:
        log.warning("could not write %s: %s", tag, exc)
        return
    if fsync:
        with contextlib.suppress(OSError):  # a parent we may not read (mode 0711) stays as is
            fsync_dir(os.path.dirname(os.path.abspath(root)))


def not_a_folder(root: str, *, under_a_file: bool = False) -> CacheDirError:
    """The one error for a root that is a file, a broken link, or under a file (a typo in
    --cache-dir): the OS's own words ("File exists") read as if the cache were fine."""
    what = "has a file where a folder of its path should be" if under_a_file else "is not a folder"
    return CacheDirError(
        f"the cache root {root} {what}; point --cache-dir or TFHUB_CACHE_DIR at a folder "
        "(it is created when missing)"
    )


def write_atomic(path: str, text: str, *, fsync: bool = True, suffix: str = "") -> None:
    """Write a small file so readers see the old or the new contents, never a mix."""
    tmp = f"{path}.{suffix or os.getpid()}.part"
    fd = _faults.fs.open(tmp, _platform.WRITE_TRUNCATE, 0o644)
    try:
        try:
            _faults.fs.write(fd, text.encode("utf-8"))
            if fsync:
                _faults.fs.fsync(fd)
        finally:
            _faults.fs.close(fd)
        _platform.retry_busy(_faults.fs.replace, tmp, path)  # Windows: a reader may hold it
    except BaseException:
        with contextlib.suppress(OSError):
            _faults.fs.unlink(tmp)
        raise


def fsync_dir(path: str) -> None:
    """Make the names in ``path`` durable (a no-op where directories cannot be synced)."""
    if not _platform.SYNC_DIRS:
        return
    fd = _faults.fs.open(path, _platform.READ)
    try:
        _faults.fs.fsync(fd)
    finally:
        _faults.fs.close(fd)
