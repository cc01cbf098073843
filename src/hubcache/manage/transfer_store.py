"""``export`` and ``import`` on a root behind the storage seam (gs://, s3://, memory://).

The archive format is the one of ``manage.transfer`` (an archive made from a bucket imports into
a laptop's cache and back). What differs is how entries come and go:

* export copies each complete entry into local temporary space with
  ``Storage.download_entry`` (parallel, every file checked against the manifest's size and
  sha256 on the way), adds it to the tar, and deletes the copy before the next entry: the
  archive holds exactly what was verified, and temporary space peaks at one entry;
* import extracts and checks the archive locally, like a local import, then publishes each
  entry the way a remote resolve does: under ``<key>.lock``, debris retired, descriptor,
  files in parallel, manifest LAST and only if absent (``Storage.upload_entry``).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence

from .._config import load_config
from .._errors import EntryInUseError
from ..local.publish import descriptor_text
from ..store.lock import StorageLock
from ..store.storage import Storage
from .transfer import (
    REJECTED,
    Imported,
    add_entry,
    extract_export,
    not_exportable,
    read_checked,
    write_archive,
)


def export_from_store(store: Storage, keys: Sequence[str], out: str) -> list[str]:
    """Write the complete entries ``keys`` of ``store`` into the tar ``out``; their handles."""
    manifests = []
    for key in keys:
        manifest = store.complete_manifest(key)
        if manifest is None:
            raise not_exportable(key, "incomplete")
        manifests.append((key, manifest))

    def add(tar: tarfile.TarFile) -> None:
        for key, manifest in manifests:
            with tempfile.TemporaryDirectory(prefix="hubcache-export-") as tmp:
                tree = os.path.join(tmp, key)
                os.mkdir(tree)
                store.download_entry(key, manifest, tree, fsync=False)  # a temporary copy
                add_entry(
                    tar,
                    key,
                    tree,
                    manifest,
                    store.read(f"{key}.descriptor.txt") or b"",
                    store.read(f"{key}.manifest.json") or b"",
                )

    write_archive(out, add)
    return [manifest.handle or key for key, manifest in manifests]


def import_into_store(store: Storage, archive: str, *, lease: float) -> list[Imported]:
    """Verify the entries of ``archive`` locally, then publish each into ``store``."""
    config = load_config(cache_dir=store.url)
    with tempfile.TemporaryDirectory(prefix="hubcache-import-") as staging:
        files, keys = extract_export(archive, staging, config.limits, fsync=False)
        return [_import_one(store, staging, key, files, lease) for key in keys]


def _import_one(
    store: Storage, staging: str, key: str, files: dict[str, list[object]], lease: float
) -> Imported:
    try:
        handle, manifest = read_checked(staging, key, files)
    except REJECTED as exc:
        return Imported(key, "", "rejected", str(exc))
    if store.complete_manifest(key) is not None:
        return Imported(key, handle, "already cached")
    lock = StorageLock(store, key, handle=handle, lease=lease, timeout=0)
    if not lock.try_acquire():
        raise EntryInUseError(
            f"{handle} is being downloaded by another process; import again later", handle=handle
        )
    try:
        if store.complete_manifest(key) is not None:  # published while we took the lock
            return Imported(key, handle, "already cached")
        store.retire(key)  # a damaged entry or the debris of an unfinished upload
        descriptor = os.path.join(staging, f"{key}.descriptor.txt")
        text = descriptor_text(handle)
        if os.path.isfile(descriptor):
            with open(descriptor, encoding="utf-8", errors="replace") as f:
                text = f.read() or text
        if not store.upload_entry(key, os.path.join(staging, key), manifest, text):
            return Imported(key, handle, "already cached")
    finally:
        lock.release()
        shutil.rmtree(os.path.join(staging, key), ignore_errors=True)
    return Imported(key, handle, "imported")
