"""Pin a Kaggle handle to one version before the cache is consulted.

A versioned handle is used as it is. An unversioned one means "the latest": one API call
(``GetModelInstance``), remembered for :data:`REMEMBER` seconds in this process so a loop
of resolves does not ask each time; offline, the newest version already cached (ours or
kagglehub's) is used, and a warning says so; the same when Kaggle cannot be reached (the
network is down) and a version is cached. The pinned handle is spelled like the one given
(``kaggle:O/M/FW/VAR`` -> ``kaggle:O/M/FW/VAR/3``; URLs get ``/3`` or ``/versions/3``), so
a versioned URL keeps tensorflow_hub's cache key.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

from .._config import Config
from .._errors import ConfigurationError, DownloadError, OfflineError
from .._handles import Handle
from . import kagglehub_cache
from .donors import cached_versions
from .identity import KaggleModel, from_url, kaggle_handle, versioned
from .settings import kaggle_settings

log = logging.getLogger(__name__)

REMEMBER = 300.0  # seconds an answer about the latest version is reused
_LATEST: dict[tuple[str, str, str, str, str, str], tuple[int, float]] = {}


def pin(handle: Handle, config: Config) -> tuple[Handle, Optional[KaggleModel]]:
    """(the handle to resolve, its Kaggle model) -- the handle unchanged when not Kaggle."""
    try:
        settings = kaggle_settings()
    except ConfigurationError:
        if handle.kind == "model" and from_url(handle.raw) is None:
            return handle, None  # not a Kaggle URL: a bad Kaggle setting is not its problem
        raise
    found = kaggle_handle(handle, settings.web_endpoint)
    if found is None:
        return handle, None
    handle, model = found
    if model.version is not None:
        return handle, model
    if config.offline:
        version = _newest_cached(model, config.root, settings.kagglehub_cache)
        if version is None:
            raise OfflineError(
                f"{handle.raw} names no version, offline mode is on and no version of "
                f"{model.slug} is cached; name a version or resolve it once with network",
                handle=handle.raw,
            )
        log.warning(
            "offline: %s resolves to version %d, the newest cached (Kaggle was not asked "
            "for the latest)",
            handle.raw,
            version,
        )
    else:
        try:
            version = latest(handle, model, config)
        except DownloadError as exc:
            if getattr(exc, "status", None) is not None:
                raise  # Kaggle answered (401, 404, 500...): not a network failure
            cached = _newest_cached(model, config.root, settings.kagglehub_cache)
            if cached is None:
                raise
            log.warning(
                "%s resolves to version %d, the newest cached: Kaggle could not be asked for "
                "the latest (%s)",
                handle.raw,
                cached,
                exc,
            )
            version = cached
    return versioned(handle, model, version), model.with_version(version)


def latest(handle: Handle, model: KaggleModel, config: Config) -> int:
    from .api import KaggleApi
    from .credentials import find_credential

    settings = kaggle_settings()
    memo = (
        settings.environment,
        model.owner.lower(),
        model.model.lower(),
        model.framework_enum,
        model.variation.lower(),
        settings.api_endpoint,
    )
    hit = _LATEST.get(memo)
    now = time.monotonic()
    if hit is not None and now - hit[1] < REMEMBER:
        return hit[0]
    api = KaggleApi(settings, find_credential(settings), config, handle.raw)
    version = api.latest_version(model)
    _LATEST[memo] = (version, now)
    log.info("the latest version of %s is %d", model.slug, version)
    return version


def _newest_cached(model: KaggleModel, root: str, kagglehub_root: str) -> Optional[int]:
    found = set(kagglehub_cache.versions(kagglehub_root, model))
    if "://" not in root and os.path.isdir(root):
        found.update(cached_versions(model, root))
    return max(found) if found else None
