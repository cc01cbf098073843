"""Parallel ranged download: several connections, one ordered stream for the decompressor.

Why: many CDNs and object stores throttle each connection (tens of MB/s), while the
decompressor and the disk take hundreds. When the server allows it (``Accept-Ranges:
bytes``, a ``Content-Length`` and a strong ``ETag``), the rest of the body is cut into
spans fetched by up to ``connections`` threads, and handed to the one sequential consumer
in order, the first span's bytes as they arrive.

Adaptive by default: the body starts streaming over the response already open
(``fetch.http``), timed; only when that connection proves slower than ``SLOW`` does the
rest switch to spans (decided after ``MEASURE`` bytes, or as soon as so few came in that
the connection cannot be that fast), or at once when the first answer took ``FAR`` or
more (``far``). A fast, near server never pays for the reorder buffer.
``HUBCACHE_CONNECTIONS=N`` fixes the number (1 turns this off).

How large a span is decides how full the link gets. Every request waits for its answer
(a round trip, the server's own time) before its first byte, and a connection is idle
while it waits: a span that takes as long to receive as the wait wastes half of each
connection, which is what 2 MiB parts did on a far link (20 MiB/s per connection, 100 ms
per answer: half of what aria2c got there). So a span is sized to take ``SPAN_WAITS``
times the measured wait to receive at the measured speed of one connection (between
``PART_MIN`` and ``PART_MAX``), and the last spans shrink so that the connections finish
together. The plain response keeps streaming the first span instead of being dropped, so
the switch costs no extra wait either.

Memory stays bounded whatever the archive size: workers claim spans only while the
claimed bytes ahead of the consumer stay under ``WINDOW``; only bytes received and not yet
consumed are held (about half of that on average).

Every span is checked: 206, the exact ``Content-Range``, the same ``ETag``. Anything else
means the object changed or the server stopped honouring ranges: the download restarts
from zero as one stream (``RestartDownloadError``), never a silent mix of two versions. A
span broken mid-way resumes from its first missing byte, on the download's one budget.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .._config import MAX_CONNECTIONS
from .source import CancelledError

if TYPE_CHECKING:
    from .._config import Config
    from .retry import RetryBudget


class PartSource(Protocol):
    """What ranged parts need of the download they split (``http.HTTPSource`` is one).

    A protocol rather than an import, so that this module and ``http`` (which calls it)
    do not import each other."""

    total: Optional[int]
    etag: str
    accept_ranges: bool
    config: Config
    display: str
    budget: RetryBudget  # the download's one retry budget, shared with the parts
    answer_wait: float  # seconds the first request waited for its answer

    def range_request(self, start: int, end: Optional[int] = None) -> Any: ...


PART_MIN = 2 * 1024 * 1024  # smallest span (and the span size on a near, fast server)
PART_MAX = 16 * 1024 * 1024
TAIL_MIN = 1024 * 1024  # the last spans are never cut smaller than this
WINDOW = 96 * 1024 * 1024  # bytes claimed ahead of the consumer, at most (peak memory)
SPAN_WAITS = 8  # a span takes this many answer waits to receive: ~90 % of a connection
READ = 1024 * 1024  # bytes per read of a span, handed on as soon as read
MEASURE = 2 * 1024 * 1024  # bytes streamed on the first connection before deciding
MIN_SIZE = 16 * 1024 * 1024  # smaller archives are not worth a second connection
JOIN_GRACE = 1.0  # seconds the consumer waits for workers after a cancel
SLOW = 50e6  # bytes/s of one connection under which more connections are opened
FAR = 0.04  # seconds: a first answer this slow means a far server (see far())
PART = PART_MIN  # the span size when nothing was measured (kept for callers and tests)


def usable(source: PartSource, connections: Optional[int]) -> bool:
    """Whether the response allows ranged parts and the settings ask for them."""
    if connections == 1 or source.total is None or source.total < MIN_SIZE:
        return False
    strong = bool(source.etag) and not source.etag.startswith("W/")
    return source.accept_ranges and strong


def decided(done: int, elapsed: float) -> bool:
    """Whether ``done`` bytes in ``elapsed`` seconds of waiting are enough to decide: after
    ``MEASURE`` bytes, or once fewer than that took longer than ``SLOW`` allows (then the
    connection is slow for sure, and every further wait would only delay the switch)."""
    return done >= MEASURE or elapsed >= MEASURE / SLOW


def far(connections: Optional[int], answer_wait: float) -> bool:
    """Whether the first answer took so long (``FAR``) that the server is far: parts at
    once, without measuring. A connection's speed is bounded by its window over the round
    trip, so a far server is slow per connection however fast the link is; measuring would
    cost about one more answer wait before the parts begin (~15 % of a 200 MB download on
    a 100 ms link). Only in the adaptive mode: a fixed ``HUBCACHE_CONNECTIONS`` decides."""
    return connections is None and answer_wait >= FAR


def wanted(connections: Optional[int], done: int, elapsed: float) -> bool:
    """After the first ``done`` bytes took ``elapsed`` seconds: switch to parts?"""
    if connections is not None:
        return connections > 1
    return done / max(elapsed, 1e-6) < SLOW


def span_size(speed: float, wait: float) -> int:
    """Bytes per span for one connection of ``speed`` bytes/s whose answers take ``wait``
    seconds: long enough that the wait costs about 1/(SPAN_WAITS+1) of the connection."""
    return int(min(PART_MAX, max(PART_MIN, SPAN_WAITS * speed * wait)))


class _Span:
    """Bytes ``start``..``end`` (exclusive) of the body, as they arrive."""

    __slots__ = ("chunks", "end", "error", "got", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.chunks: collections.deque[bytes] = collections.deque()
        self.got = 0  # bytes received so far
        self.error: Optional[BaseException] = None

    @property
    def done(self) -> bool:
        return self.start + self.got >= self.end


class RangedStream:
    """Yields the body of ``source`` from byte ``base`` on, in order, fetched in spans.

    ``head``: the response already streaming the body at ``base`` (it carries on with the
    first span, then is closed); ``speed``: what that connection was measured at."""

    def __init__(
        self,
        source: PartSource,
        base: int,
        connections: Optional[int],
        *,
        head: Any = None,
        speed: float = 0.0,
    ) -> None:
        self.source = source
        self.base = base
        self.total = source.total or 0
        self.limit = min(connections or MAX_CONNECTIONS, MAX_CONNECTIONS)
        self._cond = threading.Condition()
        self._spans: collections.deque[_Span] = collections.deque()  # claimed, in order
        self._cursor = base  # first byte not yet claimed
        self._consumed = base  # first byte not yet handed to the consumer
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._inflight: set[Any] = set()  # responses being read, shut down on cancel
        self._cancelled = threading.Event()  # wakes workers waiting out a retry backoff
        self._head = head
        self._speed = speed  # one connection's bytes/s, refined by every span
        self._wait = max(0.0, getattr(source, "answer_wait", 0.0))  # likewise, per answer
        self._claims = 0  # spans claimed so far
        self.requests = 0  # range requests sent (for the benchmark and the tests)
        if head is not None:
            self._inflight.add(head)

    # -- workers -------------------------------------------------------------------------
    def _size(self) -> int:
        """The next span's size (lock held).

        The measured ideal (``span_size``), with two corrections. The first round ramps up
        (the k-th of N spans gets k/N of the ideal): spans started together would finish
        together, the consumer would wait for the first one while the others pile up in
        memory; staggered, they finish one after the other, as the consumer wants them.
        Near the end a span is cut so that this connection finishes with the others: it
        gets its share of everything still to receive (unclaimed, and outstanding in
        spans); every connection waits once more for an answer, so the waits cancel out."""
        ideal = span_size(self._speed or SLOW, self._wait)  # unmeasured: at least SLOW
        ideal = min(ideal, WINDOW // self.limit)
        if self._claims < self.limit:
            ideal = max(PART_MIN, ideal * (self._claims + 1) // self.limit)
        left = self.total - self._cursor
        outstanding = sum(s.end - s.start - s.got for s in self._spans)
        fair = (left + outstanding) // self.limit
        size = min(ideal, max(fair, TAIL_MIN))
        return left if left - size < TAIL_MIN else size

    def _claim(self) -> Optional[_Span]:
        with self._cond:
            while (
                not self._stop
                and self._cursor < self.total
                and self._cursor - self._consumed >= WINDOW
            ):
                self._cond.wait()
            if self._stop or self._cursor >= self.total:
                return None
            span = _Span(self._cursor, self._cursor + self._size())
            self._claims += 1
            self._cursor = span.end
            self._spans.append(span)
            return span

    def _work(self, head: Any = None) -> None:
        while True:
            span = self._claim()
            if span is None:
                if head is not None:
                    self._drop(head)
                return
            try:
                self._fetch(span, head)
            except BaseException as exc:
                with self._cond:
                    span.error = exc
                    self._cond.notify_all()
                return
            head = None

    def _fetch(self, span: _Span, head: Any) -> None:
        """One span; a broken span resumes after its last byte, on the download's budget."""
        import urllib3

        while not span.done:
            response = head
            head = None
            if response is None:
                began = time.monotonic()
                response = self.source.range_request(span.start + span.got, span.end - 1)
                answered = time.monotonic()
                with self._cond:
                    self.requests += 1
                    self._wait = 0.5 * self._wait + 0.5 * (answered - began)
                    if self._stop:
                        response.close()
                        response.release_conn()
                        raise CancelledError("the ranged download was cancelled")
                    self._inflight.add(response)
                closing = False
            else:
                closing = True  # the plain response runs on past the span: never reuse it
            try:
                self._read(span, response, reuse=not closing)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                with self._cond:
                    if self._stop:
                        raise CancelledError("the ranged download was cancelled") from None
                cause = f"{exc.__class__.__name__}: {exc}"
                where = f"bytes {span.start}-{span.end - 1} of {self.source.display}"
                if not self.source.budget.pause(where, cause, stop=self._cancelled):
                    raise
            finally:
                with self._cond:
                    self._inflight.discard(response)
                if closing:
                    self._drop(response)

    def _read(self, span: _Span, response: Any, *, reuse: bool) -> None:
        """Read the span's missing bytes from ``response``, handing each read on at once.
        ``reuse=False``: the response goes on past the span, so its connection is closed
        before it is released (a pooled connection with body bytes left would answer the
        next request with them)."""
        began, first = time.monotonic(), span.got
        try:
            while not span.done:
                data = response.read(min(READ, span.end - span.start - span.got))
                if not data:
                    break
                with self._cond:
                    span.chunks.append(data)
                    span.got += len(data)
                    self._cond.notify_all()
        except BaseException:
            response.close()  # a broken or cancelled connection must not go back to the pool
            raise
        finally:
            if not reuse or not span.done:
                response.close()
            response.release_conn()
        if not span.done:
            raise OSError(f"range body ended after {span.got} of {span.end - span.start} bytes")
        took = time.monotonic() - began
        if took > 0 and span.got - first >= PART_MIN:
            speed = (span.got - first) / took
            with self._cond:
                self._speed = 0.5 * (self._speed + speed) if self._speed else speed

    def _drop(self, response: Any) -> None:
        with self._cond:
            self._inflight.discard(response)
        with contextlib.suppress(Exception):
            response.close()
            response.release_conn()

    def _spawn(self, count: int) -> None:
        for i in range(count):
            head, self._head = (self._head, None) if i == 0 else (None, self._head)
            thread = threading.Thread(
                target=self._work, args=(head,), name="hubcache-range", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # -- consumer ------------------------------------------------------------------------
    def chunks(self) -> Iterator[bytes]:
        # politely: no more connections than PART_MIN spans would fill
        self._spawn(max(1, min(self.limit, -(-(self.total - self.base) // PART_MIN))))
        try:
            while True:
                with self._cond:
                    while True:
                        if self._stop:  # cancelled from another thread (Ctrl-C)
                            raise CancelledError("the download was cancelled")
                        if self._consumed >= self.total:
                            return
                        span = self._spans[0] if self._spans else None
                        if span is not None and (span.chunks or span.error is not None):
                            break
                        self._cond.wait()
                    if span.error is not None and not span.chunks:
                        raise span.error
                    out = list(span.chunks)
                    span.chunks.clear()
                    self._consumed += sum(len(c) for c in out)
                    if span.done and not span.chunks:
                        self._spans.popleft()
                    self._cond.notify_all()
                yield from out
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop the workers without waiting out their reads: a worker blocked on a slow
        part would otherwise hold Ctrl-C for up to the read timeout. Sockets being read are
        shut down (the read fails at once), backoff waits end, and each thread gets a short
        join; a thread still busy after that is a daemon and cannot outlive the process."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            inflight = list(self._inflight)
        self._cancelled.set()
        head, self._head = self._head, None  # never handed to a worker
        if head is not None:
            self._drop(head)
        for response in inflight:
            with contextlib.suppress(Exception):
                response.shutdown()
        deadline = time.monotonic() + JOIN_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
