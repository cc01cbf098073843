"""HTTP sources that know about Kaggle: signed storage URLs and tfhub.dev's redirect chain.

:class:`SignedSource` fetches a signed URL Kaggle's API handed out: no credential and no
user header ever goes with it (the signature is the authorisation), the body's md5 from
``x-goog-hash`` is checked on top of our own checks, and a refused signature (400 expired,
401, 403) makes it ask the API once for a fresh URL.

:class:`KaggleAwareSource` is the TF Hub protocol source for ``https://tfhub.dev/...`` and
other model hosts: it follows the redirects hop by hop as before, and when a hop lands on a
Kaggle model URL it records which model that is (for the manifest, and so an equivalent
copy already cached can be used instead), asks the API once for a fresh URL when the signed
URL at the end fails, and reports Kaggle's HTML catalogue page as "not found".
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .._config import Config, KaggleSettings, kaggle_settings
from .._errors import CorruptArchiveError, HTTPStatusError, ModelNotFoundError
from ..fetch.http import HTTPSource
from ..fetch.retry import RetryBudget
from .api import KaggleApi
from .credentials import find_credential
from .identity import KaggleModel, from_url, web_hosts

log = logging.getLogger(__name__)

# How storage refuses a signed URL: 403 (bad signature, SignatureDoesNotMatch), 400 (an
# expired V4 signature, ExpiredToken), 401. Each is worth one fresh URL from the API.
REFUSED = (400, 401, 403)


def expected_md5(headers: Any) -> str:
    """The base64 md5 a storage server declares in ``x-goog-hash: crc32c=..,md5=..``."""
    for item in str(headers.get("x-goog-hash", "")).split(","):
        name, _, value = item.strip().partition("=")
        if name == "md5" and value:
            return value
    return ""


class SignedSource(HTTPSource):
    def __init__(
        self,
        url: str,
        handle: str,
        config: Config,
        refresh: Callable[[], str],
        budget: Optional[RetryBudget] = None,
    ) -> None:
        # No HUBCACHE_HTTP_HEADERS and no mirrors: the signed URL is not the handle's host.
        plain = dataclasses.replace(config, headers=(), mirrors=())
        super().__init__(url, handle, plain, budget)
        self._refresh = refresh
        self.md5 = ""

    def open(self) -> None:
        try:
            super().open()
        except HTTPStatusError as exc:
            if exc.facts.get("status") not in REFUSED:
                raise
            log.warning(
                "the signed download URL for %s was refused (HTTP %s: expired?); asking "
                "Kaggle for a fresh one",
                self.handle,
                exc.facts.get("status"),
            )
            self.url = self.origin = self._refresh()
            self.display = _redact(self.url)
            super().open()
        self.md5 = expected_md5(self._response.headers)

    def chunks(self) -> Iterator[bytes]:
        digest = hashlib.md5()  # noqa: S324 - the storage server's own integrity value
        for chunk in super().chunks():
            digest.update(chunk)
            yield chunk
        actual = base64.b64encode(digest.digest()).decode("ascii")
        if self.md5 and actual != self.md5:
            raise CorruptArchiveError(
                f"the download of {self.handle} has md5 {actual}, but the storage server "
                f"declared {self.md5} (x-goog-hash): corrupted in transit; try again",
                handle=self.handle,
            )


class UseLocalCopy(Exception):  # noqa: N818 - a signal, not an error
    """Raised from the redirect chain: an equivalent copy of this Kaggle model is cached."""

    def __init__(self, model: KaggleModel, donor: Any) -> None:
        super().__init__(model.slug)
        self.model = model
        self.donor = donor


class KaggleAwareSource(HTTPSource):
    def __init__(
        self,
        url: str,
        handle: str,
        config: Config,
        on_model: Optional[Callable[[KaggleModel], None]] = None,
        budget: Optional[RetryBudget] = None,
    ) -> None:
        super().__init__(url, handle, config, budget)
        self.kaggle: Optional[KaggleModel] = None
        self.on_model = on_model
        self._settings: Optional[KaggleSettings] = None
        self._refreshed = False

    def settings(self) -> KaggleSettings:
        if self._settings is None:
            self._settings = kaggle_settings()
        return self._settings

    def _check_redirect(self, source: str, target: str) -> None:
        super()._check_redirect(source, target)
        if self.kaggle is None and "/models/" in target:
            model = from_url(target, web_hosts(self.settings().web_endpoint))
            if model is not None and model.version is not None:
                self.kaggle = model
                log.info("%s is the Kaggle model %s", self.handle, model.slug)
                if self.on_model is not None:
                    self.on_model(model)

    def open(self) -> None:
        try:
            super().open()
        except HTTPStatusError as exc:
            status = exc.facts.get("status")
            model = self.kaggle
            if status not in REFUSED or model is None or self._refreshed:
                raise
            self._refreshed = True
            settings = self.settings()
            api = KaggleApi(settings, find_credential(settings), self.config, self.handle)
            log.warning(
                "the download URL %s for %s was refused (HTTP %s); asking Kaggle's API for "
                "a fresh one",
                _redact(self.final_url),
                self.handle,
                status,
            )
            self.url = api.download_url(model)
            super().open()
        self._check_catalogue()

    def _check_catalogue(self) -> None:
        """An HTML page on a Kaggle models URL is where unmigrated tfhub.dev handles land."""
        if "html" not in self.content_type.lower():
            return
        if self.kaggle is None and "/models" not in self.final_url:
            return
        parts = urllib.parse.urlsplit(self.final_url)
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        hosts = web_hosts(self.settings().web_endpoint)
        if host not in hosts and (parts.hostname or "") not in hosts:
            return
        self.close()
        raise ModelNotFoundError(
            f"{self.handle} led to a Kaggle Models web page ({_redact(self.final_url)}), not "
            "to a model archive: the model was probably not migrated from tfhub.dev to "
            "Kaggle Models; search for it on kaggle.com/models and use its Kaggle handle",
            handle=self.handle,
            status=200,
        )


def _redact(url: str) -> str:
    from ..fetch.source import redact

    return redact(url)
