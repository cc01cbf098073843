"""Write archive members into a fresh staging directory, refusing anything unsafe.

This is our own allow-list, not ``tarfile``'s filters (those were bypassed on this very
Python, see docs/architecture.md). Only regular files and directories are ever created, under names
we have normalised ourselves, with ``O_EXCL | O_NOFOLLOW`` so nothing already on disk is
followed or overwritten even if a check here were wrong. Both the tar and the zip readers
feed this one class, so every rule lives in one place:

* names: leading ``/`` stripped (tensorflow_hub compatibility), ``.`` and empty components
  dropped, any ``..`` component refused (``..hidden`` is a fine name), NUL refused;
* a file may repeat only identically (same size, mode and bytes: what ``tarfile.add(dir)``
  followed by adding each file again makes, as tensorflow_hub's own tests do); the repeat is
  compared, never written; any other duplicate, and a file where a directory was or the
  reverse, is refused;
* limits on member count, total bytes, name length and depth (``Limits``);
* modes sanitised: files 0644 or 0755, directories 0755 (no setuid, no world-write);
* every file is hashed (sha256) as it is written and fsynced before publishing.

Three producers feed it: the tar and zip readers (an archive), the stager's file-set path
(a Kaggle version fetched file by file, several threads at once: the tree's bookkeeping is
guarded by one lock, each file's bytes are written by the thread that owns its writer), and
:meth:`SafeTree.add_link` (a copy linked from an equivalent entry). Whatever fills it, the
same names are refused and every file and folder is synced the same way before publishing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional, Union

from .. import _faults, _platform
from .._config import Limits
from .._disk import disk_error
from .._errors import CorruptArchiveError, UnsafeArchiveError

# errors that mean "this filesystem cannot hard-link here" (another device, no support;
# Windows reports FAT and some shares as EINVAL): copy instead
NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES, errno.EINVAL}
NO_LINK |= {errno.ENOSYS, errno.EOPNOTSUPP}
# A large file starts its writeback every this many bytes (on a duplicate descriptor, in
# the fsync pool), so the final fsync before publishing only waits for the last piece.
_EARLY_SYNC = 32 * 1024 * 1024
_SYNC_THREADS = 2
# A tree of at most this many files and bytes is synced by the calling thread at the end,
# file by file and then folder by folder, instead of in the background: a small model's
# download is over before a sync thread would have started, and on a busy machine every
# hand-off to a thread waits for the scheduler. The 10 kB demo model (four files, three
# folders): median 1.1-1.7 ms here, against 1.4-1.9 ms through two sync threads and
# 3.8-4.9 ms through eight.
_INLINE_FILES = 16
_INLINE_BYTES = 4 * 1024 * 1024


class FileWriter:
    """One regular file being written; the size declared by the archive is enforced."""

    __slots__ = ("_fd", "_hash", "_tree", "_unsynced", "path", "rel", "size", "written")

    def __init__(self, tree: SafeTree, rel: str, path: str, size: Optional[int], mode: int) -> None:
        self._tree = tree
        self.rel = rel
        self.path = path
        self.size = size
        self.written = 0
        self._unsynced = 0
        self._hash = hashlib.sha256()
        try:
            self._fd = _faults.fs.open(path, _platform.CREATE_NEW_FILE, mode)
        except FileExistsError:
            raise UnsafeArchiveError(f"archive member {rel!r} collides with another") from None
        except OSError as exc:
            raise disk_error(exc, tree.root, tree.total_written, size) from exc

    def write(self, data: memoryview | bytes) -> None:
        if self.size is None:  # a file set's file of unknown size: the total limit applies
            limit = self._tree.limits.max_total_bytes
            if self._tree.total_written + len(data) > limit:
                raise UnsafeArchiveError(f"the model is larger than the limit of {limit} bytes")
        elif self.written + len(data) > self.size:
            raise CorruptArchiveError(f"archive member {self.rel!r} is longer than declared")
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                n = _faults.fs.write(self._fd, view)
                view = view[n:]
                self.written += n
                self._tree.total_written += n
            self._unsynced += len(data)
            if self._unsynced >= _EARLY_SYNC and self._tree.fsync:
                self._unsynced = 0
                self._tree.sync_soon(os.dup(self._fd))
        except OSError as exc:
            left = None if self.size is None else self.size - self.written
            raise disk_error(exc, self._tree.root, self._tree.total_written, left) from exc

    def close(self) -> None:
        """Close and record the file; the fsync runs in the background until publish."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            _faults.fs.close(fd)
        except OSError as exc:  # NFS reports a full disk at close
            raise disk_error(exc, self._tree.root, self._tree.total_written, None) from exc
        if self.size is None:
            self.size = self.written
        elif self.written != self.size:
            raise CorruptArchiveError(
                f"archive member {self.rel!r} is truncated ({self.written} of {self.size} bytes)"
            )
        self._tree.record_file(self)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class HashedSink:
    """A file member whose bytes are checked against its declared size and hashed, but
    never written: what a repeat of a member and the mirror's verifier both need."""

    __slots__ = ("_hash", "rel", "size", "written")

    def __init__(self, rel: str, size: int) -> None:
        self.rel = rel
        self.size = size
        self.written = 0
        self._hash = hashlib.sha256()

    def write(self, data: memoryview | bytes) -> None:
        if self.written + len(data) > self.size:
            raise CorruptArchiveError(f"archive member {self.rel!r} is longer than declared")
        self._hash.update(data)
        self.written += len(data)

    def close(self) -> None:
        if self.written != self.size:
            raise CorruptArchiveError(
                f"archive member {self.rel!r} is truncated ({self.written} of {self.size} bytes)"
            )

    def abort(self) -> None:
        pass

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class RepeatedFile(HashedSink):
    """A file member seen before: its bytes are hashed and compared, never written.

    Accepting an identical repeat is harmless (the tree is the same either way); a repeat
    whose bytes differ could smuggle content past a reviewer of the first copy, so it is
    refused when its end shows the digests differ.
    """

    __slots__ = ("_expected",)

    def __init__(self, rel: str, size: int, expected_sha256: str) -> None:
        super().__init__(rel, size)
        self._expected = expected_sha256

    def close(self) -> None:
        super().close()
        if self.sha256 != self._expected:
            raise UnsafeArchiveError(
                f"archive member {self.rel!r} appears twice with different content"
            )


