"""Pick the storage backend for a root: a directory, or fsspec for any other URL.

Kept apart from the backends so that ``storage`` (the interface and the directory backend)
and ``fsspec`` (the URL backend, imported only when such a root is used) never import each
other.
"""

from __future__ import annotations

from typing import Optional

from .storage import LocalStorage, Storage


def open_storage(
    url: str, handle: Optional[str] = None, timeout: Optional[float] = None
) -> Storage:
    """The backend for a root: fsspec for URLs (imported only then), else a directory.
    ``timeout``: the most the first contact with an object store may take (seconds)."""
    if "://" in url and not url.startswith("file://"):
        from .fsspec import FsspecStorage

        return FsspecStorage(url, handle, timeout)
    return LocalStorage(url[len("file://") :] if url.startswith("file://") else url)
