"""Download: fetch one archive, extract it into a staging folder, verify it, publish it.

The miss half of ``resolve`` (see ``_resolve``): imported only when something must be
downloaded, so a process that only hits the cache never loads the HTTP client.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Optional

from . import _faults
from ._config import Config
from ._errors import ChecksumMismatchError, DownloadError, HubcacheError
from ._handles import Handle
from .archive.extract import Extracted, extract
from .fetch.http import HTTPSource
from .fetch.progress import Progress
from .fetch.retry import RetryBudget
from .fetch.source import FsspecSource, LocalFileSource, RestartDownloadError, Source
from .kaggle.signed import KaggleAwareSource, UseLocalCopy
from .local.entry import Entry, build_manifest
from .local.publish import discard, publish

log = logging.getLogger(__name__)


def download(handle: Handle, entry: Entry, config: Config, uid: str, sha256: Optional[str]) -> None:
    """Fetch, extract, verify and publish one archive (under the lock)."""
    staging = entry.staging(uid)
    try:
        manifest = stage(handle, entry.key, staging, config, sha256)
        if not publish(entry, staging, manifest, fsync=config.fsync):
            log.info("another process published %s first; using its copy", handle.shown)
        elif config.kagglehub and manifest.get("kaggle"):
            from .kaggle.kagglehub_cache import publish_entry

            publish_entry(entry.path, manifest["kaggle"])
    finally:
        with contextlib.suppress(FileNotFoundError):
            discard(staging)


def stage(
    handle: Handle, key: str, staging: str, config: Config, sha256: Optional[str]
) -> dict[str, Any]:
    """Fetch and extract into ``staging`` (created here); return the entry's manifest.
    Shared by local publishing and by remote roots (``store.remote``), which upload the folder."""
    if handle.kind == "kaggle":
        from .kaggle.stage import stage_kaggle

        return stage_kaggle(handle, key, staging, config, sha256)
    budget = RetryBudget.of(config)  # one budget for every retry of this download
    attempt = 0
    while True:
        attempt += 1
        source = open_source(handle, config, budget)
        if isinstance(source, KaggleAwareSource):
            source.on_model = _use_local_copy(key, config)
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
            manifest = build_manifest(
                handle=handle.shown,
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
            if getattr(source, "kaggle", None) is not None:  # tfhub.dev -> Kaggle Models
                manifest["kaggle"] = source.kaggle.record()  # type: ignore[attr-defined]
            return manifest
        except UseLocalCopy as found:  # the redirect named a Kaggle model we already have
            from .kaggle.stage import fill_from

            source.close()
            discard(staging)
            done = True
            return fill_from(found.donor, handle, key, staging, found.model)
        except RestartDownloadError as exc:
            cause = f"restarted from the start: {exc}"
            # no wait: a restart answers a changed object, not an overloaded server
            if not budget.pause(handle.shown, cause, wait=0.0):
                raise DownloadError(
                    f"the download of {handle.shown} could not be completed after "
                    f"{attempt} attempts from the start: {exc}{budget.earlier(cause)}",
                    handle=handle.shown,
                    attempts=attempt,
                ) from None
            log.warning("restarting the download of %s from the start: %s", handle.shown, exc)
        except HubcacheError as exc:
            if exc.handle is None:
                exc.handle = handle.shown
                exc.message = f"cannot resolve {handle.shown}: {exc.message}"
                exc.args = (exc.message,)
            raise
        finally:
            source.close()
            if progress is not None:
                progress.close()
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    discard(staging)


def _verify_pin(handle: Handle, result: Extracted, sha256: Optional[str]) -> None:
    if sha256 is not None and result.archive_sha256 != sha256.lower():
        raise ChecksumMismatchError(
            f"the archive of {handle.shown} has sha256 {result.archive_sha256}, not the pinned "
            f"{sha256}; nothing was cached",
            handle=handle.shown,
            expected=sha256,
            actual=result.archive_sha256,
        )


def open_source(handle: Handle, config: Config, budget: RetryBudget) -> Source:
    if config.mirrors or config.no_origin:
        from .fetch.mirrors import MirroredSource

        return MirroredSource(handle, config, budget, _direct_source)
    return _direct_source(handle, config, budget)


def _use_local_copy(key: str, config: Config) -> Callable[[Any], None]:
    """For a redirect that lands on a Kaggle model: stop and link an equivalent copy."""

    def check(model: Any) -> None:
        from ._config import kaggle_settings
        from .kaggle.donors import find_donor
        from .kaggle.identity import web_hosts

        settings = kaggle_settings()
        hosts = web_hosts(settings.web_endpoint)
        donor = find_donor(model, config.root, key, settings.kagglehub_cache, hosts)
        if donor is not None:
            raise UseLocalCopy(model, donor)

    return check


def _direct_source(handle: Handle, config: Config, budget: RetryBudget) -> Source:
    if handle.scheme in ("http", "https") and handle.kind == "model":
        return KaggleAwareSource(handle.location, handle.shown, config, budget=budget)
    if handle.scheme in ("http", "https"):
        return HTTPSource(handle.location, handle.shown, config, budget)
    if handle.scheme:
        return FsspecSource(handle.location, handle.shown, config.store_timeout)
    return LocalFileSource(os.path.abspath(os.path.expanduser(handle.location)), handle.shown)


def _label(handle: Handle) -> str:
    text = handle.shown.split("?", 1)[0]
    return text if len(text) <= 60 else "..." + text[-57:]
