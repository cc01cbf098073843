"""What a request path means in the served directory, and nothing outside it.

``hubcache serve DIR`` answers, for a request path ``/P``:

* ``/P?tf-hub-format=compressed`` (or ``uncompressed``, see below) -> the archive
  ``DIR/P.tar.gz`` (or ``.tgz``, ``.tar``, ``.tar.bz2``, ``.tar.xz``, ``.zip``), or, when
  ``DIR/P/`` is a model folder (it holds ``saved_model.pb``, ``saved_model.pbtxt`` or
  ``tfhub_module.pb``), that folder packed as a ``.tar.gz`` into a private temporary folder:
  without dot-names (``.env``, ``.git/``) or links, packed again when a file in it changes
  (its names, sizes and times are compared on every request). Never in mirror mode;
* ``/P`` where ``DIR/P`` is an archive file -> that file;
* anything else -> nothing (404).

``tf-hub-format=uncompressed`` is answered with the archive too: tensorflow_hub's
uncompressed protocol wants a ``gs://`` location (a 303), which a directory cannot give, and
hubcache's client takes an archive answer as "use the compressed protocol"; so
``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED`` works against this server with hubcache.

Containment: a path is served only when, after every symbolic link is resolved, it is still
inside ``DIR`` (``ln -s /etc DIR/evil`` serves nothing), and no component starts with a dot
(the mirror keeps its partial downloads and locks in dot-folders).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import tempfile
import threading
import urllib.parse
from typing import Optional

from .. import _platform
from .._handles import ARCHIVE_SUFFIXES

# tried in this order for /P?tf-hub-format=...; the mirror stores under these names too
STORED_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
FORMAT_SUFFIX = {"gzip": ".tar.gz", "tar": ".tar", "bz2": ".tar.bz2", "xz": ".tar.xz"}
FORMAT_SUFFIX["zip"] = ".zip"
CONTENT_TYPES = {".zip": "application/zip", ".tar": "application/x-tar", ".gz": "application/gzip"}
CONTENT_TYPES |= {
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
}
MODEL_MARKERS = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")  # packable folders
SIDECAR = ".sha256"  # "<hex>  <name>\n" next to each archive the mirror stored (sha256sum -c)


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def request_parts(path: str) -> Optional[list[str]]:
    """The components of a request path, or None when it may not be served at all
    ("..", a dot-component, a NUL)."""
    rel = urllib.parse.unquote(path)
    if "\x00" in rel:
        return None
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p.startswith(".") or "\\" in p or _platform.name_problem(p) for p in parts):
        return None  # on Windows "C:" or "NUL" would leave DIR or name a device
    return parts


def wanted_format(query: str) -> Optional[str]:
    """``compressed`` / ``uncompressed`` when the query asks for the TF Hub protocol."""
    for key, value in urllib.parse.parse_qsl(query):
        if key == "tf-hub-format" and value in ("compressed", "uncompressed"):
            return value
    return None


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


class StaticTree:
    """Maps request paths to files under one directory (module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.real = os.path.realpath(self.directory)
        self._packed: dict[str, tuple[int, str]] = {}  # folder -> (its signature, the pack)
        self._pack_lock = threading.Lock()  # guards the two dicts and the counter only
        self._folder_locks: dict[str, threading.Lock] = {}
        self._count = 0
        self._tmp: Optional[str] = None

    def inside(self, path: str) -> Optional[str]:
        """``path`` with links resolved, when it exists and stays inside the directory."""
        real = os.path.realpath(path)
        if real != self.real and not real.startswith(self.real + os.sep):
            return None
        return real if os.path.exists(real) else None

    def _file_at(self, path: str) -> Optional[str]:
        """``path`` resolved, when it is a regular file inside the directory. One ``lstat``
        first: most candidates do not exist. A regular file whose folders below the
        directory are no links either is its own resolved path (counted from the resolved
        directory), which costs a call per folder below it; only where a link is on the
        way is the whole path resolved (a call per component from the root, in Python:
        the larger part of a stored response's cost when it was done for all)."""
        rel = path[len(self.directory) :] if path.startswith(self.directory + os.sep) else ""
        try:
            st = os.lstat(path)
        except (OSError, ValueError):
            return None
        if rel and stat.S_ISREG(st.st_mode) and self._plain_folders(rel):
            return self.real + rel
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            return None
        if not os.path.isfile(path):
            return None
        real = os.path.realpath(path)  # a link to a file: where it points must be inside
        if not real.startswith(self.real + os.sep):
            return None
        return real if real == path or os.path.isfile(real) else None

    def _plain_folders(self, rel: str) -> bool:
        """Whether every folder of ``rel`` (``/a/b/name`` below the resolved directory) is
        a folder, not a link."""
        at = self.real
        for name in rel.split(os.sep)[1:-1]:
            at = os.path.join(at, name)
            try:
                if not stat.S_ISDIR(os.lstat(at).st_mode):
                    return False
            except OSError:
                return False
        return True

    def file(self, parts: list[str]) -> Optional[str]:
        """The regular file at ``parts``, when it is one and stays inside the directory."""
        return self._file_at(os.path.join(self.directory, *parts))

    def lookup(self, parts: list[str], fmt: Optional[str], *, pack: bool = True) -> Optional[str]:
        """The file to send for a request, or None. Packs a folder on first use (unless
        ``pack`` is False: a mirror never packs)."""
        if not parts:
            return None
        if is_archive_name(parts[-1]):
            return self.file(parts)
        if fmt is None:
            return None
        local = os.path.join(self.directory, *parts)
        for suffix in STORED_SUFFIXES:
            found = self._file_at(local + suffix)
            if found is not None:
                return found
        if not pack:
            return None
        found = self.inside(local)
        if found and os.path.isdir(found):
            return self._pack(found)
        return None

    def _pack(self, folder: str) -> Optional[str]:
        """A ``.tar.gz`` of ``folder`` (module docstring), made again when the folder has
        changed; None when the folder holds no SavedModel. Each folder has its own lock, so
        one large pack holds up only the requests for that folder."""
        if not any(os.path.isfile(os.path.join(folder, n)) for n in MODEL_MARKERS):
            return None
        with self._pack_lock:
            lock = self._folder_locks.setdefault(folder, threading.Lock())
        with lock:
            members = self._members(folder)
            signature = hash(tuple(members))
            packed = self._packed.get(folder)
            if packed is not None and packed[0] == signature:
                return packed[1]
            with self._pack_lock:
                if self._tmp is None:
                    self._tmp = tempfile.mkdtemp(prefix="hubcache-serve-")
                self._count += 1
                path = os.path.join(self._tmp, f"{self._count}.tar.gz")
            with tarfile.open(path, "w:gz", compresslevel=6) as archive:
                for rel, full, _size, _mtime in members:
                    archive.add(full, arcname=rel, recursive=False)
            self._packed[folder] = (signature, path)
            if packed is not None:  # a response still sending it keeps its open file
                with contextlib.suppress(OSError):
                    os.unlink(packed[1])
            return path

    def _members(self, folder: str) -> list[tuple[str, str, int, int]]:
        """What a pack of ``folder`` holds, in order: (name, path, size, mtime_ns) of every
        folder and file inside it, neither dot-names (``.env``, ``.git``) nor links."""
        out: list[tuple[str, str, int, int]] = []
        for dirpath, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in dirs + sorted(f for f in files if not f.startswith(".")):
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode) or self.inside(full) is None:
                    continue  # a link: never followed, never stored
                rel = os.path.relpath(full, folder).replace(os.sep, "/")
                out.append((rel, full, st.st_size, st.st_mtime_ns))
        return out

    def close(self) -> None:
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
