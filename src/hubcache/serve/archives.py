"""Where the mirror keeps archives: a local directory, or a bucket (``gs://``, ``s3://``).

Layout, the same on both (request path ``/P`` -> ``P`` + the suffix of the archive's
format; a request for an archive name keeps that name)::

    DIR/
      google/nnlm/1.tar.gz           the upstream's bytes, exactly
      google/nnlm/1.tar.gz.sha256    "<hex>  1.tar.gz" (``sha256sum -c`` reads it)
      .hubcache-partial/<host>.<pid>.<uid>.part   a fill in progress (local DIR only)
      .hubcache-locks/<sha1>.lock    who is filling what, so replicas fetch once

Crash safety: an archive is written under ``.hubcache-partial``, verified, fsynced, then
its ``.sha256`` is written and the archive is renamed into place: a request path names
either nothing or a whole verified archive, whenever the process dies. On a bucket there
is no rename: the archive object appears only when its upload completes, and it counts as
stored only once its ``.sha256`` (written after it) exists. Dot-folders are never served.

A local archive's modification time is set to the moment its fill began, so the ETag a
client got while the bytes were still arriving (``"<mtime_ns>-<size>"``, the form aiohttp's
``FileResponse`` sends) is the one it gets afterwards, and a resume across the two works.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Optional

from .. import _platform
from .._config import Config
from ..local.holder import new_uid, parse_holder
from ..local.root import unsafe_reason
from ..serve.ranges import file_etag
from ..serve.static import SIDECAR, STORED_SUFFIXES, StaticTree, is_archive_name
from ..store.backend import open_storage
from ..store.lock import StorageLock
from ..store.storage import LocalStorage, Storage

PARTIAL = ".hubcache-partial"
LOCKS = ".hubcache-locks"
_STALE_PARTIAL = 6 * 3600.0  # a partial from another host older than this is debris


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """One archive the store holds, as a response needs it."""

    name: str  # relative to the store, "/"-separated
    size: int
    etag: str
    mtime: float
    path: Optional[str]  # a local file (sendfile), or None on a bucket


class ArchiveStore:
    """The mirror's archives on a directory or a bucket (module docstring)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.storage: Storage = open_storage(location)
        self.local = isinstance(self.storage, LocalStorage)
        if self.local:
            self.tree: Optional[StaticTree] = StaticTree(location)
            self.spool = os.path.join(self.tree.directory, PARTIAL)
        else:
            self.tree = None
            self.spool = os.path.join(
                tempfile.gettempdir(), f"hubcache-mirror-{_platform.user_id()}"
            )

    # -- finding ---------------------------------------------------------------------------
    def find(self, parts: list[str], fmt: Optional[str]) -> Optional[Stored]:
        """The archive answering a request, or None. Local: anything ``static`` serves
        (archives put there by hand, folders packed on first use); bucket: stored ones."""
        if self.tree is not None:
            path = self.tree.lookup(parts, fmt)
            if path is None:
                return None
            st = os.stat(path)
            name = os.path.relpath(path, self.tree.real).replace(os.sep, "/")
            return Stored(
                name, st.st_size, file_etag(st.st_size, st.st_mtime_ns), st.st_mtime, path
            )
        base = "/".join(parts)
        names = [base] if is_archive_name(base) else [base + s for s in STORED_SUFFIXES]
        if fmt is None and not is_archive_name(base):
            return None
        for name in names:
            sidecar = self.storage.read(name + SIDECAR)
            if sidecar is None:
                continue
            digest = sidecar.split(b" ", 1)[0].decode("ascii", "replace")
            fs = getattr(self.storage, "fs", None)
            full = getattr(self.storage, "_p")(name)  # noqa: B009 - the backend's own path
            try:
                info = fs.info(full) if fs is not None else None
            except FileNotFoundError:
                continue
            size = int((info or {}).get("size") or 0)
            mtime = self.storage.modified(name) or time.time()
            return Stored(name, size, f'"sha256-{digest[:32]}"', mtime, None)
        return None

    def open(self, stored: Stored) -> IO[bytes]:
        if stored.path is not None:
            return open(stored.path, "rb")  # closed by the caller
        return self.storage.open_read(stored.name)

    # -- filling ---------------------------------------------------------------------------
    def partial(self) -> str:
        """A fresh local file name for one fill's bytes."""
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        if not self.local:
            reason = unsafe_reason(self.spool)
            if reason is not None:
                # On a shared temp folder another user may have made this name first, and
                # could then swap a part file between its check and its upload.
                log.warning("not spooling in %s because %s", self.spool, reason)
                self.spool = tempfile.mkdtemp(prefix="hubcache-mirror-")
        return os.path.join(self.spool, f"{socket.gethostname()}.{os.getpid()}.{new_uid()}.part")

    def lock(self, name: str, config: Config) -> StorageLock:
        key = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()
        return StorageLock(
            self.storage, f"{LOCKS}/{key}", handle=name, lease=config.lock_lease, timeout=None
        )

    def publish(self, part: str, name: str, sha256: str, started_ns: int) -> Stored:
        """Keep a verified, fsynced partial file as ``name`` (module docstring)."""
        line = f"{sha256}  {name.rsplit('/', 1)[-1]}\n".encode()
        size = os.path.getsize(part)
        if self.tree is not None:
            final = os.path.join(self.tree.directory, *name.split("/"))
            os.makedirs(os.path.dirname(final), exist_ok=True)
            self.storage.write(name + SIDECAR, line)
            os.utime(part, ns=(started_ns, started_ns))
            _platform.retry_busy(os.replace, part, final)  # Windows: a reader may hold it
            _fsync_dir(os.path.dirname(final))
            st = os.stat(final)
            return Stored(name, size, file_etag(size, st.st_mtime_ns), st.st_mtime, final)
        self.storage.put_file(part, name)
        self.storage.write(name + SIDECAR, line)
        with contextlib.suppress(OSError):
            os.unlink(part)
        return Stored(name, size, f'"sha256-{sha256[:32]}"', time.time(), None)

    def remove(self, name: str) -> None:
        """Evict one stored archive: the archive first, then its checksum."""
        self.storage.remove(name)
        self.storage.remove(name + SIDECAR)

    def clean_partials(self) -> list[str]:
        """Remove partial files of dead processes on this host (a kill -9 mid-fill) and
        very old ones from elsewhere; a live fill's file is left alone."""
        removed: list[str] = []
        try:
            names = os.listdir(self.spool)
        except OSError:
            return removed
        for name in names:
            path = os.path.join(self.spool, name)
            holder = parse_holder(name.removesuffix(".part"))
            dead = holder is not None and holder.is_dead_here()
            with contextlib.suppress(OSError):
                if dead or time.time() - os.stat(path).st_mtime > _STALE_PARTIAL:
                    os.unlink(path)
                    removed.append(path)
        return removed

    def inventory(self) -> dict[str, tuple[int, float]]:
        """Archives the mirror stored in a local DIR (those with a ``.sha256``): name ->
        (size, last served), the last-served time being the file's atime."""
        out: dict[str, tuple[int, float]] = {}
        if self.tree is None:
            return out
        root = self.tree.directory
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            have = set(files)
            for name in files:
                if name.endswith(SIDECAR) and name.removesuffix(SIDECAR) in have:
                    path = os.path.join(dirpath, name.removesuffix(SIDECAR))
                    with contextlib.suppress(OSError):
                        st = os.stat(path)
                        rel = os.path.relpath(path, root).replace(os.sep, "/")
                        out[rel] = (st.st_size, st.st_atime)
        return out

    def note_served(self, stored: Stored) -> None:
        """Record a use as the file's atime, keeping its mtime (the ETag depends on it)."""
        if stored.path is None:
            return
        with contextlib.suppress(OSError):
            st = os.stat(stored.path)
            os.utime(stored.path, ns=(time.time_ns(), st.st_mtime_ns))

    def close(self) -> None:
        if self.tree is not None:
            self.tree.close()


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, _platform.READ)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
