"""The storage seam: one small interface for cache roots that are not the local fast path.

Layout of an entry on any storage (docs/cache-format.md; tensorflow_hub's names plus our manifest)::

    <root>/
      <key>/...                  the model tree, one object (or file) per file
      <key>.descriptor.txt       tensorflow_hub's descriptor, written first
      <key>.manifest.json        ours, written LAST and only if absent: the only proof
                                 that every object of the tree is there
      <key>.lock                 "<host>.<pid>.<uid>", created only if absent (_storage_lock)
      <key>.used                 empty; its modification time is the entry's last use
      .hubcache-clock/<uid>      a probe written and deleted to read the server's clock

Object stores have no atomic rename, so completeness cannot come from "the folder
appeared"; it comes from the manifest existing and every file it lists being there with
its size. A reader that finds no manifest treats the tree as debris, whatever it holds.

:class:`Storage` owns that bookkeeping (manifests, parallel transfers, verification);
a backend implements only the primitives at the top of the class: here
:class:`LocalStorage` (a directory, e.g. an NFS mount used as a shared tier), and
``FsspecStorage`` in ``store.fsspec`` (gs://, s3://, memory://, any fsspec URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import IO, Any, Optional

from .. import _faults, _platform
from .._errors import DownloadError
from ..local.entry import USE_RECORD_INTERVAL
from ..local.manifest import Manifest
from ..local.root import fsync_dir as sync_folder

CHUNK = 1024 * 1024
WORKERS = 8  # parallel transfers: enough to hide per-object latency, few enough for memory
_USE_NOTED: dict[tuple[str, str], float] = {}  # (root, key) -> monotonic time of our check


def parallel(work: Callable[[Any], None], items: Iterable[Any], workers: int = WORKERS) -> None:
    """Run ``work`` over ``items`` on a thread pool; the first error cancels the rest."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()  # re-raises the first failure (the pool waits for running ones)


