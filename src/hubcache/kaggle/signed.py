"""The HTTP source of a signed storage URL that Kaggle's API handed out.

No credential and no user header ever goes with it (the signature is the authorisation),
the body's md5 from ``x-goog-hash`` is checked on top of our own checks, and a refused
signature (400 expired, 401, 403) makes it ask the API once for a fresh URL. What a
redirect chain through a Kaggle page means is decided in ``kaggle.provider``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .._config import Config
from .._errors import CorruptArchiveError, HTTPStatusError
from ..fetch.http import HTTPSource
from ..fetch.retry import RetryBudget

log = logging.getLogger(__name__)

# How storage refuses a signed URL: 403 (bad signature), 400 (an expired V4 signature), 401.
# Each is worth one fresh URL from the API (also for a chain through a Kaggle page:
# kaggle.redirects.refused).
REFUSED = (400, 401, 403)
# Fresh URLs one download may ask for after it started (an hour-long download may outlive
# more than one signature; a bound, so a storage that refuses every URL ends the download).
MAX_RENEWALS = 4


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
        plain = config._replace(headers=(), mirrors=())
        super().__init__(url, handle, plain, budget)
        self._refresh = refresh
        self._renewing = threading.Lock()
        self._renewals = 0
        self.md5 = ""

    def open(self) -> None:
        try:
            super().open()
        except HTTPStatusError as exc:
            if exc.facts.get("status") not in REFUSED:
                raise
            self._replace_url(f"was refused (HTTP {exc.facts.get('status')}: expired?)")
            super().open()
        self.md5 = expected_md5(self._response.headers)

    def renew(self, refused: HTTPStatusError, url: str) -> bool:
        """A signature that expired mid-download (a resume or a ranged part refused): one
        fresh URL for the same object from Kaggle's API, shared by every part; the parts
        refused meanwhile just ask again with it. ETag and size are checked as for any part."""
        if refused.facts.get("status") not in REFUSED:
            return False
        with self._renewing:
            if self.url != url:
                return True  # another part renewed it meanwhile
            if self._renewals >= MAX_RENEWALS:
                return False
            self._renewals += 1
            self._replace_url(f"expired mid-download (HTTP {refused.facts.get('status')})")
        return True

    def _replace_url(self, why: str) -> None:
        log.warning(
            "the signed download URL for %s %s; asking Kaggle for a fresh one", self.handle, why
        )
        self.retarget(self._refresh())

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
