"""Download: fetch one archive, extract it into a staging folder, verify it, publish it.

The miss half of ``resolve`` (see ``_resolve``): imported only when something must be
downloaded, so a process that only hits the cache never loads the HTTP client.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Optional

from . import _faults
from ._config import Config
from ._errors import ChecksumMismatchError, DownloadError, HubcacheError
from ._handles import Handle
from .archive.extract import Extracted, extract
from .fetch.http import HTTPSource
from .fetch.progress import Progress
from .fetch.source import FsspecSource, LocalFileSource, RestartDownloadError, Source
from .local.entry import Entry, build_manifest
from .local.publish import discard, publish

log = logging.getLogger(__name__)


def download(handle: Handle, entry: Entry, config: Config, uid: str, sha256: Optional[str]) -> None:
    """Fetch, extract, verify and publish one archive (under the lock)."""
    staging = entry.staging(uid)
    try:
        manifest = stage(handle, entry.key, staging, config, sha256)
        if not publish(entry, staging, manifest, fsync=config.fsync):
            log.info("another process published %s first; using its copy", handle.raw)
    finally:
        with contextlib.suppress(FileNotFoundError):
            discard(staging)


def stage(
    handle: Handle, key: str, staging: str, config: Config, sha256: Optional[str]
) -> dict[str, Any]:
    """Fetch and extract into ``staging`` (created here); return the entry's manifest.
    Shared by local publishing and by remote roots (``store.remote``), which upload the folder."""
    for attempt in range(config.retries + 1):
        source = open_source(handle, config)
        progress: Optional[Progress] = None
        _faults.fs.mkdir(staging, 0o755)
        done = False
        try:
            source.open()
            progress = Progress(config.progress, source.total, _label(handle))
            result = extract(
                source, staging, limits=config.limits, fsync=config.fsync, progress=progress
            )
            _verify_pin(handle, result, sha256)
            done = True
            return build_manifest(
                handle=handle.raw,
                key=key,
                files=result.files,
                dirs=result.dirs,
                source=source.display,
                etag=source.etag,
                last_modified=source.last_modified,
                archive={
                    "format": result.format,
                    "bytes": result.archive_bytes,
                    "sha256": result.archive_sha256,
                },
            )
        except RestartDownloadError as exc:
            if attempt == config.retries:
                raise DownloadError(
                    f"the download of {handle.raw} could not be completed after "
                    f"{attempt + 1} attempts from the start: {exc}",
                    handle=handle.raw,
                    attempts=attempt + 1,
                ) from None
            log.warning("restarting the download of %s from the start: %s", handle.raw, exc)
        except HubcacheError as exc:
            if exc.handle is None:
                exc.handle = handle.raw
                exc.message = f"cannot resolve {handle.raw}: {exc.message}"
                exc.args = (exc.message,)
            raise
        finally:
            source.close()
            if progress is not None:
                progress.close()
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    discard(staging)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _verify_pin(handle: Handle, result: Extracted, sha256: Optional[str]) -> None:
    if sha256 is not None and result.archive_sha256 != sha256.lower():
        raise ChecksumMismatchError(
            f"the archive of {handle.raw} has sha256 {result.archive_sha256}, not the pinned "
            f"{sha256}; nothing was cached",
            handle=handle.raw,
            expected=sha256,
            actual=result.archive_sha256,
        )


def open_source(handle: Handle, config: Config) -> Source:
    if config.mirrors or config.no_origin:
        from .fetch.mirrors import MirroredSource

        return MirroredSource(handle, config, _direct_source)
    return _direct_source(handle, config)


def _direct_source(handle: Handle, config: Config) -> Source:
    if handle.scheme in ("http", "https"):
        return HTTPSource(handle.location, handle.raw, config)
    if handle.scheme:
        return FsspecSource(handle.location, handle.raw)
    return LocalFileSource(os.path.abspath(os.path.expanduser(handle.location)), handle.raw)


def _label(handle: Handle) -> str:
    text = handle.raw.split("?", 1)[0]
    return text if len(text) <= 60 else "..." + text[-57:]
