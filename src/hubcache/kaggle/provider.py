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
tree. Signed URLs are fetched with no credential (``signed.SignedSource``).

For any other model URL (tfhub.dev), the stager shows :func:`inspect` the redirect chain an
opened source went through (``Source.hops``): when it passed a Kaggle model page, that is the
model's identity (recorded in the manifest, so other spellings share the files), and an
equivalent copy already cached is linked instead of downloaded. :func:`refused` answers a
signed URL refused at the end of such a chain with a fresh one from the API, once. Because
the chain is read from whatever source opened (a mirror's included), the decision is the
same with or without ``HUBCACHE_MIRRORS``.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, Optional

from .._config import Config
from .._errors import ConfigurationError, HTTPStatusError, ModelNotFoundError, OfflineError
from .._handles import Handle, model_url
from ..fetch.http import HTTPSource
from ..fetch.plan import ArchivePlan, FileSet, FileSetPlan, LinkPlan, Plan
from ..fetch.retry import RetryBudget
from ..fetch.source import Source, redact
from .api import KaggleApi
from .credentials import find_credential
from .donors import Donor, find_donor
from .identity import KaggleModel, from_url, parse_slug, web_hosts
from .settings import KaggleSettings, kaggle_settings
from .signed import REFUSED, SignedSource

log = logging.getLogger(__name__)


def plan(handle: Handle, key: str, config: Config, settings: KaggleSettings) -> Plan:
    """What to fetch for the Kaggle ``handle`` (one version) into entry ``key``."""
    model = parse_slug(handle.location, handle.raw)
    donor = find_donor(
        model, config.root, key, settings.kagglehub_cache, web_hosts(settings.web_endpoint)
    )
    if donor is not None:
        return _linked(donor, model)
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
            return _signed(api, model, handle.raw, config, budget, path=name)

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
        open=lambda budget: _signed(api, model, handle.raw, config, budget),
        label=model.slug,
        record=record,
        source=f"kaggle:{model.slug}",
    )


def _signed(
    api: KaggleApi,
    model: KaggleModel,
    handle: str,
    config: Config,
    budget: RetryBudget,
    *,
    path: Optional[str] = None,
) -> SignedSource:
    """A source for a fresh signed URL (of the archive, or of one file)."""
    return SignedSource(
        api.download_url(model, path), handle, config, lambda: api.download_url(model, path), budget
    )


def _linked(donor: Donor, model: KaggleModel) -> LinkPlan:
    return LinkPlan(donor.path, donor.origin, donor.files, model.record())


# -- what a redirect chain meant (tfhub.dev -> Kaggle Models) ------------------------------
def model_in(hops: tuple[str, ...]) -> Optional[KaggleModel]:
    """The versioned Kaggle model a chain of URLs passed through, if any. Settings are read
    only when a hop looks like a model page: a plain host never needs them."""
    if not any("/models/" in url for url in hops):
        return None
    hosts = web_hosts(kaggle_settings().web_endpoint)
    for url in hops:
        if "/models/" in url:
            model = from_url(url, hosts)
            if model is not None and model.version is not None:
                return model
    return None


def model_page(url: str) -> bool:
    """Whether ``url`` is a versioned Kaggle model page: the stager stops a redirect chain
    there (``Source.stop_at``) to decide before anything more is requested."""
    return "/models/" in url and _model_or_none((url,)) is not None


def inspect(
    source: Source, key: str, config: Config, *, find_copy: bool
) -> tuple[Optional[LinkPlan], Optional[dict[str, Any]]]:
    """(an equivalent copy to link instead, the model's record) for the Kaggle model the
    chain of ``source`` passed through, if any. ``find_copy`` False: the caller already
    looked for a copy (a Kaggle handle), or the body is already on its way."""
    model = _model_or_none(source.hops)
    if model is None:
        return None, None
    if not find_copy:
        return None, model.record()
    log.info("%s is the Kaggle model %s", redact(source.hops[0]), model.slug)
    settings = kaggle_settings()
    hosts = web_hosts(settings.web_endpoint)
    donor = find_donor(model, config.root, key, settings.kagglehub_cache, hosts)
    return (_linked(donor, model) if donor is not None else None), model.record()


def check_catalogue(source: Source) -> None:
    """Raise ModelNotFoundError when the chain ended on Kaggle's HTML catalogue page, which
    is where unmigrated tfhub.dev handles land (status 200)."""
    _check_catalogue(source, _model_or_none(source.hops))


def refused(
    source: Source, exc: HTTPStatusError, handle: str, config: Config, budget: RetryBudget
) -> Optional[Source]:
    """A fresh signed URL when the one at the end of a chain through a Kaggle model page was
    refused (expired, bad signature); None when this refusal is not Kaggle's to answer."""
    model = _model_or_none(source.hops) if exc.facts.get("status") in REFUSED else None
    if model is None:
        return None
    settings = kaggle_settings()
    api = KaggleApi(settings, find_credential(settings), config, handle)
    log.warning(
        "the download URL %s for %s was refused (HTTP %s); asking Kaggle's API for a fresh one",
        redact(source.hops[-1]),
        handle,
        exc.facts.get("status"),
    )
    return _signed(api, model, handle, config, budget)


def _model_or_none(hops: tuple[str, ...]) -> Optional[KaggleModel]:
    try:
        return model_in(hops)
    except ConfigurationError:  # a bad Kaggle setting is not a plain model URL's problem
        return None


def _check_catalogue(source: Source, model: Optional[KaggleModel]) -> None:
    if "html" not in source.content_type.lower() or not source.hops:
        return
    final = source.hops[-1]
    if model is None and "/models" not in final:
        return
    try:
        hosts = web_hosts(kaggle_settings().web_endpoint)
    except ConfigurationError:
        return
    parts = urllib.parse.urlsplit(final)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    if host not in hosts and (parts.hostname or "") not in hosts:
        return
    source.close()
    raise ModelNotFoundError(
        f"{redact(source.hops[0])} led to a Kaggle Models web page ({redact(final)}), not to "
        "a model archive: the model was probably not migrated from tfhub.dev to Kaggle "
        "Models; search for it on kaggle.com/models and use its Kaggle handle",
        status=200,
    )
