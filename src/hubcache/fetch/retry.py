"""Retries: ONE budget per download, shared by every layer and every thread that fetches.

A download can fail in four places: a request (connection error, 408/429/5xx), a broken
body (resumed with ``Range``), one part of a ranged download, or a resume the server
cannot honour (restarted from zero). Each used to have its own loop of
``HUBCACHE_RETRIES`` attempts, and they nested: a restart retried requests that retried
connections, so a dead server could cost (retries + 1) to the third power attempts. Here
every failure of one download draws on one :class:`RetryBudget`: at most
``HUBCACHE_RETRIES`` retries in all, wherever they happen, each after an exponential
backoff with jitter (or the server's ``Retry-After``, capped at ``MAX_RETRY_AFTER``).
The worst case is therefore bounded: ``retries`` x (connect or read timeout + the wait).

Waits end early when the download is cancelled (Ctrl-C in the consumer, a failed part),
so no thread sleeps through a cancellation.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .._config import Config
from .._errors import DownloadError
from .source import RestartDownloadError, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds: a server asking for longer is waited on this long
MAX_DELAY = 30.0  # the backoff doubles up to this
NETWORK_ADVICE = "; check the network or proxy settings and try again"  # ends a final error


def _sleep(seconds: float, stop: Optional[threading.Event]) -> None:
    """Wait ``seconds``, or less when ``stop`` is set (tests replace this to record waits)."""
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


def retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header, or None when it says nothing usable.

    The header is either a number of seconds or an HTTP date; anything else (``soon``,
    ``-1``, garbage) is ignored, and our own backoff applies, rather than failing."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryBudget:
    """How many more retries one download may make, and how long to wait before each.

    Thread-safe: ranged parts draw on the same budget as the request that started them."""

    def __init__(self, retries: int, backoff: float) -> None:
        self.retries = retries
        self.used = 0
        self.causes: list[str] = []  # every failure retried so far, for the final message
        self._delay = backoff
        self._lock = threading.Lock()

    @classmethod
    def of(cls, config: Config) -> RetryBudget:
        return cls(config.retries, config.backoff)

    def pause(
        self,
        what: str,
        cause: str,
        *,
        wait: Optional[float] = None,
        stop: Optional[threading.Event] = None,
    ) -> bool:
        """After a retryable failure: wait and return True, or return False (no wait) when
        the budget is spent. ``wait`` is the server's Retry-After, if it sent one."""
        with self._lock:
            if self.used >= self.retries:
                return False
            self.used += 1
            self.causes.append(cause)
            if wait is None:
                wait = self._delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not crypto
                self._delay = min(self._delay * 2, MAX_DELAY)
        wait = min(wait, MAX_RETRY_AFTER)
        log.info("retrying %s in %.1fs after %s", what, wait, cause)
        _sleep(wait, stop)
        return not (stop is not None and stop.is_set())

    def earlier(self, last: str) -> str:
        """``"; earlier: A; B"``: the distinct causes retried before ``last`` (the final
        error names them, since the one that gave up is often not the telling one)."""
        seen = [c for c in dict.fromkeys(self.causes) if c != last][-3:]
        return f" (earlier: {'; '.join(seen)})" if seen else ""


def send_with_retries(
    budget: RetryBudget,
    send: Callable[[], Any],
    *,
    url: Callable[[], str],
    handle: str,
    stop: Optional[threading.Event] = None,
) -> Any:
    """``send()`` until it gives a response whose status is not transient; connection
    errors, 408, 429 and 5xx are retried while the budget lasts. ``url()`` names the host
    last talked to (after redirects) for the messages; TLS errors are never retried."""
    import urllib3

    attempts = 0
    while True:
        attempts += 1
        wait: Optional[float] = None
        try:
            response = send()
        except urllib3.exceptions.SSLError as exc:
            # Not retried: a certificate does not become valid by asking again.
            raise DownloadError(
                f"TLS error talking to {redact(url())} (attempt {attempts}, not retried): "
                f"{reason(exc)}; check the certificate, SSL_CERT_FILE, or (unsafe) "
                "TFHUB_DISABLE_CERT_VALIDATION=true",
                handle=handle,
                attempts=attempts,
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            last = f"{exc.__class__.__name__}: {reason(exc)}"
        else:
            if response is None or response.status not in RETRY_STATUS:
                return response  # None: the sender stopped on purpose (a redirect)
            last = f"HTTP {response.status} from {redact(url())}"
            wait = retry_after(response.headers.get("Retry-After"))
            response.drain_conn()
            response.release_conn()
        if not budget.pause(redact(url()), last, wait=wait, stop=stop):
            raise DownloadError(
                f"downloading {redact(url())} failed after {attempts_text(attempts)}: {last}"
                f"{budget.earlier(last)}{NETWORK_ADVICE}",
                handle=handle,
                attempts=attempts,
            )


def reason(exc: BaseException) -> str:
    """The useful part of a urllib3 error (its ``reason`` when it wraps another)."""
    found = getattr(exc, "reason", None)
    return str(found or exc)


def with_restarts(budget: RetryBudget, what: str, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` until it returns, starting it over when it raises
    :class:`RestartDownloadError` (a stream that broke and cannot be resumed in place).

    This is the one restart loop of the code base: an archive, each file of a Kaggle file
    set and the mirror's fill all come through here, so a restart always draws on the
    download's one budget. ``attempt`` must leave nothing behind when it raises. A restart
    does not wait: it answers a changed or unresumable object, not an overloaded server.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return attempt()
        except RestartDownloadError as exc:
            cause = f"restarted from the start: {exc}"
            if not budget.pause(what, cause, wait=0.0):
                raise DownloadError(
                    f"the download of {what} could not be completed after "
                    f"{attempts_text(attempts)} from the start: {exc}{budget.earlier(cause)}",
                    attempts=attempts,
                ) from None
            # info, as every retry: the error that gives up names the causes (``earlier``)
            log.info("restarting the download of %s from the start: %s", what, exc)


def attempts_text(count: int) -> str:
    """``1 attempt``, ``3 attempts``: the count in the one-line errors ("after 1 attempts")."""
    return f"{count} attempt{'' if count == 1 else 's'}"
