"""One cache entry: its paths on disk, its manifest, and whether it is complete.

Layout of a cache root (docs/cache-format.md), compatible with tensorflow_hub's::

    <root>/
      CACHEDIR.TAG                   marks the folder as a cache for backup tools
      <key>/                         the model tree exactly as published, nothing of ours
      <key>.descriptor.txt           tensorflow_hub's 3-line descriptor
      <key>.manifest.json            ours: every file with its size and sha256 -> proof
      <key>.lock                     only while a download runs: "<host>.<pid>.<uid>"
      <key>.<uid>.tmp/               staging of one download attempt
      <key>.<uid>.trash/             a damaged tree moved aside, removed right after

States: **complete** (manifest present, every listed file there with its size), **legacy**
(no manifest: made by tensorflow_hub or by hand; usable when not visibly damaged),
**damaged** (anything else with a ``<key>/``), **missing**.

The warm path must cost a few microseconds (issue: 5x under tensorflow_hub's ~70 µs), so the
full stat walk runs once per process per manifest; after that we re-stat only the manifest
and the entry's directories. Deleting or adding a file changes its directory's mtime, which
is exactly what temp-folder cleaners do; a file truncated in place is caught by the next
full walk (a new process, ``hubcache verify``), not by this shortcut.

Last use is the manifest's atime, set by a hit at most once per USE_RECORD_INTERVAL from the
stat the fast path already made (no extra syscall on the common path), and otherwise never
changed: we read manifests with O_NOATIME, so listing a cache does not make it look used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from typing import Any, Literal, NamedTuple, Optional

from .. import _faults, _platform
from .._errors import CacheDirError, hide_credentials
from .manifest import Manifest

# The manifest's atime is the entry's last-used time, refreshed at most this often (seconds).
USE_RECORD_INTERVAL = 3600.0
_UNRECORDABLE: set[str] = set()  # manifests we failed to touch (read-only cache): not retried

# manifest path -> (manifest stat signature, ((directory, mtime_ns), ...))
_VERIFIED: dict[str, tuple[tuple[int, int, int], tuple[tuple[str, int], ...]]] = {}


# complete: the manifest proves it; legacy: no manifest (tensorflow_hub's), looks usable;
# damaged: anything else with a <key>/; missing: nothing there
StateName = Literal["complete", "legacy", "damaged", "missing"]


class State(NamedTuple):
    name: StateName
    reason: str = ""


class Entry:
    """Paths of one key under one local root, and the checks that read them."""

    __slots__ = ("descriptor_path", "key", "lock_path", "manifest_path", "path", "root")

    def __init__(self, root: str, key: str) -> None:
        self.root = root
        self.key = key
        self.path = os.path.join(root, key)
        self.manifest_path = self.path + ".manifest.json"
        self.descriptor_path = self.path + ".descriptor.txt"
        self.lock_path = self.path + ".lock"

    def staging(self, uid: str) -> str:
        return f"{self.path}.{uid}.tmp"

    # -- the fast path -----------------------------------------------------------------
    def is_complete(self) -> bool:
        """True when the manifest proves the tree complete. No lock, no write, no network."""
        try:
            st = os.stat(self.manifest_path)
        except OSError:
            return False
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        memo = _VERIFIED.get(self.manifest_path)
        if memo is not None and memo[0] == signature:
            try:
                for directory, mtime in memo[1]:
                    if os.stat(directory).st_mtime_ns != mtime:
                        break
                else:
                    if st.st_atime < time.time() - USE_RECORD_INTERVAL:
                        record_use(self.manifest_path, st)
                    return True
            except OSError:
                pass
        if self._walk(signature) is not None:
            return False
        if st.st_atime < time.time() - USE_RECORD_INTERVAL:
            record_use(self.manifest_path, st)
        return True

    def _walk(self, signature: tuple[int, int, int]) -> Optional[str]:
        """Full check against the manifest; returns why it failed, or None and memoises."""
        _VERIFIED.pop(self.manifest_path, None)
        manifest = self.manifest()
        if manifest is None:
            return "its manifest is unreadable"
        dirs: list[tuple[str, int]] = []
        try:
            # Directory times are taken before the files are checked, so a deletion racing
            # with this walk still changes a time we recorded.
            for rel in manifest.dirs:
                path = os.path.join(self.path, rel) if rel else self.path
                st = os.stat(path)
                if not stat.S_ISDIR(st.st_mode):
                    return f"{rel or '.'} is not a directory"
                dirs.append((path, st.st_mtime_ns))
        except OSError:
            return f"directory {rel or '.'} is missing"
        for rel, (size, _digest) in manifest.files.items():
            try:
                st = os.stat(os.path.join(self.path, rel))
            except OSError:
                return f"file {rel} is missing"
            if not stat.S_ISREG(st.st_mode):  # a folder or a FIFO: its "size" says nothing
                return f"file {rel} is not a regular file"
            if st.st_size != size:
                return f"file {rel} has {st.st_size} bytes instead of {size}"
        _VERIFIED[self.manifest_path] = (signature, tuple(dirs))
        return None

    # -- the slow path (under the lock, or for management commands) --------------------
    def state(self) -> State:
        has_tree = os.path.isdir(self.path)
        if os.path.exists(self.manifest_path):
            if not has_tree:
                return State("damaged", "the model folder is missing")
            try:
                signature = _signature(os.stat(self.manifest_path))
            except OSError:
                return State("missing")
            problem = self._walk(signature)
            return State("complete") if problem is None else State("damaged", problem)
        if not has_tree:
            return (
                State("damaged", "not a folder") if os.path.lexists(self.path) else State("missing")
            )
        problem = legacy_problem(self.path)
        return State("damaged", problem) if problem else State("legacy")

    def manifest(self) -> Optional[Manifest]:
        """The manifest as a typed record, or None when absent or unreadable."""
        try:
            return Manifest.from_json(read_quietly(self.manifest_path))
        except OSError:
            return None

    def forget(self) -> None:
        _VERIFIED.pop(self.manifest_path, None)

    def move_aside(self, uid: str) -> None:
        """Retire a damaged entry: manifest first (so nobody trusts it), then the tree."""
        self.forget()
        with contextlib.suppress(FileNotFoundError):
            _faults.fs.unlink(self.manifest_path)
        trash = f"{self.path}.{uid}.trash"
        try:
            _platform.retry_busy(_faults.fs.rename, self.path, trash)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            _faults.fs.unlink(self.path)
            return
        except PermissionError as exc:
            # Windows: another process (TensorFlow with this model loaded) holds a file open.
            raise CacheDirError(
                f"cannot move the damaged entry {self.path} aside: {exc.strerror}; close the "
                "programs using it and retry",
                errno=exc.errno,
            ) from exc
        shutil.rmtree(trash, ignore_errors=True)  # leftovers are removed by `hubcache gc`


def record_use(manifest_path: str, st: os.stat_result) -> None:
    """Set the manifest's atime to now, keeping its mtime (so the memo above stays valid).

    The atime is the entry's last-used time (``hubcache ls``, ``prune``). Callers only come
    here when the record is over USE_RECORD_INTERVAL old, so a busy entry costs one utime
    per hour, not one per hit. A read-only cache fails once per process and is left alone.
    (A manifest replaced between the caller's stat and this call gets the old mtime: harmless,
    the replacement's inode differs, so the memo is re-checked anyway.)
    """
    if manifest_path in _UNRECORDABLE:
        return
    try:
        # Windows' utime opens the file unshared: a reader holding it is waited for briefly.
        _platform.retry_busy(_faults.fs.utime, manifest_path, ns=(time.time_ns(), st.st_mtime_ns))
    except OSError:
        _UNRECORDABLE.add(manifest_path)


def read_quietly(path: str) -> bytes:
    """Read a small file without updating its atime, which records last use, not reads:
    ``hubcache ls`` and backup tools must not make stale entries look used."""
    try:
        fd = os.open(path, _platform.READ | _platform.O_NOATIME)
    except PermissionError:
        if not _platform.O_NOATIME:
            raise
        fd = os.open(path, _platform.READ)  # O_NOATIME needs ownership
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def legacy_problem(path: str) -> Optional[str]:
    """Why a manifest-less tree is visibly damaged, or None when it looks usable."""
    has_file = False
    for _dirpath, _dirs, files in os.walk(path):
        if files:
            has_file = True
            break
    if not has_file:
        return "it holds no files (a temp-folder cleaner may have deleted them)"
    if os.path.isdir(os.path.join(path, "variables")) and not (
        os.path.isfile(os.path.join(path, "saved_model.pb"))
        or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))
    ):
        return "it has variables/ but no saved_model.pb"
    return None


def scan_tree(path: str) -> tuple[dict[str, list[Any]], list[str]]:
    """Files (size, no hash) and directories of an existing tree, for adopting it."""
    files: dict[str, list[Any]] = {}
    dirs: list[str] = []
    for dirpath, _subdirs, names in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        dirs.append(rel_dir)
        for name in names:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                files[f"{rel_dir}/{name}" if rel_dir else name] = [st.st_size, ""]
    return files, dirs


def descriptor_handle(text: bytes) -> str:
    """The handle on the first line of tensorflow_hub's descriptor, or ""."""
    first = text.decode("utf-8", "replace").split("\n", 1)[0]
    handle = first[len("Module: ") :].strip() if first.startswith("Module: ") else ""
    return hide_credentials(handle)  # tensorflow_hub writes the handle as given
