"""Fill a staging folder with one Kaggle model version; return its manifest.

Called under the entry's lock by ``_download`` (the lock, publishing and healing are the
same as for every other handle)::

    an equivalent copy on this machine?  -> hard-link it in            (no request at all)
    offline?                             -> OfflineError
    list the version's files (API)
      a handful (one page)               -> each file from its own signed URL, in parallel
      many, or no listing                -> the version's archive from a signed URL, extracted
    manifest: every file with size and sha256, plus "kaggle": the model's identity

This is kagglehub's choice of per-file versus archive downloads, so both tools see the
same tree. Signed URLs are fetched with no credential (``signed.SignedSource``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import posixpath
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Optional

from .._config import Config, kaggle_settings
from .._errors import (
    ChecksumMismatchError,
    ConfigurationError,
    CorruptArchiveError,
    DownloadError,
    OfflineError,
    UnsafeArchiveError,
)
from .._handles import Handle, model_url
from ..archive.extract import extract
from ..fetch.http import HTTPSource
from ..fetch.progress import Progress
from ..fetch.retry import RetryBudget
from ..fetch.source import RestartDownloadError
from ..local.entry import build_manifest, scan_tree
from ..local.tree import link_tree
from .api import KaggleApi
from .credentials import find_credential
from .donors import Donor, find_donor
from .identity import KaggleModel, parse_slug, web_hosts
from .signed import KaggleAwareSource, SignedSource

log = logging.getLogger(__name__)

PARALLEL_FILES = 8


class _CancelledError(Exception):
    """Another file of the same version failed: this one stops too."""


@dataclasses.dataclass(frozen=True)
class _Job:
    api: KaggleApi
    model: KaggleModel
    config: Config
    handle: str  # as given, for errors
    budget: RetryBudget  # the download's one retry budget (fetch.retry), all files together

    def tfhub(self) -> KaggleAwareSource:
        """The handle's URL with ``tf-hub-format=compressed``, redirects to the archive."""
        source = KaggleAwareSource(model_url(self.handle), self.handle, self.config)
        source.kaggle = self.model  # a refused signed URL at the end asks the API once
        return source

    def signed(self, path: Optional[str] = None) -> SignedSource:
        """A source for a fresh signed URL (of the archive, or of one file)."""
        return SignedSource(
            self.api.download_url(self.model, path),
            self.handle,
            self.config,
            lambda: self.api.download_url(self.model, path),
            self.budget,
        )


def stage_kaggle(
    handle: Handle, key: str, staging: str, config: Config, sha256: Optional[str]
) -> dict[str, Any]:
    model = parse_slug(handle.location, handle.raw)
    settings = kaggle_settings()
    hosts = web_hosts(settings.web_endpoint)
    donor = find_donor(model, config.root, key, settings.kagglehub_cache, hosts)
    if donor is not None:
        return fill_from(donor, handle, key, staging, model)
    if config.offline:
        raise OfflineError(
            f"{handle.raw} ({model.slug}) is not cached (neither here nor in kagglehub's "
            f"cache at {settings.kagglehub_cache}) and offline mode is on",
            handle=handle.raw,
        )
    api = KaggleApi(settings, find_credential(settings), config, handle.raw)
    job = _Job(api, model, config, handle.raw, RetryBudget.of(config))
    listing = api.list_files(model)  # None: an older API without the listing route
    files, more = listing if listing is not None else ([], True)
    if files and not more:
        if sha256 is not None:
            raise ConfigurationError(
                f"{model.slug} is a set of {len(files)} files, not an archive, so a sha256 "
                "pin cannot apply; resolve it without --sha256",
                handle=handle.raw,
            )
        stored = _download_files(job, files, staging)
        source = f"kaggle:{model.slug} ({len(files)} files)"
        archive: dict[str, Any] = {}
    elif listing is None and handle.scheme in ("http", "https"):
        # the TF Hub protocol on the Kaggle URL, as tensorflow_hub fetches it: the fallback
        stored, archive = _download_archive(job, staging, sha256, tfhub_protocol=True)
        source = model_url(handle.raw)
    else:
        stored, archive = _download_archive(job, staging, sha256)
        source = f"kaggle:{model.slug}"
    _files, dirs = scan_tree(staging)
    manifest = build_manifest(
        handle=handle.raw, key=key, files=stored, dirs=dirs, source=source, archive=archive
    )
    manifest["kaggle"] = model.record()
    return manifest


def fill_from(
    donor: Donor, handle: Handle, key: str, staging: str, model: KaggleModel
) -> dict[str, Any]:
    """Hard-link an equivalent copy into ``staging``: the second handle costs no download."""
    log.info(
        "%s: using the copy of %s in the %s (linked, not downloaded)",
        handle.raw,
        model.slug,
        donor.origin,
    )
    files = link_tree(donor.path, staging)
    for rel, value in files.items():  # keep the donor's digests where it has them
        known = (donor.files or {}).get(rel)
        if isinstance(known, list) and len(known) == 2 and known[0] == value[0]:
            files[rel] = list(known)
    _, dirs = scan_tree(staging)
    manifest = build_manifest(
        handle=handle.raw, key=key, files=files, dirs=dirs, source=f"linked from {donor.origin}"
    )
    manifest["kaggle"] = model.record()
    return manifest


