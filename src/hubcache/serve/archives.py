"""Where the mirror keeps archives: a local directory, or a bucket (``gs://``, ``s3://``).

Layout, the same on both (request path ``/P`` -> ``P`` + the suffix of the archive's
format; a request for an archive name keeps that name)::

    DIR/
      google/nnlm/1.tar.gz           the upstream's bytes, exactly
      google/nnlm/1.tar.gz.sha256    "<hex>  1.tar.gz" (``sha256sum -c`` reads it)
      .hubcache-archives/x/1.tar.gz  a request that named an archive (``/x/1.tar.gz``), kept
                                     apart: the model path ``/x/1`` is kept as ``x/1.tar.gz``
                                     and the two are different upstream objects
      .hubcache-kaggle/o/m/fw/var/3/archive      a Kaggle model version's archive, kept under the
                                     name the Kaggle front gave it (``serve.kaggleapi``)
      .hubcache-kaggle/o/m/fw/var/3/files/PATH   one file of that version, as it came
      .hubcache-partial/<host>.<pid>.<uid>.part   a fill in progress (local DIR only)
      .hubcache-locks/<sha1>.lock    who is filling what, so replicas fetch once

Crash safety: an archive is written under ``.hubcache-partial``, verified, fsynced, then
its ``.sha256`` is written and the archive is renamed into place: a request path names
either nothing or a whole verified archive, whenever the process dies. On a bucket there
is no rename: the archive object appears only when its upload completes, and it counts as
stored only once its ``.sha256`` (written after it) exists. Dot-folders are never served
by name (a request path cannot start a component with a dot); the store reads them itself.

Nothing is written through a symbolic link: a name whose folders inside ``DIR`` are links
(or files), or that is itself a link, is refused before any upstream byte is fetched
(:meth:`ArchiveStore.unstorable`), and again, folder by folder, when it is kept. Names too
long or too deep to be kept are refused the same way, so no fill downloads an archive it
cannot keep.

Lookups hand out an open file (:meth:`ArchiveStore.open_found`): eviction or a second
process removing the name while it is sent changes nothing for that response.

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
import stat
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Optional

from .. import _platform
from .._config import Config
from .._errors import CacheDirError, ConfigurationError
from ..local.holder import new_uid, parse_holder
from ..local.root import unsafe_reason
from ..serve.ranges import file_etag
from ..serve.static import FORMAT_SUFFIX, SIDECAR, STORED_SUFFIXES, StaticTree, is_archive_name
from ..store.backend import open_storage
from ..store.lock import StorageLock
from ..store.storage import LocalStorage, Storage

PARTIAL = ".hubcache-partial"
LOCKS = ".hubcache-locks"
ARCHIVES = ".hubcache-archives"  # fills of archive paths (module docstring)
KAGGLE = ".hubcache-kaggle"  # Kaggle objects, kept by the name given (module docstring)
_STALE_PARTIAL = 6 * 3600.0  # a partial from another host older than this is debris
_NAME_MAX = 255  # bytes of one path component (Linux, macOS; characters on Windows)
_OBJECT_NAME_MAX = 1024  # bytes of an object name on GCS and S3
RECHECK = 1.0  # seconds a local lookup is reused for, its file compared (_reopened)
KNOWN_MAX = 4096  # lookups remembered at most (then forgotten at once, and made again)


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """One archive the store holds, as a response needs it."""

    name: str  # relative to the store, "/"-separated
    size: int
    etag: str
    mtime: float
    path: Optional[str]  # a local file (sendfile), or None on a bucket


@dataclass(frozen=True)
class Found:
    """A stored archive and, for a local one, the file already open: what a response sends
    even if the name is evicted or replaced meanwhile. The receiver closes ``file``."""

    stored: Stored
    file: Optional[IO[bytes]]


def stored_name(base: str, fmt: Optional[str]) -> str:
    """Where a fill of request path ``base`` is kept: an archive path under ``ARCHIVES``,
    a model path as the path plus the suffix of its format (``fmt``, from the bytes)."""
    if is_archive_name(base):
        return f"{ARCHIVES}/{base}"
    return base + FORMAT_SUFFIX[fmt or "gzip"]


class ArchiveStore:
    """The mirror's archives on a directory or a bucket (module docstring).

    ``mirror``: the store of a pull-through server, where only what it fetched (and
    archives an operator put there) answers; folders are never packed."""

    def __init__(self, location: str, *, mirror: bool = False) -> None:
        self.location = location
        self.mirror = mirror
        self.storage: Storage = open_storage(location)
        self.local = isinstance(self.storage, LocalStorage)
        self._claim: Optional[tuple[str, str]] = None  # claim_eviction's file, and its text
        # request -> (resolved path, (dev, ino, size, mtime_ns), Stored, when looked up)
        self._known: dict[tuple[Optional[str], ...], tuple[str, tuple[int, ...], Stored, float]]
        self._known = {}
        if self.local:
            self.tree: Optional[StaticTree] = StaticTree(location)
            self.spool = os.path.join(self.tree.directory, PARTIAL)
        else:
            self.tree = None
            self.spool = os.path.join(
                tempfile.gettempdir(), f"hubcache-mirror-{_platform.user_id()}"
            )

    # -- finding ---------------------------------------------------------------------------
    def _local_path(
        self, tree: StaticTree, parts: list[str], fmt: Optional[str], pack: bool
    ) -> Optional[str]:
        """The local file answering a request (static rules; a mirror packs nothing and
        keeps archive paths apart), or None."""
        if not self.mirror:
            return tree.lookup(parts, fmt, pack=pack)
        if is_archive_name(parts[-1]):
            kept = tree.file([ARCHIVES, *parts])
            if kept is not None:
                return kept
            placed = tree.file(parts)  # put there by hand: no checksum beside it
            if placed is not None and not os.path.exists(placed + SIDECAR):
                return placed
            return None
        return tree.lookup(parts, fmt, pack=False) if fmt is not None else None

    def open_found(
        self, parts: list[str], fmt: Optional[str], *, pack: bool = False
    ) -> Optional[Found]:
        """The archive answering a request, opened, or None. Local: what ``static`` serves
        (module docstring of ``static``; a model folder only with ``pack``, which may take
        long: the server asks on a pool of its own); bucket: stored ones."""
        if self.tree is None:
            stored = self._find_object(parts, fmt)
            return Found(stored, None) if stored is not None else None
        key = (*parts, fmt)
        known = self._known.get(key)
        if known is not None and time.monotonic() - known[3] < RECHECK:
            found = self._reopened(*known[:3])
            if found is not None:
                return found
        path = self._local_path(self.tree, parts, fmt, pack)
        if path is None:
            self._known.pop(key, None)
            return None
        found = self._opened(self.tree, path)
        if found is not None and found.file is not None and not pack:
            if len(self._known) >= KNOWN_MAX:
                self._known.clear()
            st = os.fstat(found.file.fileno())
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            self._known[key] = (path, ident, found.stored, time.monotonic())
        return found

    def _reopened(self, path: str, ident: tuple[int, ...], stored: Stored) -> Optional[Found]:
        """The file a recent lookup found, if the same file is still there: the lookup's
        rules (static suffixes, folders that are no links, the mirror's separate names)
        cost about 10 us a request in Python, the largest part of a stored hit's own
        work; opening the resolved path without following a link and comparing device,
        inode, size and time costs one ``open`` and one ``fstat``. A file replaced by a
        fill, evicted or moved fails the comparison and is looked up again; so is any
        lookup older than ``RECHECK``, which bounds how long a change that keeps the file
        (a new file at an earlier suffix, a sidecar put beside an archive) goes unseen."""
        try:
            fd = os.open(path, _platform.READ | _platform.O_NOFOLLOW)
        except OSError:
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != ident:
            os.close(fd)
            return None
        return Found(stored, open(fd, "rb", buffering=0))

    def _opened(self, tree: StaticTree, path: str) -> Optional[Found]:
        try:
            fd = os.open(path, _platform.READ | _platform.O_NOFOLLOW)
        except OSError:
            return None  # removed (evicted, replaced) since the lookup: not here
        # sendfile reads it, never Python: no buffer. Closed by the response that sends it
        file = open(fd, "rb", buffering=0)  # noqa: SIM115
        st = os.fstat(fd)
        real = tree.real + os.sep  # lookups answer resolved paths inside it
        rel = path[len(real) :] if path.startswith(real) else os.path.relpath(path, real)
        name = rel.replace(os.sep, "/")
        etag = file_etag(st.st_size, st.st_mtime_ns)
        return Found(Stored(name, st.st_size, etag, st.st_mtime, path), file)

    def find(self, parts: list[str], fmt: Optional[str]) -> Optional[Stored]:
        """Whether a request has an answer here (the fill's checks under the lock)."""
        found = self.open_found(parts, fmt)
        if found is None:
            return None
        if found.file is not None:
            found.file.close()
        return found.stored

    def open_named(self, name: str) -> Optional[Found]:
        """An object the mirror kept under exactly ``name`` (a Kaggle object: no request
        path maps to it, and it counts only with its ``.sha256``), opened, or None."""
        if self.tree is None:
            stored = self._find_object([], None, [name])
            return Found(stored, None) if stored is not None else None
        parts = name.split("/")
        path = self.tree.file(parts)
        if path is None or self.tree.file([*parts[:-1], parts[-1] + SIDECAR]) is None:
            return None
        return self._opened(self.tree, path)

    def find_named(self, name: str) -> Optional[Stored]:
        found = self.open_named(name)
        if found is None:
            return None
        if found.file is not None:
            found.file.close()
        return found.stored

    def _find_object(
        self, parts: list[str], fmt: Optional[str], names: Optional[list[str]] = None
    ) -> Optional[Stored]:
        """The stored object answering a request on a bucket, or the first of ``names``."""
        base = "/".join(parts)
        if names is None:
            if fmt is None and not is_archive_name(base):
                return None
            if is_archive_name(base):
                names = [stored_name(base, None)]
            else:
                names = [base + s for s in STORED_SUFFIXES]
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

    # -- what may be kept ------------------------------------------------------------------
    def unstorable(
        self, base: str, max_depth: int, *, named: bool = False
    ) -> Optional[tuple[int, str]]:
        """Why a fill of request path ``base`` (``named``: of the object kept as exactly
        ``base``) could not be kept, as (HTTP status, reason), or None. Asked before any
        upstream byte is fetched (module docstring)."""
        name = base if named else stored_name(base, None)
        if named or is_archive_name(base):
            finals = [name, name + SIDECAR]
        else:
            finals = [base + s + t for s in STORED_SUFFIXES for t in ("", SIDECAR)]
        worst = max(finals, key=len)
        parts = worst.split("/")
        if len(parts) > max_depth:
            return 414, f"{len(parts)} levels deep (at most {max_depth}: HUBCACHE_MAX_DEPTH)"
        if any(len(os.fsencode(p)) > _NAME_MAX for p in parts):
            return 414, f"a component would be longer than {_NAME_MAX} bytes once stored"
        if self.tree is None:
            full = getattr(self.storage, "_p")(worst)  # noqa: B009 - the backend's own path
            if len(str(full).encode()) > _OBJECT_NAME_MAX:
                return 414, f"longer than {_OBJECT_NAME_MAX} bytes as an object name"
            return None
        root = self.tree.directory
        if len(os.fsencode(os.path.join(root, worst))) > _platform_path_max():
            return 414, "the path would be longer than this system allows"
        path = root
        for part in parts[:-1]:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return None  # nothing there yet: made as real folders when kept
            except OSError as exc:
                return 403, f"{os.path.relpath(path, root)}: {exc.strerror}"
            if not stat.S_ISDIR(st.st_mode):  # lstat: a link to a folder is a link
                what = "symbolic link" if stat.S_ISLNK(st.st_mode) else "file"
                return 403, f"{os.path.relpath(path, root)} in the mirror's folder is a {what}"
        for final in finals:
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(os.path.join(root, *final.split("/"))).st_mode):
                    return 403, f"{final} in the mirror's folder is a symbolic link"
        return None

    def _make_parents(self, tree: StaticTree, name: str) -> str:
        """Create ``name``'s folders one by one, each a real folder (never a link: module
        docstring); returns the full path of ``name``."""
        path = tree.directory
        parts = name.split("/")
        for part in parts[:-1]:
            path = os.path.join(path, part)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise CacheDirError(
                    f"cannot keep {name}: {os.path.relpath(path, tree.directory)} in the "
                    "mirror's folder is a symbolic link or a file; remove it"
                )
        final = os.path.join(path, parts[-1])
        for target in (final, final + SIDECAR):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.lstat(target).st_mode):
                    raise CacheDirError(
                        f"cannot keep {name}: {target} is a symbolic link; remove it"
                    )
        return final

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
            final = self._make_parents(self.tree, name)
            self.storage.write(name + SIDECAR, line)
            if _platform.WINDOWS:
                # the fill holds the partial open for its readers, and Windows renames no
                # open file: copy it (the fill removes the partial when its readers are done)
                self.storage.put_file(part, name)
                os.utime(final, ns=(started_ns, started_ns))
            else:
                os.utime(part, ns=(started_ns, started_ns))
                os.replace(part, final)
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
            top = dirpath == root
            kept = (ARCHIVES, KAGGLE)
            dirs[:] = [d for d in dirs if not d.startswith(".") or (top and d in kept)]
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

    def claim_eviction(self) -> None:
        """Become the one process that evicts in this local DIR, or raise.

        ``--max-size`` keeps its index of sizes and uses in memory, so two processes on one
        DIR would each see half the picture and together keep twice the limit. The claim is
        a file naming this process (``LOCKS/eviction.owner``), created exclusively; one
        left by a dead process on this host is taken over."""
        if self.tree is None:
            return
        folder = os.path.join(self.tree.directory, LOCKS)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "eviction.owner")
        me = f"{socket.gethostname()}.{os.getpid()}.{new_uid()}"
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | _platform.CREATE_NEW_FILE, 0o644)
            except FileExistsError:
                try:
                    with open(path, encoding="utf-8") as f:
                        text = f.read().strip()
                except FileNotFoundError:
                    continue
                holder = parse_holder(text)
                if holder is not None and holder.is_dead_here():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                who = f"process {holder.pid} on {holder.host}" if holder else text[:80]
                raise ConfigurationError(
                    f"{self.tree.directory} is already served with --max-size by {who}; "
                    "one process per DIR may evict (its sizes and uses are in its memory): "
                    f"stop it, drop --max-size here, or remove {path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(me + "\n")
            self._claim = (path, me)
            return

    def close(self) -> None:
        claim = self._claim
        if claim is not None:
            path, me = claim
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8") as f:
                    ours = f.read().strip() == me
                if ours:
                    os.unlink(path)
            self._claim = None
        if self.tree is not None:
            self.tree.close()


def _platform_path_max() -> int:
    """The longest full path this system takes (PATH_MAX; 4096 where it cannot be asked)."""
    try:
        return int(os.pathconf("/", "PC_PATH_MAX"))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError, ValueError):
        return 4096


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, _platform.READ)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
