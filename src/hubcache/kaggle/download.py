"""Kaggle's download call as a source: the stager's one loop makes the call itself.

``DownloadModelInstanceVersion`` (and the legacy download route) answers in one of two
ways, and kagglesdk accepts both:

* a redirect to a short-lived signed storage URL (what kaggle.com sends): the URL is fetched
  as a :class:`~.signed.SignedSource` does it, with no Kaggle credential and none of the
  user's headers, its md5 checked, and one fresh URL asked for when it is refused;
* a 200 whose body is the bytes themselves (kagglehub's own test servers; an API or mirror
  that serves files directly): that answer is read as it comes, its ``x-goog-hash`` md5
  checked just the same. It cannot be resumed or split into ranged parts (the call is a
  POST), so a break restarts it from the start, on the download's one retry budget.

Either way the call is made when the stager opens the source, once per attempt, under the
download's budget and cancellation, so a restart or a file of a set asks the API again
rather than reusing a URL that may have expired.
"""

from __future__ import annotations

from typing import Optional

from .._config import Config
from ..fetch.retry import RetryBudget
from ..fetch.source import RestartDownloadError
from .api import KaggleApi
from .identity import KaggleModel
from .signed import SignedSource, expected_md5


class KaggleDownload(SignedSource):
    """The archive of a version, or one file of it (``path``), through the download call."""

    def __init__(
        self,
        api: KaggleApi,
        model: KaggleModel,
        handle: str,
        config: Config,
        budget: Optional[RetryBudget] = None,
        *,
        path: Optional[str] = None,
    ) -> None:
        self._api, self._model, self._path = api, model, path
        where = f"kaggle:{model.slug}" + (f" ({path})" if path is not None else "")
        super().__init__(api.settings.rpc_base, handle, config, self._fresh_url, budget)
        self.display = where
        self.direct = False  # True: the API's answer carries the bytes themselves

    def open(self) -> None:
        url, answer = self._api.download(
            self._model, self._path, budget=self.budget, stop=self._cancelled
        )
        if answer is None:  # a signed URL: fetched with no credential (SignedSource)
            self.retarget(url)
            super().open()
            return
        self.direct = True
        self._response = answer
        self._move_to(url)
        self.hops = (url,)
        self._read_metadata(answer)
        self.accept_ranges = False  # a POST's answer: no ranged parts, no resume
        self.md5 = expected_md5(answer.headers)

    def _validator(self) -> str:
        if self.direct:
            raise RestartDownloadError(
                "Kaggle's API sent the bytes in its answer, which cannot be resumed"
            )
        return super()._validator()

    def _fresh_url(self) -> str:
        """A refused signed URL's replacement: the call made again."""
        return self._api.download_url(
            self._model, self._path, budget=self.budget, stop=self._cancelled
        )