MemberWriter = Union[FileWriter, HashedSink]


class SafeTree:
    """The staging directory of one extraction and everything written into it."""

    def __init__(self, root: str, limits: Limits, *, fsync: bool = True) -> None:
        self.root = root
        self.limits = limits
        self.files: dict[str, tuple[int, str]] = {}  # relative path -> (size, sha256)
        self.modes: dict[str, int] = {}  # relative path -> sanitised mode (repeats must match)
        self.dirs: set[str] = {""}
        self.members = 0
        self.declared_bytes = 0
        self.total_written = 0
        self.fsync = fsync
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: list[Future[None]] = []
        self._inline = True  # still small: files' fsyncs wait for finalize (in this thread)
        self._deferred: list[str] = []
        # Names, counts and the sync queue are shared by the threads of a file set; an
        # uncontended lock costs ~50 ns per member, nothing next to the write.
        self._guard = threading.RLock()

    # -- names -------------------------------------------------------------------------
    def normalize(self, raw: str) -> str:
        """The safe relative path of a member name, or raise UnsafeArchiveError."""
        if "\x00" in raw:
            raise UnsafeArchiveError(f"archive member name {raw!r} contains a NUL byte")
        parts = [p for p in raw.lstrip("/").split("/") if p not in ("", ".")]
        # A backslash is an ordinary character on POSIX, but "a\\..\\..\\x" written by a
        # Windows tool means "..": refuse it too, should the tree ever be copied there.
        if ".." in parts or any(".." in p.split("\\") for p in parts):
            raise UnsafeArchiveError(
                f"archive member {raw!r} has a '..' component and would escape the model directory"
            )
        for part in parts:  # on Windows: drives, devices, streams, backslashes
            problem = _platform.name_problem(part)
            if problem is not None:
                raise UnsafeArchiveError(f"archive member {raw[:200]!r}: {part!r} {problem}")
        if len(parts) > self.limits.max_depth:
            raise UnsafeArchiveError(
                f"archive member {raw[:200]!r} is {len(parts)} directories deep "
                f"(limit {self.limits.max_depth})"
            )
        rel = "/".join(parts)
        longest = max((len(os.fsencode(p)) for p in parts), default=0)
        if longest > self.limits.max_component_length:  # else the OS says ENAMETOOLONG
            raise UnsafeArchiveError(
                f"archive member {raw[:200]!r} has a path component of {longest} bytes "
                f"(limit {self.limits.max_component_length})"
            )
        if len(os.fsencode(rel)) > self.limits.max_name_length:
            raise UnsafeArchiveError(
                f"archive member name {rel[:100]!r}... is longer than "
                f"{self.limits.max_name_length} bytes"
            )
        return rel

    def _check_parents(self, rel: str) -> None:
        parent = rel
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.files:
                raise UnsafeArchiveError(
                    f"archive member {rel!r} needs {parent!r} to be a directory, but it is a file"
                )
            if parent in self.dirs:
                return
            self._mkdir(parent)

    def _mkdir(self, rel: str) -> None:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if parent not in self.dirs:
            self._check_parents(rel)
        try:
            _faults.fs.mkdir(os.path.join(self.root, rel), 0o755)
        except FileExistsError:
            raise UnsafeArchiveError(f"archive member {rel!r} collides with another") from None
        except OSError as exc:
            raise disk_error(exc, self.root, self.total_written, None) from exc
        self.dirs.add(rel)

    def _count(self, rel: str, size: int) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise UnsafeArchiveError(f"the archive has more than {self.limits.max_members} members")
        self.declared_bytes += size
        if self.declared_bytes > self.limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"the archive declares more than {self.limits.max_total_bytes} bytes of files "
                f"(at member {rel!r})"
            )

    # -- members -----------------------------------------------------------------------
    def add_dir(self, raw: str) -> None:
        with self._guard:
            self._add_dir(raw)

    def _add_dir(self, raw: str) -> None:
        rel = self.normalize(raw)
        if rel in self.dirs:
            return  # a directory listed twice, or after its children: harmless
        if rel in self.files:
            raise UnsafeArchiveError(f"archive member {rel!r} is both a file and a directory")
        self._count(rel, 0)
        self._check_parents(rel)
        self._mkdir(rel)

    def add_file(self, raw: str, size: Optional[int], mode: int) -> MemberWriter:
        """A writer for one regular file; ``size`` None (a listed file whose size the
        server did not give) is bounded by the total-bytes limit instead."""
        with self._guard:
            return self._add_file(raw, size, mode)

    def _add_file(self, raw: str, size: Optional[int], mode: int) -> MemberWriter:
        rel = self.normalize(raw)
        if not rel:
            raise UnsafeArchiveError(f"archive member {raw!r} names the model directory itself")
        clean_mode = 0o755 if mode & 0o100 else 0o644
        if rel in self.files:
            if size is None:
                raise UnsafeArchiveError(f"{rel!r} is listed twice")
            return self._repeat(rel, size, clean_mode)
        if rel in self.dirs:
            raise UnsafeArchiveError(f"archive member {rel!r} is both a directory and a file")
        if size is not None and size < 0:
            raise CorruptArchiveError(f"archive member {rel!r} has a negative size")
        self._count(rel, size or 0)
        self._check_parents(rel)
        # Reserve the name before the file exists so a later duplicate is caught even if
        # this member's data is cut short.
        self.files[rel] = (size or 0, "")
        self.modes[rel] = clean_mode
        return self._open_writer(rel, size, clean_mode)

    def _open_writer(self, rel: str, size: Optional[int], mode: int) -> MemberWriter:
        """The writer of one checked member (a verifier overrides it to write nothing)."""
        return FileWriter(self, rel, os.path.join(self.root, rel), size, mode)

    def _repeat(self, rel: str, size: int, clean_mode: int) -> RepeatedFile:
        first_size, first_sha256 = self.files[rel]
        if not first_sha256:  # the first copy never finished: cannot compare
            raise UnsafeArchiveError(f"archive member {rel!r} appears twice")
        if size != first_size:
            raise UnsafeArchiveError(
                f"archive member {rel!r} appears twice with different sizes "
                f"({first_size} and {size} bytes)"
            )
        if clean_mode != self.modes[rel]:
            raise UnsafeArchiveError(
                f"archive member {rel!r} appears twice with different modes "
                f"({self.modes[rel]:o} and {clean_mode:o})"
            )
        self._count(rel, size)
        return RepeatedFile(rel, size, first_sha256)

    def add_link(self, raw: str, source: str, digest: str = "") -> None:
        """Give the tree a copy of the regular file ``source`` under ``raw``: a hard link
        (same inode, no second copy on disk), else a copy through a writer. Used to fill an
        entry from an equivalent one; the name rules, limits and syncs are those of any file.
        ``digest`` is the source's known sha256 (kept in the manifest), or ""."""
        st = os.lstat(source)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeArchiveError(
                f"{source} is not a regular file (a symbolic link?); it is not linked from "
                "(check that entry with `hubcache verify`)"
            )
        with self._guard:
            rel = self.normalize(raw)
            if not rel or rel in self.files or rel in self.dirs:
                raise UnsafeArchiveError(f"{raw!r} collides with another file of the copy")
            self._count(rel, st.st_size)
            self._check_parents(rel)
            path = os.path.join(self.root, rel)
            try:
                _faults.fs.link(source, path)
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise disk_error(exc, self.root, self.total_written, None) from exc
            else:
                self.files[rel] = (st.st_size, digest)
                self.modes[rel] = 0o644
                _faults.checkpoint("mid-extraction")
                if self.fsync:
                    self._sync_file(path)
                return
            self.files[rel] = (st.st_size, "")
            self.modes[rel] = 0o644
        writer = self._open_writer(rel, st.st_size, 0o755 if st.st_mode & 0o100 else 0o644)
        try:
            with open(source, "rb") as src:
                while data := src.read(1024 * 1024):
                    writer.write(data)
        except BaseException:
            writer.abort()
            raise
        writer.close()

    def forget_file(self, raw: str) -> None:
        """Undo :meth:`add_file` after its writer failed, so the file can be fetched again
        from the start (a file set's restart): the bytes and the bookkeeping go."""
        with self._guard:
            rel = self.normalize(raw)
            size, _digest = self.files.pop(rel, (0, ""))
            self.modes.pop(rel, None)
            self.members -= 1
            self.declared_bytes -= size
            with contextlib.suppress(FileNotFoundError):
                _faults.fs.unlink(os.path.join(self.root, rel))

    def record_file(self, writer: FileWriter) -> None:
        with self._guard:
            self.files[writer.rel] = (writer.size or 0, writer.sha256)
        _faults.checkpoint("mid-extraction")
        if self.fsync:
            self._sync_file(writer.path)

    def sync_soon(self, fd: int) -> None:
        """Start writing back a file being extracted; ``fd`` is a duplicate we close."""
        with self._guard:
            self._background()
        self._submit(_fdatasync_and_close, fd)

    def _sync_file(self, path: str) -> None:
        """A finished file's fsync: left to finalize() while the tree is small, else
        started now in the background, where it overlaps the rest of the download."""
        with self._guard:
            small = len(self.files) <= _INLINE_FILES and self.total_written <= _INLINE_BYTES
            if self._inline and small:
                self._deferred.append(path)
                return
            self._background()
        self._submit(_fsync_file, path)

    def _background(self) -> None:
        """The tree outgrew the inline syncs (guard held): the deferred ones start now."""
        if self._inline:
            self._inline = False
            deferred, self._deferred = self._deferred, []
            for path in deferred:
                self._submit(_fsync_file, path)

    def _submit(self, job: Callable[[Any], None], arg: Any) -> None:
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="hubcache-fsync")
            self._pending.append(self._pool.submit(job, arg))

    # -- end ---------------------------------------------------------------------------
    def finalize(self) -> None:
        """Wait for every file's fsync (a small tree's run here), then sync the directories
        bottom-up.

        A failed fsync is raised, never retried: after a failure the kernel may have
        dropped the dirty pages, so a retry that succeeds would publish lost data.
        """
        try:
            for future in self._pending:
                future.result()
            if self.fsync:
                for path in self._deferred:  # a small tree's files, in this thread
                    _fsync_file(path)
                if _platform.SYNC_DIRS:
                    for rel in sorted(self.dirs, key=len, reverse=True):
                        _fsync_path(os.path.join(self.root, rel) if rel else self.root)
                _platform.flush_drive_cache(self.root)
        except OSError as exc:
            raise disk_error(exc, self.root, self.total_written, None) from exc
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()


def _fdatasync_and_close(fd: int) -> None:
    try:
        _platform.writeback(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    _fsync_path(path, _platform.SYNC_FILE)


def _fsync_path(path: str, flags: int = _platform.READ) -> None:
    fd = _faults.fs.open(path, flags)
    try:
        _faults.fs.fsync(fd)
    finally:
        _faults.fs.close(fd)