class Storage:
    """A cache root addressed by names relative to it (``"<key>/a/b"``, ``"<key>.lock"``)."""

    url: str = ""
    exclusive_create = True  # False: create() is best effort (see the backend)

    def close(self) -> None:
        """End this use of the root: a backend with a client of its own closes its
        connections (the fsspec backend); a directory has nothing to close."""

    # -- primitives: each backend implements these -------------------------------------
    def join(self, name: str) -> str:
        """The full path or URL of ``name``, as a user (or TensorFlow) would open it."""
        raise NotImplementedError

    def read(self, name: str) -> Optional[bytes]:
        """The whole contents of a small object, or None when it does not exist."""
        raise NotImplementedError

    def write(self, name: str, data: bytes) -> None:
        """Create or replace a small object."""
        raise NotImplementedError

    def create(self, name: str, data: bytes) -> bool:
        """Create a small object only if absent; False when it already exists."""
        raise NotImplementedError

    def put_file(self, local: str, name: str) -> None:
        """Upload a local file, streamed (never read whole)."""
        raise NotImplementedError

    def open_read(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def listing(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix/``: its name relative to the prefix -> size."""
        raise NotImplementedError

    def modified(self, name: str) -> Optional[float]:
        """When ``name`` was last written, by the store's clock (POSIX seconds), or None."""
        raise NotImplementedError

    def remove(self, name: str) -> None:
        """Delete one object; a missing one is fine."""
        raise NotImplementedError

    def remove_tree(self, prefix: str) -> None:
        """Delete every object under ``prefix/``; a missing prefix is fine."""
        raise NotImplementedError

    # -- bookkeeping shared by every backend -------------------------------------------
    def server_time(self) -> float:
        """The store's clock now: the modification time of a probe we write and delete.
        Lock leases are judged with it, so hosts with skewed clocks agree on staleness."""
        probe = f".hubcache-clock/{uuid.uuid4().hex}"
        self.write(probe, b"")
        try:
            when = self.modified(probe)
        finally:
            with contextlib.suppress(OSError):
                self.remove(probe)
        if when is None:
            raise OSError(f"cannot read the clock of {self.url}")
        return when

    def read_manifest(self, key: str) -> Optional[Manifest]:
        """The entry's manifest, or None when absent or not one we can trust."""
        data = self.read(f"{key}.manifest.json")
        return Manifest.from_json(data) if data is not None else None

    def complete_manifest(self, key: str) -> Optional[Manifest]:
        """The manifest of a complete entry (every listed file there with its size), or None.
        Two requests on an object store: the manifest and one listing."""
        manifest = self.read_manifest(key)
        if manifest is None:
            return None
        present = self.listing(key)
        for rel, (size, _digest) in manifest.files.items():
            if present.get(rel) != size:
                return None
        return manifest

    def upload_entry(self, key: str, local_dir: str, manifest: Manifest, descriptor: str) -> bool:
        """Upload a finished local tree: descriptor, files in parallel, manifest LAST and only
        if absent. True when our manifest is the published one. A failure before the end
        leaves no manifest, so nobody ever takes the partial tree for an entry."""
        self.write(f"{key}.descriptor.txt", descriptor.encode("utf-8"))
        parallel(
            lambda rel: self.put_file(os.path.join(local_dir, *rel.split("/")), f"{key}/{rel}"),
            manifest.files,
        )
        return self.create(f"{key}.manifest.json", manifest.to_json().encode())

    def download_entry(
        self, key: str, manifest: Manifest, dest: str, *, fsync: bool = True
    ) -> None:
        """Copy a complete entry into the empty local folder ``dest``, in parallel, checking
        each file's size and (when the manifest has it) sha256 on the way. With ``fsync``
        every file and then every folder is synced, as an extracted tree is, so the rename
        that publishes ``dest`` never exposes a tree a crash could leave half-written. Names
        come from a manifest another host wrote: one that would leave ``dest`` is refused."""
        folders = {dest}
        for rel in manifest.dirs:
            if rel:
                folders.add(os.path.join(dest, *self._parts(key, rel)))
                _faults.fs.makedirs(os.path.join(dest, *self._parts(key, rel)), exist_ok=True)

        def fetch(item: tuple[str, tuple[int, str]]) -> None:
            rel, (size, digest) = item
            target = os.path.join(dest, *self._parts(key, rel))
            _faults.fs.makedirs(os.path.dirname(target), exist_ok=True)
            sha = hashlib.sha256()
            count = 0
            with self.open_read(f"{key}/{rel}") as src, open(target, "wb") as out:
                while data := src.read(CHUNK):
                    sha.update(data)
                    count += len(data)
                    out.write(data)
                if fsync:
                    out.flush()
                    _faults.fs.fsync(out.fileno())
            if count != size or (digest and sha.hexdigest() != digest):
                raise DownloadError(
                    f"{self.join(key + '/' + rel)} does not match its manifest "
                    f"({count} bytes, expected {size}); the shared copy is damaged"
                )

        parallel(fetch, manifest.files.items())
        if fsync:  # deepest first, so each folder's entries are on disk before its parent's
            for rel in manifest.files:
                parts = rel.split("/")[:-1]
                folders.update(os.path.join(dest, *parts[:n]) for n in range(1, len(parts) + 1))
            for folder in sorted(folders, key=lambda p: p.count(os.sep), reverse=True):
                sync_folder(folder)

    def _parts(self, key: str, rel: str) -> list[str]:
        parts = rel.split("/")
        for part in parts:
            if part in ("", ".", "..") or _platform.name_problem(part):
                raise DownloadError(
                    f"{self.join(key + '.manifest.json')} lists {rel[:200]!r}, which would "
                    "leave the model folder; the shared copy is damaged"
                )
        return parts

    def record_use(self, key: str) -> None:
        """Note a hit in ``<key>.used``: object stores have no atime, and rewriting the
        manifest would race with readers. Once per USE_RECORD_INTERVAL per process and entry
        we read that object's time (one HEAD) and rewrite it when older than the interval, so
        a busy entry costs one small write an hour, whatever the number of hits or workers.
        Only remote hits come here (already ms-scale); local hits use the manifest's atime.
        Failures (a read-only bucket) are ignored: bookkeeping never fails a resolve."""
        mark = (self.url, key)
        now = time.monotonic()
        if now - _USE_NOTED.get(mark, -USE_RECORD_INTERVAL) < USE_RECORD_INTERVAL:
            return
        _USE_NOTED[mark] = now
        try:
            used = self.modified(f"{key}.used")
            if used is None or time.time() - used >= USE_RECORD_INTERVAL:
                self.write(f"{key}.used", b"")
        except Exception:  # any store error: the record is best effort
            return

    def retire(self, key: str) -> None:
        """Remove an entry or the debris of a failed upload: manifest first, so no reader
        trusts the tree while it is being deleted."""
        self.remove(f"{key}.manifest.json")
        self.remove_tree(key)


class LocalStorage(Storage):
    """A directory (local disk or a network mount) behind the storage interface."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def join(self, name: str) -> str:
        return self._path(name)

    def read(self, name: str) -> Optional[bytes]:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _stage(self, path: str, fill: Callable[[IO[bytes]], None]) -> str:
        _faults.fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as f:
                fill(f)
        except BaseException:  # a full disk, say: no temp file is left behind
            with contextlib.suppress(OSError):
                _faults.fs.unlink(tmp)
            raise
        return tmp

    def _replace(self, tmp: str, path: str) -> None:
        try:
            _platform.retry_busy(_faults.fs.replace, tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                _faults.fs.unlink(tmp)
            raise

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._replace(self._stage(path, lambda f: _write_all(f, data)), path)

    def create(self, name: str, data: bytes) -> bool:
        # Never overwrites: the object appears whole (link, or rename on Windows), and only
        # for one creator; without hard links (FAT, some shares) exclusive but not atomic.
        path = self._path(name)
        tmp = self._stage(path, lambda f: _write_all(f, data))
        try:
            return _platform.create_from(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                _faults.fs.unlink(tmp)

    def put_file(self, local: str, name: str) -> None:
        path = self._path(name)

        def copy(out: IO[bytes]) -> None:
            with open(local, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)

        self._replace(self._stage(path, copy), path)

    def open_read(self, name: str) -> IO[bytes]:
        return open(self._path(name), "rb")  # closed by the caller

    def listing(self, prefix: str) -> dict[str, int]:
        base = self._path(prefix)
        out: dict[str, int] = {}
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    out[os.path.relpath(full, base).replace(os.sep, "/")] = os.stat(full).st_size
        return out

    def modified(self, name: str) -> Optional[float]:
        try:
            return os.stat(self._path(name)).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            _faults.fs.unlink(self._path(name))

    def remove_tree(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)


def _write_all(f: IO[bytes], data: bytes) -> None:
    f.write(data)
