"""What a mirror needs of Kaggle: its hosts, its credential, and its model API.

The mirror (``serve``) uses the Kaggle package only through this module (an import-linter
contract keeps it off the internals: ``provider``, ``api``, ``credentials``...), so they
can change without touching the server.

:class:`KaggleUpstream` is the mirror's side of the Kaggle model API that kagglehub and
hubcache's own client speak (``kaggle.api``): it reads a client's RPC body into a
:class:`Call` (refusing what no Kaggle model could be), asks Kaggle with the *mirror's*
settings and credential, and hands the download of a version or of one of its files to the
mirror's fill as a source of a fresh signed URL. Nothing of the client's request but the
model's identity reaches Kaggle. Every call is blocking and bounded by the mirror's
timeouts and retry budget; the server runs them on worker threads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .._errors import HubcacheError
from .._values import parse_json
from .identity import FRAMEWORKS, KAGGLE_HOSTS, KaggleModel, framework_id

if TYPE_CHECKING:
    from .._config import Config
    from ..fetch.retry import RetryBudget
    from ..fetch.source import Source

# The RPC methods a client downloading a model calls (kagglesdk's names).
INSTANCE = "GetModelInstance"
FILES = "ListModelInstanceVersionFiles"
DOWNLOAD = "DownloadModelInstanceVersion"
METHODS = (INSTANCE, FILES, DOWNLOAD)
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{0,200}")


def is_kaggle_host(host: str) -> bool:
    """Whether an upstream's host name (lower case) is Kaggle's web host."""
    return host in KAGGLE_HOSTS


def upstream_credential() -> Optional[tuple[str, str]]:
    """(the Authorization header value, where it came from) of the Kaggle credential found
    in kagglehub's order, or None: what a mirror sends to Kaggle's hosts on behalf of
    clients that have none."""
    from .credentials import find_credential
    from .settings import kaggle_settings

    found = find_credential(kaggle_settings())
    return (found.authorization, found.source) if found is not None else None


class BadCallError(ValueError):
    """A client's RPC body that names no Kaggle model: answered 400, never asked upstream."""


@dataclass(frozen=True)
class Call:
    """One client RPC, reduced to what the mirror forwards: the model and the fields of
    the call (the rest of the client's body, and all its headers, stay behind)."""

    method: str
    model: KaggleModel  # the version is set for FILES and DOWNLOAD
    path: Optional[str] = None  # DOWNLOAD: one file of the version
    page_size: int = 0  # FILES: as the client asked (0: Kaggle's default)
    page_token: str = ""

    @property
    def variation(self) -> str:
        """The variation, spelled one way for every spelling a client may use (slugs and
        frameworks fold case, as Kaggle matches them): the key of caches and stored names."""
        m = self.model
        fw = framework_id(m.framework)
        return "/".join(p.lower() for p in (m.owner, m.model, fw, m.variation))

    @property
    def key(self) -> str:
        """What the answer depends on: one cache entry per key."""
        if self.method == INSTANCE:
            return f"{INSTANCE} {self.variation}"
        page = f" {self.page_size} {self.page_token}" if self.method == FILES else ""
        return f"{self.method} {self.variation}/{self.model.version}{page}"


