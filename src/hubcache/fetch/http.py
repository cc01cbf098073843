"""HTTP(S) source: one archive over the network, resumable, with the network policy.

Policy (docs/architecture.md): connect and read timeouts and a stall detector
(``fetch.pool``); retries with exponential backoff and jitter on connection errors, 408, 429
and 5xx, honouring ``Retry-After`` (capped); redirects followed by hand so each hop is
checked (http→https fine, https→http refused, non-HTTP schemes refused, at most 10 hops,
extra headers never sent to another host); query strings redacted from everything we log or
raise. A broken stream resumes with ``Range`` + ``If-Range``; large bodies may be fetched in
parallel parts (``fetch.ranges``)."""

from __future__ import annotations

import email.utils
import logging
import random
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Optional

from .._config import Config
from .._errors import DownloadError, HTTPStatusError, ModelNotFoundError
from .pool import StallError, manager, read_body
from .source import CHUNK, RestartDownloadError, Source, redact

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 60.0
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = email.utils.parsedate_to_datetime(value) if value else None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HTTPSource(Source):
    """One archive over HTTP(S), resumable with Range + If-Range."""

    def __init__(self, url: str, handle: str, config: Config) -> None:
        self.url = url
        self.handle = handle
        self.config = config
        self.display = redact(url)
        self.final_url = url
        self.attempts = 0
        self._response: Any = None
        self._offset = 0
        self.accept_ranges = False

    # request with redirects, retries and status handling
    def open(self) -> None:
        self._response = self._request({})
        self._read_metadata(self._response)

    def _read_metadata(self, response: Any) -> None:
        headers = response.headers
        length = headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.content_type = headers.get("Content-Type", "")
        self.etag = headers.get("ETag", "")
        self.last_modified = headers.get("Last-Modified", "")
        self.accept_ranges = headers.get("Accept-Ranges", "").lower() == "bytes"

    def _request(self, extra_headers: dict[str, str]) -> Any:
        import urllib3

        config = self.config
        last: str = ""
        delay = config.backoff
        for attempt in range(config.retries + 1):
            self.attempts += 1
            try:
                response = self._follow(extra_headers)
            except urllib3.exceptions.SSLError as exc:
                # Not retried: a certificate does not become valid by asking again.
                raise DownloadError(
                    f"TLS error talking to {redact(self.final_url)} (attempt {self.attempts}, "
                    f"not retried): {_reason(exc)}; check the certificate, SSL_CERT_FILE, or "
                    "(unsafe) TFHUB_DISABLE_CERT_VALIDATION=true",
                    handle=self.handle,
                    attempts=self.attempts,
                ) from None
            except urllib3.exceptions.HTTPError as exc:
                last = f"{exc.__class__.__name__}: {_reason(exc)}"
                wait: Optional[float] = None
            else:
                if response.status == 416 and "Range" in extra_headers:
                    return response  # the caller turns it into a restart from zero
                if response.status not in _RETRY_STATUS:
                    return self._check_status(response)
                last = f"HTTP {response.status} from {redact(self.final_url)}"
                wait = _retry_after(response.headers.get("Retry-After"))
                response.drain_conn()
                response.release_conn()
            if attempt == config.retries:
                break
            if wait is None:
                wait = delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 30.0)
            wait = min(wait, MAX_RETRY_AFTER)
            log.info("retrying %s in %.1fs after %s", self.display, wait, last)
            time.sleep(wait)
        raise DownloadError(
            f"downloading {self.display} failed after {self.attempts} attempts: {last}; "
            "check the network or proxy settings and try again",
            handle=self.handle,
            attempts=self.attempts,
        )

    def _follow(self, extra_headers: dict[str, str]) -> Any:
        import urllib3

        url = self.url
        self.final_url = url
        origin = _host(url)
        on_origin = True  # once a hop leaves the origin host, user headers are never sent
        timeout = urllib3.Timeout(
            connect=self.config.connect_timeout, read=self.config.read_timeout
        )
        for _ in range(MAX_REDIRECTS + 1):
            on_origin = on_origin and _host(url) == origin
            headers = dict(self.config.headers) if on_origin else {}
            headers.update({"Accept-Encoding": "identity", "User-Agent": _user_agent()})
            headers.update(extra_headers)
            response = manager(url, self.config.verify_tls).request(
                "GET",
                url,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=timeout,
            )
            if response.status not in _REDIRECT_STATUS:
                self.final_url = url
                return response
            location = response.headers.get("Location", "")
            response.drain_conn()
            response.release_conn()
            target = urllib.parse.urljoin(url, location)
            self._check_redirect(url, target)
            url = self.final_url = target
        raise DownloadError(
            f"{self.display} redirected more than {MAX_REDIRECTS} times", handle=self.handle
        )

    def _check_redirect(self, source: str, target: str) -> None:
        scheme = urllib.parse.urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(
                f"{redact(source)} redirected to a {scheme or 'relative'}: URL, which is "
                "refused (only http and https are followed)",
                handle=self.handle,
            )
        if urllib.parse.urlsplit(source).scheme == "https" and scheme == "http":
            raise DownloadError(
                f"{redact(source)} redirected from https to plain http ({redact(target)}); "
                "refused because it would drop transport security",
                handle=self.handle,
            )

    def _check_status(self, response: Any) -> Any:
        status = response.status
        if status in (200, 206):
            return response
        where = redact(self.final_url)
        body = response.read(512, decode_content=True) if status != 304 else b""
        response.release_conn()
        if status in (404, 410):
            raise ModelNotFoundError(
                f"{where} answered {status}: no model at this handle; check the URL for "
                "typos and the model's version number",
                handle=self.handle,
                status=status,
            )
        if status in (401, 403):
            raise HTTPStatusError(
                f"{where} answered {status} {'Unauthorized' if status == 401 else 'Forbidden'}"
                f" (final host {urllib.parse.urlsplit(self.final_url).hostname}): the model "
                "needs credentials, or a signed download URL has expired; try again, or "
                "check access to the model",
                handle=self.handle,
                status=status,
                body=body[:200],
            )
        raise HTTPStatusError(f"{where} answered HTTP {status}", handle=self.handle, status=status)

    # streaming with resume
    def chunks(self) -> Iterator[bytes]:
        import urllib3

        from . import ranges as _ranges

        response = self._response
        # The first MEASURE bytes always come over this one connection, timed; the rest
        # switches to parallel ranged parts only if it proved slow (or N were asked for).
        measuring = self._offset == 0 and _ranges.usable(self, self.config.connections)
        began = time.monotonic()
        resumes = 0
        while True:
            try:
                for data in read_body(response, self.config, CHUNK):
                    self._offset += len(data)
                    yield data
                    if measuring and self._offset >= _ranges.MEASURE:
                        measuring = False
                        elapsed = time.monotonic() - began
                        if _ranges.wanted(self.config.connections, self._offset, elapsed):
                            response.close()  # the rest comes in parts
                            response.release_conn()
                            self._response = None
                            yield from self._ranged()
                            return
                response.release_conn()
                if self.total is not None and self._offset != self.total:
                    raise urllib3.exceptions.ProtocolError(
                        f"body ended after {self._offset} of {self.total} bytes"
                    )
                return
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, StallError):
                    response.close()  # a dripping connection must not go back to the pool
                response.release_conn()
                resumes += 1
                cause = f"{exc.__class__.__name__}: {_reason(exc)}"
                if resumes > self.config.retries:
                    raise DownloadError(
                        f"the download of {self.display} kept breaking: {cause}, after "
                        f"{self._offset} of {self.total or '?'} bytes and {resumes} attempts; "
                        "check the network and try again",
                        handle=self.handle,
                        attempts=resumes,
                    ) from None
                log.info(
                    "download of %s broke after %d bytes (%s); resuming",
                    self.display,
                    self._offset,
                    cause,
                )
                response = self._resume()
                self._response = response

    def _ranged(self) -> Iterator[bytes]:
        from . import ranges as _ranges

        stream = _ranges.RangedStream(self, self._offset, self.config.connections)
        for data in stream.chunks():
            self._offset += len(data)
            yield data

    def _resume(self) -> Any:
        return self.range_request(self._offset)

    def range_request(self, start: int, end: Optional[int] = None) -> Any:
        """GET ``bytes=start-end`` of the same object, or raise RestartDownloadError.

        ``If-Range`` makes a changed object come back whole (200) instead of a mix of two
        versions; that, a wrong ``Content-Range`` or a new ETag all mean: start over.
        """
        validator = self.etag if self.etag and not self.etag.startswith("W/") else ""
        validator = validator or self.last_modified
        if not validator or self.total is None:
            raise RestartDownloadError("the server gave no validator to resume safely")
        last = self.total - 1 if end is None else end
        response = self._request({"Range": f"bytes={start}-{last}", "If-Range": validator})
        expected = f"bytes {start}-{last}/{self.total}"
        problem = ""
        if response.status != 206 or response.headers.get("Content-Range") != expected:
            problem = (
                f"the server answered a range request with {response.status} "
                f"{response.headers.get('Content-Range', '')!r}"
            )
        elif self.etag and response.headers.get("ETag", self.etag) != self.etag:
            problem = "the archive changed on the server while downloading"
        if problem:
            response.close()  # never drain: a 200 here would be the whole archive again
            response.release_conn()
            raise RestartDownloadError(problem)
        return response

    def close(self) -> None:
        if self._response is not None:
            self._response.release_conn()
            self._response = None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _host(url: str) -> tuple[str, int]:
    """(host, port) with default ports filled in: what "the same host" means for headers."""
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        port = -1
    return (parts.hostname or "").lower(), port


def _user_agent() -> str:
    from .._version import __version__

    return f"hubcache/{__version__}"
