"""Kaggle as a source provider: what to fetch for a Kaggle model, and what a redirect meant.

The stager (``_stage``) does every download; this module only decides. For a Kaggle handle
(pinned to one version by ``kaggle.versions``)::

    an equivalent copy on this machine?   -> LinkPlan (hard links, no request at all)
    offline?                              -> OfflineError
    list the version's files (API)
      a handful (one page)                -> FileSetPlan: each file from its own signed URL
      many, or no listing                 -> ArchivePlan: the version's archive, signed URL
      no listing route, a Kaggle URL      -> ArchivePlan: the TF Hub protocol on that URL

This is kagglehub's choice of per-file versus archive downloads, so both tools see the same
tree. Each download is the API's download call made by its source when the stager opens it
(``download.KaggleDownload``): the signed URL it redirects to is fetched with no credential,
or the bytes in its answer are read as they come.

What a redirect chain through a Kaggle page means for any other model URL (tfhub.dev) is
decided in ``kaggle.redirects``, which a plain miss can import without this module's API
client.
"""

from __future__ import annotations

import logging
from typing import Optional

from .._config import Config
from .._errors import OfflineError
from .._handles import Handle, model_url
from ..fetch.http import HTTPSource
from ..fetch.plan import ArchivePlan, FileSet, FileSetPlan, LinkPlan, Plan
from ..fetch.retry import RetryBudget
from ..fetch.source import Source
from .api import KaggleApi
from .credentials import find_credential
from .donors import Donor, find_donor
from .download import KaggleDownload
from .identity import KaggleModel, parse_slug, web_hosts
from .settings import KaggleSettings

log = logging.getLogger(__name__)


def plan(handle: Handle, key: str, config: Config, settings: KaggleSettings) -> Plan:
    """What to fetch for the Kaggle ``handle`` (one version) into entry ``key``."""
    model = parse_slug(handle.location, handle.raw)
    donor = find_donor(
        model, config.root, key, settings.kagglehub_cache, web_hosts(settings.web_endpoint)
    )
    if donor is not None:
        return linked(donor, model)
    if config.offline:
        raise OfflineError(
            f"{handle.raw} ({model.slug}) is not cached (neither here nor in kagglehub's "
            f"cache at {settings.kagglehub_cache}) and offline mode is on",
            handle=handle.raw,
        )
    api = KaggleApi(settings, find_credential(settings), config, handle.raw)
    listing = api.list_files(model)  # None: an older API without the listing route
    files, more = listing if listing is not None else ([], True)
    record = model.record()
    if files and not more:

        def open_file(name: str, budget: RetryBudget) -> Source:
            return signed(api, model, handle.raw, config, budget, path=name)

        return FileSetPlan(
            files=tuple(FileSet(name, size if size >= 0 else None) for name, size in files),
            open=open_file,
            label=model.slug,
            source=f"kaggle:{model.slug} ({len(files)} files)",
            record=record,
        )
    if listing is None and handle.scheme in ("http", "https"):
        # the TF Hub protocol on the Kaggle URL, as tensorflow_hub fetches it: the fallback
        url = model_url(handle.raw)
        return ArchivePlan(
            open=lambda budget: HTTPSource(url, handle.raw, config, budget),
            label=model.slug,
            record=record,
            source=url,
        )
    return ArchivePlan(
        open=lambda budget: signed(api, model, handle.raw, config, budget),
        label=model.slug,
        record=record,
        source=f"kaggle:{model.slug}",
    )


def signed(
    api: KaggleApi,
    model: KaggleModel,
    handle: str,
    config: Config,
    budget: RetryBudget,
    *,
    path: Optional[str] = None,
) -> KaggleDownload:
    """An unopened source for the archive, or one file, of ``model``: opening it makes the
    download call (so every attempt gets a fresh signed URL, or the bytes themselves)."""
    return KaggleDownload(api, model, handle, config, budget, path=path)


def linked(donor: Donor, model: KaggleModel) -> LinkPlan:
    return LinkPlan(donor.path, donor.origin, donor.files, model.record())