def parse_call(method: str, body: bytes) -> Call:
    """A client's RPC (kagglesdk's JSON body, camelCase fields) as a :class:`Call`, or
    :class:`BadCallError` naming what is wrong."""
    if method not in METHODS:
        raise BadCallError(f"this mirror answers {', '.join(METHODS)} of Kaggle's model API only")
    try:
        data = parse_json(body or b"{}")
    except ValueError:
        raise BadCallError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadCallError("the request body is not a JSON object")
    slugs = []
    for field in ("ownerSlug", "modelSlug", "instanceSlug"):
        value = data.get(field)
        if not isinstance(value, str) or not _SLUG.fullmatch(value):
            raise BadCallError(f"{field} is missing or is not a Kaggle slug")
        slugs.append(value)
    framework = data.get("framework")
    name = framework.removeprefix("MODEL_FRAMEWORK_") if isinstance(framework, str) else ""
    if framework_id(name) not in FRAMEWORKS:
        raise BadCallError(f"framework {framework!r} is not one of Kaggle's model frameworks")
    model = KaggleModel(slugs[0], slugs[1], name, slugs[2])
    if method == INSTANCE:
        return Call(method, model)
    version = data.get("versionNumber")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadCallError("versionNumber is missing or is not a number from 1")
    model = model.with_version(version)
    if method == FILES:
        size, token = data.get("pageSize", 0), data.get("pageToken", "")
        if not isinstance(size, int) or not 0 <= size <= 10_000:
            raise BadCallError("pageSize is not a number from 0 to 10000")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise BadCallError("pageToken is not a page token")
        return Call(method, model, page_size=size, page_token=token)
    path = data.get("path")
    if path in (None, ""):
        return Call(method, model)
    if not isinstance(path, str) or "\x00" in path or len(path.encode()) > 4096:
        raise BadCallError("path is not a file's path")
    return Call(method, model, path=path)


def refusal(exc: HubcacheError) -> tuple[int, str]:
    """The status and message a client gets for Kaggle's (or the network's) answer to the
    mirror: Kaggle's 4xx as they were (410 as 404), anything else a 502."""
    status = exc.facts.get("status")
    if status == 410:
        status = 404
    if status not in (400, 401, 403, 404, 429):
        status = 502
    return status, f"the mirror asked Kaggle: {exc.message}"


def api_mirror() -> str:
    """``HUBCACHE_KAGGLE_API`` as this process reads it ('' when unset): a mirror refuses to
    start when it names the mirror itself, whose every Kaggle call would wait on itself."""
    from .settings import kaggle_settings

    return kaggle_settings().mirror


class KaggleUpstream:
    """The mirror's Kaggle API client: its own settings (``KAGGLE_API_ENVIRONMENT``) and
    credential (kagglehub's order), read once."""

    def __init__(self, config: Config) -> None:
        from .credentials import find_credential
        from .settings import kaggle_settings

        self.config = config
        self.settings = kaggle_settings()
        self.credential = find_credential(self.settings)

    @property
    def source(self) -> str:
        """Where the mirror's credential came from (for the start-up log), or ''."""
        return self.credential.source if self.credential is not None else ""

    def _api(self, call: Call, config: Optional[Config] = None) -> Any:
        from .api import KaggleApi

        return KaggleApi(self.settings, self.credential, config or self.config, call.model.slug)

    def answer(self, call: Call, *, via: str = "") -> dict[str, Any]:
        """Kaggle's JSON answer to an instance or listing call; raises HubcacheError.
        ``via``: the mirror's ``Via`` chain, sent along (a loop of mirrors answers 508)."""
        from .api import _body

        body: dict[str, Any] = _body(call.model)
        if call.method == FILES:
            body["versionNumber"] = call.model.version
            if call.page_size:
                body["pageSize"] = call.page_size
            if call.page_token:
                body["pageToken"] = call.page_token
        config = self.config._replace(headers=(*self.config.headers, ("Via", via))) if via else None
        api = self._api(call, config)
        data: dict[str, Any] = api._json(call.method, body, call.model)
        return data

    def opener(self, call: Call) -> Callable[[Config, RetryBudget], Source]:
        """A fresh source of the version's archive (or of ``call.path``): a signed URL from
        Kaggle, fetched with no credential and checked against its md5, refreshed once
        when storage refuses it (``kaggle.signed``)."""

        def open_source(config: Config, budget: RetryBudget) -> Source:
            from .provider import signed

            api = self._api(call, config)
            return signed(api, call.model, call.model.slug, config, budget, path=call.path)

        return open_source
