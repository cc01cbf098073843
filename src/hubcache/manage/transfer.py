"""Air-gapped transfer: complete entries into one tar (``export``) and back (``import``).

The archive holds, per entry, exactly the layout of docs/cache-format.md (``<key>/...``,
``<key>.descriptor.txt``, ``<key>.manifest.json``), plain ustar/pax, uncompressed (models are
already dense), regular files and directories only. It is written to ``OUT.<pid>.part`` and
renamed, so a crash never leaves a truncated archive under the final name.

Import trusts nothing in the archive: it is extracted by the same safe streaming extractor
as any download (``archive.extract``: no links, no ``..``, limits) into one staging folder inside
the root, which hashes every file on the way. Each entry is then checked against its own
manifest (same file set, sizes and sha256, key == sha1(handle)) and published with the
usual atomic rename under the entry's lock. An entry already complete is left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

from .. import _platform
from .._config import load_config
from .._errors import (
    ArchiveError,
    CacheDirError,
    ConfigurationError,
    CorruptArchiveError,
    DamagedEntryError,
    EntryInUseError,
    HubcacheError,
    hide_credentials,
)
from .._handles import cache_key
from ..local.entry import Entry, read_quietly
from ..local.lock import DownloadLock, new_uid
from ..local.manifest import Manifest
from ..local.publish import publish
from ..local.root import ensure_root, remove_made


@dataclasses.dataclass(frozen=True)
class Imported:
    """What ``import`` did with one entry of the archive (``status``), and why if rejected."""

    key: str
    handle: str
    status: str  # "imported" | "already cached" | "rejected"
    reason: str = ""


def not_exportable(key: str, state: str, reason: str = "") -> DamagedEntryError:
    """Why the entry ``key`` is refused: only complete entries are exported, so the other
    machine gets exactly what its manifest proves (and ``import`` checks)."""
    if state == "legacy":
        why = (
            "has no manifest (made by tensorflow_hub or by hand), so nothing proves it whole; "
            "resolve its handle with hubcache once (that adopts it), then export it"
        )
    else:
        why = (
            f"is not a complete entry{f' ({reason})' if reason else ''}; "
            f"`hubcache verify --fix {key}` downloads it again"
        )
    return DamagedEntryError(f"{key} {why}; nothing exported", key=key, state=state)


def export_entries(root: str, keys: Sequence[str], out: str) -> list[str]:
    """Write the complete entries ``keys`` of ``root`` into the tar ``out``; their handles."""
    handles = []
    entries = []
    for key in keys:
        entry = Entry(root, key)
        state = entry.state()
        if state.name != "complete":
            raise not_exportable(key, state.name, state.reason)
        manifest = entry.manifest()
        if manifest is None:  # removed or replaced since its state was read
            raise not_exportable(key, "damaged", "its manifest is unreadable")
        handles.append(manifest.handle or key)
        entries.append((entry, manifest))

    def add(tar: tarfile.TarFile) -> None:
        for entry, manifest in entries:
            add_entry(
                tar,
                entry.key,
                entry.path,
                manifest,
                _read(entry.descriptor_path),
                _read(entry.manifest_path),
            )

    write_archive(out, add)
    return handles


def write_archive(out: str, add: Callable[[tarfile.TarFile], None]) -> None:
    """Let ``add`` fill a tar written to ``OUT.<pid>.part``, renamed to ``out`` when whole.

    ``out`` is the user's argument: a folder that does not exist or cannot be written is a
    usage error (exit 2); a full disk there is CacheDirError's "full" (exit 6)."""
    if os.path.islink(out) or (os.path.lexists(out) and not os.path.isfile(out)):
        # the final rename would replace it: a device, a FIFO, a folder or a link is not
        # ours to destroy (a regular file is: the user named it as the output)
        raise ConfigurationError(
            f"{out} exists and is not a regular file; give the path of a new or regular file"
        )
    part = f"{out}.{os.getpid()}.part"
    try:
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            add(tar)
        _platform.retry_busy(os.replace, part, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(part)
        if isinstance(exc, OSError) and not isinstance(exc, HubcacheError):
            raise _write_error(out, exc) from None
        raise


def _write_error(out: str, exc: OSError) -> HubcacheError:
    if exc.errno == errno.EFBIG:  # a size limit, not a full disk (as _disk says for the cache)
        return CacheDirError(
            f"{out} reached the largest file this process may write ({exc.strerror}: a "
            "`ulimit -f` limit, or a filesystem such as FAT32 that caps files at 4 GiB); "
            "raise the limit or export elsewhere",
            errno=exc.errno,
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheDirError(
            f"no space left to write {out} ({exc.strerror}); free space or export elsewhere",
            errno=exc.errno,
        )
    return ConfigurationError(
        f"cannot write {out}: {exc.strerror or exc}; give a path in an existing, writable folder",
        errno=exc.errno,
    )


def add_entry(  # noqa: PLR0917 - the five parts of one entry
    tar: tarfile.TarFile,
    key: str,
    tree: str,
    manifest: Manifest,
    descriptor: bytes,
    manifest_bytes: bytes,
) -> None:
    """One entry, as docs/cache-format.md lays it out: ``<key>/...`` from the folder ``tree``."""
    for rel in sorted(manifest.dirs):
        _add(tar, os.path.join(tree, rel) if rel else tree, key, rel)
    for rel in manifest.files:
        _add(tar, os.path.join(tree, rel), key, rel)
    _add_bytes(tar, f"{key}.descriptor.txt", descriptor)
    _add_bytes(tar, f"{key}.manifest.json", manifest_bytes)


def _add(tar: tarfile.TarFile, path: str, key: str, rel: str) -> None:
    info = tar.gettarinfo(path, arcname=f"{key}/{rel}" if rel else key)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir():
        tar.addfile(info)
    elif info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        raise DamagedEntryError(
            f"{path} is not a regular file, which no entry holds; nothing exported"
        )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())  # not 1970: when the export was written
    tar.addfile(info, io.BytesIO(data))


def _read(path: str) -> bytes:
    try:
        return read_quietly(path)  # reading the manifest must not count as a use
    except FileNotFoundError:
        return b""


def import_archive(root: str, archive: str, *, fsync: Optional[bool] = None) -> list[Imported]:
    """Verify and publish every entry of ``archive`` (made by ``export``) into ``root``."""
    if os.path.isdir(archive):
        raise ConfigurationError(
            f"{archive} is a directory; give the .tar file that `hubcache export` wrote"
        )
    config = load_config(cache_dir=root)
    made = _ensure_writable(root)
    fsync = config.fsync if fsync is None else fsync
    staging = os.path.join(root, f"hubcache-import.{new_uid()}.tmp")
    os.mkdir(staging, 0o700)
    try:
        files, keys = extract_export(archive, staging, config.limits, fsync)
        return [
            _import_one(root, staging, key, files, fsync=fsync, lease=config.lock_lease)
            for key in keys
        ]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        remove_made(made)  # an import that published nothing leaves no root it made


def _ensure_writable(root: str) -> list[str]:
    """``ensure_root`` (the folders it made), with the reason worded for an import (its own
    words are a resolve's: "this model is missing and cannot be downloaded")."""
    try:
        return ensure_root(root, private=False)
    except CacheDirError as exc:
        if os.path.isdir(root) and not os.access(root, os.W_OK | os.X_OK):
            raise CacheDirError(
                f"cannot import into {root}: the folder is read-only for this process; "
                "import into a writable cache (--cache-dir DIR or TFHUB_CACHE_DIR)",
                **exc.facts,
            ) from None
        raise CacheDirError(f"cannot import into {root}: {exc.message}", **exc.facts) from None


def extract_export(
    archive: str, staging: str, limits: Any, fsync: bool
) -> tuple[dict[str, list[Any]], list[str]]:
    """Extract an ``export`` archive safely into ``staging``: (files with size and sha256,
    the keys it holds). The archive is untrusted: same extractor as any download."""
    from ..archive.extract import extract
    from ..fetch.source import LocalFileSource

    source = LocalFileSource(os.path.abspath(archive), archive)
    try:
        source.open()
        result = extract(source, staging, limits=limits, fsync=fsync, progress=None)
    except ArchiveError as exc:
        if archive in exc.message:
            raise
        # the extractor's words name a member or the tar's end, not which file was refused
        raise type(exc)(
            f"cannot import {archive}: {exc.message}; it is damaged or not what "
            "`hubcache export` wrote: export it again",
            **exc.facts,
        ) from None
    finally:
        source.close()
    keys = sorted({rel.split(".", 1)[0] for rel in result.files if rel.endswith(".manifest.json")})
    if not keys:
        raise CorruptArchiveError(f"{archive} holds no hubcache entry (no *.manifest.json)")
    return result.files, keys


REJECTED = (ValueError, KeyError, TypeError, OSError, ArchiveError)  # what read_checked raises


def read_checked(staging: str, key: str, extracted: dict[str, list[Any]]) -> tuple[str, Manifest]:
    """(handle, manifest) of one extracted entry, checked against what was extracted."""
    manifest = Manifest.from_json(read_quietly(os.path.join(staging, f"{key}.manifest.json")))
    if manifest is None or not manifest.handle:
        raise CorruptArchiveError(f"{key}: its manifest is not one hubcache can read")
    _check(key, manifest.handle, manifest, extracted)
    return manifest.handle, manifest


def _import_one(
    root: str,
    staging: str,
    key: str,
    extracted: dict[str, list[Any]],
    *,
    fsync: bool,
    lease: float,
) -> Imported:
    try:
        handle, manifest = read_checked(staging, key, extracted)
    except REJECTED as exc:
        return Imported(key, "", "rejected", str(exc))
    entry = Entry(root, key)
    if entry.is_complete():
        return Imported(key, handle, "already cached")
    lock = DownloadLock(entry.lock_path, entry.staging, handle=handle, lease=lease, timeout=0)
    if not lock.try_acquire():
        raise EntryInUseError(
            f"{handle} is being downloaded by another process; import again later", handle=handle
        )
    try:
        state = entry.state()
        if state.name == "complete":
            return Imported(key, handle, "already cached")
        if state.name != "missing":
            entry.move_aside(lock.uid)
        tree = entry.staging(lock.uid)
        _platform.retry_busy(os.rename, os.path.join(staging, key), tree)
        if not publish(entry, tree, manifest, fsync=fsync):
            shutil.rmtree(tree, ignore_errors=True)
            return Imported(key, handle, "already cached")
    finally:
        lock.release()
    return Imported(key, handle, "imported")


def _check(key: str, handle: str, manifest: Manifest, extracted: dict[str, list[Any]]) -> None:
    """The extracted tree of ``key`` must be exactly what its manifest lists."""
    # A handle whose credentials were hidden (``user:***@``) no longer hashes to its key:
    # the manifest's own ``key`` field must agree instead.
    hidden = "***@" in handle and hide_credentials(handle) == handle
    if cache_key(handle) != key and not (hidden and manifest.key == key):
        raise CorruptArchiveError(f"{key}: its manifest names {handle}, whose key differs")
    prefix = key + "/"
    got = {rel[len(prefix) :]: value for rel, value in extracted.items() if rel.startswith(prefix)}
    want = manifest.files
    if set(got) != set(want):
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise CorruptArchiveError(f"{handle}: files differ (missing {missing}, unexpected {extra})")
    for rel, (size, digest) in want.items():
        if got[rel][0] != size or (digest and got[rel][1] != digest):
            raise CorruptArchiveError(f"{handle}: {rel} does not match its manifest")
