"""A small client for the part of Kaggle's API that kagglehub 1.x uses to download models.

Calls (kagglesdk's RPC layout: ``POST <rpc_base>/<service>/<method>`` with a JSON body whose
fields are camelCase and whose framework is the enum's name)::

    models.ModelApiService/GetModelInstance               -> {"versionNumber": N, ...}
    models.ModelApiService/ListModelInstanceVersionFiles  -> {"files": [{"name", "size"}],
                                                              "nextPageToken": ""}
    models.ModelApiService/DownloadModelInstanceVersion   -> 302 Location: <signed URL>,
                                                             or 200 with the bytes themselves
    GET <web>/api/v1/models/O/M/FW/VAR/VER/download       -> the same (older servers; fallback)

Credentials go on these requests only. Redirects are never followed here: the download call
is made by its source (``kaggle.download``), which fetches the signed URL without any
credential, or reads the answer's own body (kagglesdk accepts both, and kagglehub's test
servers answer with the bytes). Errors carry Kaggle's ``message`` when it sends one, and
401/403 name the credential *source* that was tried.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from typing import Any, Optional, overload

from .._config import Config
from .._errors import DownloadError, HTTPStatusError, ModelNotFoundError
from .._values import parse_json
from ..fetch.pool import manager, split_credentials
from ..fetch.retry import NETWORK_ADVICE, RetryBudget, send_with_retries
from ..fetch.source import redact
from .credentials import Credential
from .identity import KaggleModel
from .settings import KaggleSettings

log = logging.getLogger(__name__)

SERVICE = "models.ModelApiService"
PAGE_SIZE = 25  # kagglehub downloads up to this many files one by one, else the archive
_REDIRECT = {301, 302, 303, 307, 308}


class KaggleApi:
    def __init__(
        self,
        settings: KaggleSettings,
        credential: Optional[Credential],
        config: Config,
        handle: str,
    ) -> None:
        self.settings = settings
        self.credential = credential
        self.config = config
        self.handle = handle

    # -- calls ----------------------------------------------------------------------------
    def latest_version(self, model: KaggleModel) -> int:
        data = self._json("GetModelInstance", _body(model), model)
        version = data.get("versionNumber")
        if not isinstance(version, int) or version < 1:
            raise DownloadError(
                f"Kaggle's answer about {model.slug} has no version number; try again later "
                "or name the version in the handle",
                handle=self.handle,
            )
        return version

    def list_files(self, model: KaggleModel) -> Optional[tuple[list[tuple[str, int]], bool]]:
        """The version's files (name, size) and whether there are more than one page; None
        when the server has no such route (an older API: fetch the archive instead)."""
        body = {**_body(model), "versionNumber": model.version, "pageSize": PAGE_SIZE}
        data = self._json("ListModelInstanceVersionFiles", body, model, optional=True)
        if data is None:
            return None
        files = []
        for item in data.get("files") or []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise DownloadError(
                    f"Kaggle listed a malformed file for {model.slug}", handle=self.handle
                )
            size = item.get("size", -1)
            files.append((item["name"], int(size) if isinstance(size, (int, str)) else -1))
        return files, bool(data.get("nextPageToken"))

    def download(
        self,
        model: KaggleModel,
        path: Optional[str] = None,
        *,
        budget: Optional[RetryBudget] = None,
        stop: Optional[threading.Event] = None,
    ) -> tuple[str, Any]:
        """Make the download call for the version's archive, or one file of it: ``(the
        signed URL it redirects to, None)``, or ``(the URL called, the answer)`` when the
        answer (200) carries the bytes themselves, unread. ``budget``: the download's one
        retry budget."""
        body: dict[str, Any] = {**_body(model), "versionNumber": model.version}
        if path is not None:
            body["path"] = path
        called = self._rpc("DownloadModelInstanceVersion")
        response = self._call("POST", called, body, model, budget=budget, stop=stop, stream=True)
        direct = not self.settings.mirror and called.startswith(self.settings.rpc_base)
        if response.status == 404 and path is None and not _is_json(response) and direct:
            # The RPC route itself is missing (an older API): use the legacy download URL.
            # Never when a mirror answers the API: that would go around it, to Kaggle.
            _release(response)
            legacy = (
                f"{self.settings.web_endpoint}/api/v1/models/{model.owner}/{model.model}/"
                f"{model.framework}/{model.variation}/{model.version}/download"
            )
            log.info("Kaggle's RPC download route is missing; trying %s", legacy)
            called = legacy
            response = self._call("GET", legacy, None, model, budget=budget, stop=stop, stream=True)
        if response.status == 200:
            return called, response
        try:
            return self._location(response, model), None
        finally:
            _release(response)

    def download_url(
        self,
        model: KaggleModel,
        path: Optional[str] = None,
        *,
        budget: Optional[RetryBudget] = None,
        stop: Optional[threading.Event] = None,
    ) -> str:
        """A fresh signed URL for the version's archive, or one file of it (a refused one
        is replaced with it); an API that answers with the bytes instead has none to give."""
        url, answer = self.download(model, path, budget=budget, stop=stop)
        if answer is not None:
            answer.close()  # never drain: the body is a model's bytes
            answer.release_conn()
            raise DownloadError(
                f"Kaggle's API answered the download of {model.slug} with the bytes instead "
                "of a fresh download URL; try again",
                handle=self.handle,
            )
        return url

    # -- plumbing -------------------------------------------------------------------------
    def _rpc(self, method: str) -> str:
        """The RPC's URL; through the first ``HUBCACHE_MIRRORS`` prefix that matches it (a
        hubcache mirror answers Kaggle's API; no credential goes there: ``_is_api_host``)."""
        url = f"{self.settings.rpc_base}/{SERVICE}/{method}"
        for prefix, replacement in self.config.mirrors:
            if url.startswith(prefix):
                return replacement + url[len(prefix) :]
        return url

    @overload
    def _json(self, method: str, body: dict[str, Any], model: KaggleModel) -> dict[str, Any]: ...
    @overload
    def _json(
        self, method: str, body: dict[str, Any], model: KaggleModel, optional: bool
    ) -> Optional[dict[str, Any]]: ...
    def _json(
        self, method: str, body: dict[str, Any], model: KaggleModel, optional: bool = False
    ) -> Optional[dict[str, Any]]:
        """POST one RPC; its JSON answer. ``optional``: None when the route itself is
        missing (a bare 404 without Kaggle's JSON error body)."""
        response = self._call("POST", self._rpc(method), body, model)
        if optional and response.status == 404 and not _is_json(response):
            log.info("Kaggle's API has no %s route here", method)
            return None
        self._raise_for_status(response, model)
        try:
            data = parse_json(response.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise DownloadError(
                f"Kaggle's API answered {method} for {model.slug} with something that is not "
                "JSON (a proxy page?); check KAGGLE_API_ENVIRONMENT and proxy settings",
                handle=self.handle,
            )
        return data

    def _location(self, response: Any, model: KaggleModel) -> str:
        if response.status in _REDIRECT:
            target = response.headers.get("Location", "")
        else:
            self._raise_for_status(response, model)  # always raises: 200 is never asked here
            target = ""
        base = self._rpc("")  # the API as asked: Kaggle's, or a mirror's
        url = urllib.parse.urljoin(base, target) if target else ""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https") or (scheme == "http" and base.startswith("https:")):
            raise DownloadError(
                f"Kaggle's API gave no usable download URL for {model.slug} "
                f"(status {response.status}, location {redact(url) or 'none'})",
                handle=self.handle,
            )
        return url

    def _call(
        self,
        method: str,
        url: str,
        body: Optional[dict[str, Any]],
        model: KaggleModel,
        *,
        budget: Optional[RetryBudget] = None,
        stop: Optional[threading.Event] = None,
        stream: bool = False,
    ) -> Any:
        """One request to the API, retried on the one policy (``fetch.retry``) from
        ``budget`` (a budget of its own when the call is not part of a download).
        ``stream``: the answer may be a model's bytes, so its body is left unread and not
        decoded (what the download call's source reads)."""
        import urllib3

        from ..fetch.http import _user_agent

        headers = {"User-Agent": _user_agent(), "Accept": "*/*" if stream else "application/json"}
        if stream:
            headers["Accept-Encoding"] = "identity"
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.credential is not None and _is_api_host(url, self.settings):
            headers["Authorization"] = self.credential.authorization
        url, userinfo = split_credentials(url)  # a mirror's token, in HUBCACHE_KAGGLE_API
        headers.update(userinfo)
        for name, value in self.config.headers:
            if name.lower() == "via":  # a mirror's own: a loop of mirrors answers 508
                headers["Via"] = value
        payload = json.dumps(body).encode() if body is not None else None
        timeout = urllib3.Timeout(
            connect=self.config.connect_timeout, read=self.config.read_timeout
        )

        def send() -> Any:
            return manager(url, self.config).request(
                method,
                url,
                body=payload,
                headers=headers,
                redirect=False,
                retries=False,
                timeout=timeout,
                preload_content=not stream,
                decode_content=not stream,
            )

        try:  # the one retry policy of every request (fetch.retry)
            return send_with_retries(
                budget if budget is not None else RetryBudget.of(self.config),
                send,
                url=lambda: url,
                handle=self.handle,
                stop=stop,
            )
        except DownloadError as exc:
            cause = exc.message.removesuffix(NETWORK_ADVICE)  # one piece of advice, ours
            where = (  # the setting that chose the host that failed
                "HUBCACHE_KAGGLE_API (the mirror)"
                if self.settings.mirror
                else "KAGGLE_API_ENVIRONMENT"
            )
            raise DownloadError(
                f"Kaggle's API failed for {model.slug}: {cause}; check the network, "
                f"proxy settings and {where}, then try again",
                handle=self.handle,
            ) from None

    def _raise_for_status(self, response: Any, model: KaggleModel) -> None:
        status = response.status
        if status == 200:
            return
        message = _server_message(response)
        said = f" (Kaggle said: {message})" if message else ""
        if status in (401, 403):
            raise access_error(
                status, model, self.credential, self.settings, self.handle, said=said
            )
        if status in (404, 410):
            raise ModelNotFoundError(
                f"Kaggle has no model {model.slug}{said}; check the owner, model, framework, "
                f"variation and version on {model.page(self.settings.web_endpoint)}",
                handle=self.handle,
                status=status,
            )
        raise HTTPStatusError(
            f"Kaggle's API answered HTTP {status} for {model.slug}{said}",
            handle=self.handle,
            status=status,
        )


def access_error(
    status: int,
    model: KaggleModel,
    credential: Optional[Credential],
    settings: KaggleSettings,
    handle: str,
    *,
    said: str = "",
) -> HTTPStatusError:
    """The one line for 401/403: accept the terms, and which credential *source* was tried."""
    if credential is None:
        tried = (
            "no credential was found (set KAGGLE_API_TOKEN, or put kaggle.json in ~/.kaggle "
            "or $KAGGLE_CONFIG_DIR)"
        )
    else:
        tried = f"the credential tried came from {credential.source}"
        if status == 401:
            tried += " and was not accepted (wrong or expired?)"
    return HTTPStatusError(
        f"Kaggle refused access to {model.slug} (HTTP {status}){said}: if the model is gated, "
        f"sign in and accept its terms at {model.page(settings.web_endpoint)}; {tried}",
        handle=handle,
        status=status,
    )


def _body(model: KaggleModel) -> dict[str, Any]:
    return {
        "ownerSlug": model.owner,
        "modelSlug": model.model,
        "framework": model.framework_enum,
        "instanceSlug": model.variation,
    }


def _release(response: Any) -> None:
    """Give an answer's connection back (a short body is read first, so it can be reused)."""
    response.drain_conn()
    response.release_conn()


def _is_json(response: Any) -> bool:
    return "json" in response.headers.get("Content-Type", "")


def _server_message(response: Any) -> str:
    if not _is_json(response):
        return ""
    try:
        message = parse_json(response.data).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return " ".join(str(message).split())[:200]


def _is_api_host(url: str, settings: KaggleSettings) -> bool:
    """Credentials go to the selected environment's API and web endpoints only."""
    target = urllib.parse.urlsplit(url)
    for endpoint in (settings.api_endpoint, settings.web_endpoint):
        ours = urllib.parse.urlsplit(endpoint)
        if (target.scheme, target.hostname, target.port) == (ours.scheme, ours.hostname, ours.port):
            return True
    return False
