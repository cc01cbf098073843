"""HTTP(S) source: one archive over the network, resumable, with the network policy.

Policy (docs/architecture.md): connect and read timeouts and a stall detector
(``fetch.pool``); retries on connection errors, 408, 429 and 5xx drawn from the download's
one budget (``fetch.retry``); redirects followed by hand so each hop is checked (http→https
fine, https→http refused, non-HTTP schemes refused, at most 10 hops, extra headers never
sent to another host); query strings redacted from everything we log or raise. A broken
stream resumes with ``Range`` + ``If-Range``; large bodies may be fetched in parallel parts
(``fetch.ranges``)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from .._config import Config
from .._errors import DownloadError, HTTPStatusError, ModelNotFoundError
from .pool import StallError, manager, read_body, split_credentials
from .retry import RetryBudget, attempts_text, reason, send_with_retries
from .source import CHUNK, CancelledError, RestartDownloadError, Source, redact

if TYPE_CHECKING:
    from .ranges import RangedStream

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
_REDIRECT_STATUS = {301, 302, 303, 307, 308}


class Answer(NamedTuple):
    """What one request learned, returned to its caller and kept by nobody else: the
    opening request, a resume and every ranged part (each on its own thread) get their own."""

    response: Any  # the final response; None when stopped before a redirect (``stopped``)
    url: str  # the URL that answered, after redirects (the stopped one, when stopped)
    hops: tuple[str, ...]  # every URL requested, redirects included, ``url`` last
    stopped: str  # the redirect target ``stop_at`` stopped before, or ""


class _Aim(NamedTuple):
    """Where requests go: replaced whole by :meth:`HTTPSource.retarget`, read once by each."""

    url: str
    auth: dict[str, str]  # credentials from the URL's user info, for the origin host only
    origin: str  # the URL user headers belong to (its host)


class HTTPSource(Source):
    """One archive over HTTP(S), resumable with Range + If-Range.

    Shared between threads (ranged parts run on several) and the rule for each:

    * where requests go (``url``, its credentials and origin) is one value, replaced whole
      by :meth:`retarget` (a fresh signed URL from any part's thread, under the renewing
      source's lock) or by :meth:`follow_on`; every request reads it once, at its start;
    * ``hops`` and ``stopped`` are the chain of the request that opened the source, written
      by :meth:`open` and :meth:`follow_on` only, in the caller's thread, before any part
      starts; the stager and ``kaggle.redirects`` read them from there;
    * what any other request learned (a resume's or a part's final URL and redirects) is
      its :class:`Answer`, returned to it and never stored on the source;
    * the metadata (``total``, ``etag``...) is read from the opening response.
    """

    def __init__(
        self, url: str, handle: str, config: Config, budget: Optional[RetryBudget] = None
    ) -> None:
        self.handle = handle
        self.config = config
        self.retarget(url)
        self.budget = budget if budget is not None else RetryBudget.of(config)
        self._cancelled = threading.Event()  # see cancel(): ends reads, resumes and waits
        self._stream: Optional[RangedStream] = None
        self._response: Any = None
        self._offset = 0
        self.accept_ranges = False
        self.answer_wait = 0.0

    def retarget(self, url: str) -> None:
        """Aim the source at ``url`` (at creation, or a fresh signed URL replacing a refused
        one): credentials in it become a header for its host only (see ``_follow``) and
        are never shown; that host is the origin, the one user headers belong to. One
        assignment, so a part starting meanwhile sees the old aim or the new, never a mix."""
        bare, auth = split_credentials(url)
        if any(name.lower() == "authorization" for name, _ in self.config.headers):
            auth = {}  # the user's explicit header wins
        self._aim = _Aim(bare, auth, bare)
        self.display = redact(url)

    @property
    def url(self) -> str:
        """The URL the next request starts from (credentials removed)."""
        return self._aim.url

    def _move_to(self, url: str) -> None:
        """Start later requests at ``url`` with the same credentials and origin (a followed
        redirect, an API's own answer)."""
        self._aim = self._aim._replace(url=url)

    # request with redirects, retries and status handling
    def open(self) -> None:
        manager(self.url, self.config)  # imports and pool set-up: not the wait
        began = time.monotonic()
        answer = self._request({})
        # how long the server took to answer: says whether it is far, and sizes ranged
        # spans (fetch.ranges)
        self.answer_wait = time.monotonic() - began
        self.hops, self.stopped = answer.hops, answer.stopped  # the opening chain
        self._response = answer.response
        if self._response is not None:  # None: stopped before a redirect (``stop_at``)
            self._read_metadata(self._response)

    def probe(self) -> Optional[int]:
        """The object's length without its body (the mirror's answer to a ``HEAD``): a GET
        of its first byte, ``Range: bytes=0-0``, whose ``Content-Range`` names the total.
        Not a HEAD: signed storage URLs (those Kaggle and S3 redirect to) are signed for
        one method, and a HEAD of a URL signed for GET is refused. A server that ignores
        ``Range`` answers 200 with its length, and that connection is dropped unread. None
        when no length is given; ModelNotFoundError and the rest as ``open`` raises them."""
        response = self._request({"Range": "bytes=0-0"}).response
        if response is None:  # stopped before a redirect (``stop_at``)
            return None
        try:
            content_range = response.headers.get("Content-Range", "")
            if response.status == 206:
                match = re.fullmatch(r"bytes 0-0/([0-9]+)", content_range)
                response.read(2)  # the one byte: the connection can be used again
                return int(match.group(1)) if match else None
            if response.status == 416:  # no first byte: an empty object
                match = re.fullmatch(r"bytes \*/([0-9]+)", content_range)
                return int(match.group(1)) if match else 0
            self._read_metadata(response)
            response.close()  # never read a whole body to learn its length
            return self.total
        finally:
            response.release_conn()

    def follow_on(self) -> None:
        if not self.stopped:
            raise RuntimeError("follow_on() without a stopped redirect")
        earlier = self.hops[:-1]
        self._move_to(self.stopped)
        self.stopped, self.stop_at = "", None
        self.open()
        self.hops = earlier + self.hops

    def _read_metadata(self, response: Any) -> None:
        headers = response.headers
        length = headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.content_type = headers.get("Content-Type", "")
        self.etag = headers.get("ETag", "")
        self.last_modified = headers.get("Last-Modified", "")
        self.accept_ranges = headers.get("Accept-Ranges", "").lower() == "bytes"

    def _request(self, extra_headers: dict[str, str], aim: Optional[_Aim] = None) -> Answer:
        """One request with its retries and redirects, from ``aim`` (the aim as it is now
        when None). Its chain is recorded in a list of its own (the messages of a retry name
        its last hop)."""
        aim = self._aim if aim is None else aim
        trail = [aim.url]
        response = send_with_retries(
            self.budget,
            lambda: self._follow(aim, extra_headers, trail),
            url=lambda: trail[-1],
            handle=self.handle,
            stop=self._cancelled,
        )
        hops = tuple(trail)
        if response is None:
            return Answer(None, hops[-1], hops, hops[-1])
        if not (response.status == 416 and "Range" in extra_headers):
            # (a 416 to a range: the caller turns it into a restart from zero)
            self._check_status(response, hops[-1])
        return Answer(response, hops[-1], hops, "")

    def _follow(self, aim: _Aim, extra_headers: dict[str, str], trail: list[str]) -> Any:
        """One attempt: GET, following redirects by hand (each hop checked); ``trail``
        (this request's own) is filled with every URL requested. None when ``stop_at``
        stopped before a redirect target (the last of ``trail``)."""
        import urllib3

        url = aim.url
        trail[:] = [url]
        origin = _host(aim.origin)
        on_origin = True  # once a hop leaves the origin host, user headers are never sent
        timeout = urllib3.Timeout(
            connect=self.config.connect_timeout, read=self.config.read_timeout
        )
        for _ in range(MAX_REDIRECTS + 1):
            on_origin = on_origin and _host(url) == origin
            headers = {**aim.auth, **dict(self.config.headers)} if on_origin else {}
            headers.update({"Accept-Encoding": "identity", "User-Agent": _user_agent()})
            headers.update(extra_headers)
            response = manager(url, self.config).request(
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
                return response
            location = response.headers.get("Location", "")
            response.drain_conn()
            response.release_conn()
            target = urllib.parse.urljoin(url, location)
            self._check_redirect(url, target)
            url = target
            trail.append(target)
            if self.stop_at is not None and self.stop_at(target):
                return None
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

    def _check_status(self, response: Any, final_url: str) -> None:
        """Raise our error for a response that is not the object (``final_url``: the URL
        that answered, this request's own)."""
        status = response.status
        if status in (200, 206):
            return
        where = redact(final_url)
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
                f" (final host {urllib.parse.urlsplit(final_url).hostname}): the model "
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
        # The body starts over this one connection, timed; the rest switches to parallel
        # ranged parts only if it proved slow (or N were asked for). It is decided after
        # MEASURE bytes, or earlier once so few came in that it must be slow (ranges.decided).
        # Only the time spent waiting for the network counts: time the consumer spends
        # inflating and writing between two reads says nothing about the connection (on a
        # fast link, counting it made a busy machine open parallel parts for nothing).
        measuring = self._offset == 0 and _ranges.usable(self, self.config.connections)
        if measuring and _ranges.far(self.config.connections, self.answer_wait):
            # a far server: one connection cannot fill the link, and measuring it first
            # would cost another answer wait before the parts start (ranges.far)
            self._response = None
            yield from self._ranged(response, 0.0)
            return
        waited = 0.0
        resumes = 0
        while True:
            try:
                body = read_body(response, self.config, CHUNK)
                while True:
                    began = time.monotonic() if measuring else 0.0
                    data = next(body, None)
                    if data is None:
                        break
                    self._offset += len(data)
                    if measuring:
                        waited += time.monotonic() - began
                    yield data
                    if measuring and _ranges.decided(self._offset, waited):
                        measuring = False
                        if _ranges.wanted(self.config.connections, self._offset, waited):
                            # the rest comes in parts; this response carries on with the
                            # first one (the ranged stream closes it after that)
                            self._response = None
                            yield from self._ranged(response, self._offset / max(waited, 1e-6))
                            return
                response.release_conn()
                if self.total is not None and self._offset != self.total:
                    raise urllib3.exceptions.ProtocolError(
                        f"body ended after {self._offset} of {self.total} bytes"
                    )
                return
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, StallError) or self._cancelled.is_set():
                    response.close()  # a dripping connection must not go back to the pool
                response.release_conn()
                if self._cancelled.is_set():
                    raise CancelledError("the download was cancelled") from None
                resumes += 1
                cause = f"{exc.__class__.__name__}: {reason(exc)}"
                log.info(
                    "download of %s broke after %d bytes (%s); resuming",
                    self.display,
                    self._offset,
                    cause,
                )
                self._validator()  # no way to resume: restart now, without a wasted wait
                if not self.budget.pause(self.display, cause):
                    raise DownloadError(
                        f"the download of {self.display} kept breaking: {cause}, after "
                        f"{self._offset} of {self.total or '?'} bytes and {attempts_text(resumes)}"
                        f"{self.budget.earlier(cause)}; check the network and try again",
                        handle=self.handle,
                        attempts=resumes,
                    ) from None
                response = self._resume()
                self._response = response

    def _ranged(self, head: Any, speed: float) -> Iterator[bytes]:
        from . import ranges as _ranges

        stream = self._stream = _ranges.RangedStream(
            self, self._offset, self.config.connections, head=head, speed=speed
        )
        if self._cancelled.is_set():
            stream.cancel()  # closes the head response too
            raise CancelledError("the download was cancelled")
        try:
            for data in stream.chunks():
                self._offset += len(data)
                yield data
        finally:
            self._stream = None

    def _resume(self) -> Any:
        return self.range_request(self._offset)

    def renew(self, refused: HTTPStatusError, url: str) -> bool:
        """After ``url`` was refused mid-download: True when ``self.url`` now names the same
        object afresh (worth asking once more), False to let the refusal stand.

        The one hook through which a source whose URL expires (a signed storage URL,
        ``kaggle.signed``) asks its provider for a fresh one, for a resume and for every
        ranged part alike; called from any part's thread. A plain URL has nothing to renew."""
        return False

    def range_request(self, start: int, end: Optional[int] = None) -> Any:
        """GET ``bytes=start-end`` of the same object, or raise RestartDownloadError.

        ``If-Range`` makes a changed object come back whole (200) instead of a mix of two
        versions; that, a wrong ``Content-Range`` or a new ETag all mean: start over. A
        refused URL (an expired signature) is renewed once through :meth:`renew`.
        """
        validator = self._validator()
        last = (self.total or 0) - 1 if end is None else end
        headers = {"Range": f"bytes={start}-{last}", "If-Range": validator}
        aim = self._aim  # the URL this request is refused at is the one it used
        try:
            answer = self._request(headers, aim)
        except HTTPStatusError as exc:
            if not self.renew(exc, aim.url):
                raise
            answer = self._request(headers)  # a fresh URL refused as well: final
        response = answer.response
        if response is None:  # ``stop_at`` matched a part's redirect: not this object
            raise RestartDownloadError(f"a range request was redirected to {redact(answer.url)}")
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

    def _validator(self) -> str:
        """What ``If-Range`` carries, or RestartDownloadError when resuming is unsafe."""
        validator = self.etag if self.etag and not self.etag.startswith("W/") else ""
        validator = validator or self.last_modified
        if not validator or self.total is None:
            raise RestartDownloadError("the server gave no validator to resume safely")
        return validator

    def cancel(self) -> None:
        self._cancelled.set()
        stream, response = self._stream, self._response
        if stream is not None:
            stream.cancel()
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # a read blocked in another thread fails at once

    def close(self) -> None:
        if self._response is not None:
            self._response.release_conn()
            self._response = None

    def abort(self) -> None:
        """Break a read blocked in another thread (a server shutting down): the socket is
        shut, so that read ends at once with an error instead of waiting for the peer."""
        response = self._response
        if response is not None:
            response.shutdown()


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
