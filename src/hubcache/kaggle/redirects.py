"""What a redirect chain through a Kaggle model page means (tfhub.dev -> Kaggle Models).

The stager gives an HTTP source for a model URL :func:`model_page` as its ``stop_at`` test:
the source stops before requesting the Kaggle page and reports the chain (``Source.hops``).
Then :func:`inspect` names the model (recorded in the manifest, so other spellings share the
files) and finds an equivalent copy already cached, which is linked instead of downloaded;
:func:`refused` answers a signed URL refused at the end of such a chain with a fresh one
from the API, once; :func:`check_catalogue` reports Kaggle's HTML catalogue page (where
unmigrated tfhub.dev handles land) as "not found". Because the chain is read from whatever
source opened (a mirror's included), the decision is the same with or without
``HUBCACHE_MIRRORS``.

Every plain model-URL miss imports this module, so it imports nothing of Kaggle's at the
top: the identity and the settings come in when a hop or the final page looks like Kaggle's
(``/models/`` in a URL, an HTML answer), the API client, credentials and donors when a
chain really passes a Kaggle page.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING, Any, Optional

from .._config import Config
from .._errors import ConfigurationError, HTTPStatusError, ModelNotFoundError
from ..fetch.plan import LinkPlan
from ..fetch.retry import RetryBudget
from ..fetch.source import Source, redact

if TYPE_CHECKING:
    from .identity import KaggleModel

log = logging.getLogger(__name__)


def model_in(hops: tuple[str, ...]) -> Optional[KaggleModel]:
    """The versioned Kaggle model a chain of URLs passed through, if any. Settings are read
    only when a hop looks like a model page: a plain host never needs them."""
    if not any("/models/" in url for url in hops):
        return None
    from .identity import from_url, web_hosts
    from .settings import kaggle_settings

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
    from .donors import find_donor
    from .identity import web_hosts
    from .provider import linked
    from .settings import kaggle_settings

    settings = kaggle_settings()
    hosts = web_hosts(settings.web_endpoint)
    donor = find_donor(model, config.root, key, settings.kagglehub_cache, hosts)
    return (linked(donor, model) if donor is not None else None), model.record()


def check_catalogue(source: Source) -> None:
    """Raise ModelNotFoundError when the chain ended on Kaggle's HTML catalogue page, which
    is where unmigrated tfhub.dev handles land (status 200)."""
    _check_catalogue(source, _model_or_none(source.hops))


def refused(
    source: Source, exc: HTTPStatusError, handle: str, config: Config, budget: RetryBudget
) -> Optional[Source]:
    """A fresh signed URL when the one at the end of a chain through a Kaggle model page was
    refused (expired, bad signature); None when this refusal is not Kaggle's to answer."""
    from .signed import REFUSED  # not at the top: signed imports the HTTP source

    model = _model_or_none(source.hops) if exc.facts.get("status") in REFUSED else None
    if model is None:
        return None
    from .api import KaggleApi
    from .credentials import find_credential
    from .provider import signed
    from .settings import kaggle_settings

    settings = kaggle_settings()
    api = KaggleApi(settings, find_credential(settings), config, handle)
    log.warning(
        "the download URL %s for %s was refused (HTTP %s); asking Kaggle's API for a fresh one",
        redact(source.hops[-1]),
        handle,
        exc.facts.get("status"),
    )
    return signed(api, model, handle, config, budget)


def _model_or_none(hops: tuple[str, ...]) -> Optional[KaggleModel]:
    try:
        return model_in(hops)
    except ConfigurationError:  # a bad Kaggle setting is not a plain model URL's problem
        return None


def _check_catalogue(source: Source, model: Optional[KaggleModel]) -> None:
    if "html" not in source.content_type.lower() or not source.hops:
        return
    final = source.hops[-1]
    if model is None and not urllib.parse.urlsplit(final).path.startswith("/models"):
        return  # not a web page under /models (the API's own answer is not a catalogue)
    from .identity import web_hosts
    from .settings import kaggle_settings

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
