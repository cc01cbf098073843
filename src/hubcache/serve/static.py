"""What a request path means in the served directory, and nothing outside it.

``hubcache serve DIR`` answers, for a request path ``/P``:

* ``/P?tf-hub-format=compressed`` (or ``uncompressed``, see below) -> the archive
  ``DIR/P.tar.gz`` (or ``.tgz``, ``.tar``, ``.tar.bz2``, ``.tar.xz``, ``.zip``), or the folder
  ``DIR/P/`` packed once as a ``.tar.gz`` into a private temporary folder;
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

import os
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
        self._packed: dict[str, str] = {}
        self._pack_lock = threading.Lock()
        self._tmp: Optional[str] = None

    def inside(self, path: str) -> Optional[str]:
        """``path`` with links resolved, when it exists and stays inside the directory."""
        real = os.path.realpath(path)
        if real != self.real and not real.startswith(self.real + os.sep):
            return None
        return real if os.path.exists(real) else None

    def file(self, parts: list[str]) -> Optional[str]:
        """The regular file at ``parts``, when it is one and stays inside the directory."""
        found = self.inside(os.path.join(self.directory, *parts))
        return found if found and os.path.isfile(found) else None

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
            found = self.inside(local + suffix)
            if found and os.path.isfile(found):
                return found
        if not pack:
            return None
        found = self.inside(local)
        if found and os.path.isdir(found):
            return self._pack(found)
        return None

    def _pack(self, folder: str) -> str:
        """A ``.tar.gz`` of ``folder``, made once. Links inside it are not followed out of
        the directory: a member is added only when it resolves inside it."""
        with self._pack_lock:
            packed = self._packed.get(folder)
            if packed is None:
                if self._tmp is None:
                    self._tmp = tempfile.mkdtemp(prefix="hubcache-serve-")
                packed = os.path.join(self._tmp, f"{len(self._packed)}.tar.gz")
                with tarfile.open(packed, "w:gz") as archive:
                    for dirpath, dirs, files in os.walk(folder):
                        dirs.sort()
                        for name in sorted(dirs) + sorted(files):
                            full = os.path.join(dirpath, name)
                            if self.inside(full) is None or os.path.islink(full):
                                continue  # a link: never followed, never stored
                            rel = os.path.relpath(full, folder)
                            archive.add(full, arcname=rel, recursive=False)
                self._packed[folder] = packed
            return packed

    def close(self) -> None:
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