def _download_archive(
    job: _Job, staging: str, sha256: Optional[str], *, tfhub_protocol: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    config, handle = job.config, job.handle
    while True:
        source: HTTPSource = job.signed() if not tfhub_protocol else job.tfhub()
        progress: Optional[Progress] = None
        os.mkdir(staging, 0o755)
        try:
            source.open()
            progress = Progress(config.progress, source.total, job.model.slug)
            result = extract(
                source, staging, limits=config.limits, fsync=config.fsync, progress=progress
            )
            _check_pin(handle, result.archive_sha256, sha256)
            archive = {
                "format": result.format,
                "bytes": result.archive_bytes,
                "sha256": result.archive_sha256,
            }
            return result.files, archive
        except RestartDownloadError as exc:
            _remove(staging)
            if not job.budget.pause(handle, f"restarted from the start: {exc}", wait=0.0):
                raise DownloadError(
                    f"the download of {handle} could not be completed: {exc}", handle=handle
                ) from None
        except BaseException:
            _remove(staging)
            raise
        finally:
            source.close()
            if progress is not None:
                progress.close()


def _check_pin(handle: str, actual: str, sha256: Optional[str]) -> None:
    if sha256 is not None and actual != sha256.lower():
        raise ChecksumMismatchError(
            f"the archive of {handle} has sha256 {actual}, not the pinned {sha256}; "
            "nothing was cached",
            handle=handle,
        )


def _download_files(job: _Job, files: list[tuple[str, int]], staging: str) -> dict[str, Any]:
    """Each listed file from its own signed URL, up to PARALLEL_FILES at once."""
    model, config, handle = job.model, job.config, job.handle
    limits = config.limits
    if len(files) > limits.max_members or sum(max(s, 0) for _, s in files) > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{model.slug} is larger than the limits allow", handle=handle)
    names = [_safe_name(name, handle) for name, _ in files]
    parents = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    if len(set(names)) != len(names) or parents & set(names):
        raise UnsafeArchiveError(
            f"Kaggle listed a file of {model.slug} twice, or as a file and a folder",
            handle=handle,
        )
    os.mkdir(staging, 0o755)
    total = sum(s for _, s in files) if all(s >= 0 for _, s in files) else None
    progress = Progress(config.progress, total, model.slug)
    guard = threading.Lock()
    stop = threading.Event()

    def fetch(name: str, target: str) -> tuple[int, str]:
        source = job.signed(name)
        digest = hashlib.sha256()
        count = 0
        try:
            source.open()
            with guard:
                os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "xb") as out:
                for chunk in source.chunks():
                    if stop.is_set():
                        raise _CancelledError
                    out.write(chunk)
                    digest.update(chunk)
                    count += len(chunk)
                    with guard:
                        progress.update(len(chunk))
                if config.fsync:
                    out.flush()
                    os.fsync(out.fileno())
        finally:
            source.close()
        return count, digest.hexdigest()

    def one(name: str, size: int) -> tuple[str, list[Any]]:
        target = os.path.join(staging, *name.split("/"))
        while True:
            if stop.is_set():
                raise _CancelledError
            try:
                count, digest = fetch(name, target)
                break
            except RestartDownloadError as exc:  # broken and not resumable: this file again
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
                if not job.budget.pause(f"{name} of {handle}", f"{exc}", wait=0.0):
                    raise DownloadError(
                        f"the download of {name} of {model.slug} kept breaking: {exc}",
                        handle=handle,
                    ) from None
                log.warning("downloading %s of %s again from the start: %s", name, handle, exc)
        if size >= 0 and count != size:
            raise CorruptArchiveError(
                f"{name} of {model.slug} has {count} bytes, but Kaggle listed {size}",
                handle=handle,
            )
        return name, [count, digest]

    stored: dict[str, Any] = {}
    pool = ThreadPoolExecutor(max_workers=min(PARALLEL_FILES, len(files)))
    try:
        sizes = [size for _, size in files]
        futures = [pool.submit(one, n, s) for n, s in zip(names, sizes, strict=True)]
        wait(futures, return_when=FIRST_EXCEPTION)
        stop.set()  # a failed file stops the others at their next chunk
        wait(futures)
        _raise_first_failure(futures)
        for future in futures:
            name, value = future.result()
            stored[name] = value
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        _remove(staging)
        raise
    finally:
        progress.close()
    pool.shutdown(wait=True)
    return stored


def _raise_first_failure(futures: list[Any]) -> None:
    """The error that stopped the set, not one of the cancellations it caused."""
    failures = [f.exception() for f in futures if f.exception() is not None]
    real = [e for e in failures if not isinstance(e, _CancelledError)]
    if failures:
        raise (real or failures)[0]


def _safe_name(name: str, handle: str) -> str:
    """A listed file name becomes a path inside the entry, never outside it."""
    clean = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    if (
        not clean
        or clean == "."
        or clean.startswith("../")
        or clean == ".."
        or "\x00" in clean
        or any(len(part.encode()) > 255 for part in clean.split("/"))
    ):
        raise UnsafeArchiveError(
            f"Kaggle listed a file named {name!r}, which would land outside the model folder; "
            "refused",
            handle=handle,
        )
    return clean


def _remove(path: str) -> None:
    import shutil

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path, ignore_errors=True)
