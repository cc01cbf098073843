"""Parallel ranged download: several connections, one ordered stream for the decompressor.

Why: many CDNs and object stores throttle each connection (tens of MB/s), while the
decompressor and the disk take hundreds. When the server allows it (``Accept-Ranges:
bytes``, a ``Content-Length`` and a strong ``ETag``), the body is cut into parts of
``PART`` bytes fetched by up to ``connections`` threads; a reorder buffer hands them to the
one sequential consumer in order. The buffer holds at most ``connections + 2`` parts, so
memory stays bounded (about 20 MB) whatever the archive size.

Adaptive by default: the first ``MEASURE`` bytes always stream over the response already
open (``fetch.http``), timed; only when that connection proves slower than ``SLOW`` does
the rest of the body switch to parts. A fast link never pays for the reorder buffer.
``HUBCACHE_CONNECTIONS=N`` fixes the number (1 turns this off).

Every part is checked: 206, the exact ``Content-Range``, the same ``ETag``. Anything else
means the object changed or the server stopped honouring ranges: the download restarts
from zero as one stream (``RestartDownloadError``), never a silent mix of two versions.
"""

from __future__ import annotations

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

    def range_request(self, start: int, end: Optional[int] = None) -> Any: ...


PART = 2 * 1024 * 1024
MEASURE = 4 * 1024 * 1024  # bytes streamed on the first connection before deciding
MIN_SIZE = 16 * 1024 * 1024  # smaller archives are not worth a second connection
JOIN_GRACE = 1.0  # seconds the consumer waits for workers after a cancel
SLOW = 50e6  # bytes/s of one connection under which more connections are opened


def usable(source: PartSource, connections: Optional[int]) -> bool:
    """Whether the response allows ranged parts and the settings ask for them."""
    if connections == 1 or source.total is None or source.total < MIN_SIZE:
        return False
    strong = bool(source.etag) and not source.etag.startswith("W/")
    return source.accept_ranges and strong


def wanted(connections: Optional[int], done: int, elapsed: float) -> bool:
    """After the first ``done`` bytes took ``elapsed`` seconds: switch to parts?"""
    if connections is not None:
        return connections > 1
    return done / max(elapsed, 1e-6) < SLOW


class RangedStream:
    """Yields the body of ``source`` from byte ``base`` on, in order, fetched in parts."""

    def __init__(self, source: PartSource, base: int, connections: Optional[int]) -> None:
        self.source = source
        self.base = base
        self.total = source.total or 0
        self.parts = -(-(self.total - base) // PART)
        self.limit = min(connections or MAX_CONNECTIONS, MAX_CONNECTIONS)
        self._cond = threading.Condition()
        self._results: dict[int, Any] = {}
        self._claimed = 0
        self._consumed = 0
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._inflight: set[Any] = set()  # responses being read, shut down on cancel
        self._cancelled = threading.Event()  # wakes workers waiting out a retry backoff

    # -- workers -------------------------------------------------------------------------
    def _claim(self) -> Optional[int]:
        with self._cond:
            while not self._stop and self._claimed >= self._consumed + self.limit + 2:
                self._cond.wait()
            if self._stop or self._claimed >= self.parts:
                return None
            index = self._claimed
            self._claimed += 1
            return index

    def _work(self) -> None:
        while True:
            index = self._claim()
            if index is None:
                return
            try:
                result: Any = self._fetch(index)
            except BaseException as exc:
                result = exc
            with self._cond:
                self._results[index] = result
                self._cond.notify_all()
            if isinstance(result, BaseException):
                return

    def _fetch(self, index: int) -> list[bytes]:
        """One part; a broken part is fetched again, alone, on the download's one budget."""
        import urllib3

        start = self.base + index * PART
        end = min(start + PART, self.total) - 1
        while True:
            response = self.source.range_request(start, end)
            with self._cond:
                if self._stop:
                    response.close()
                    response.release_conn()
                    raise CancelledError("the ranged download was cancelled")
                self._inflight.add(response)
            try:
                return _read_exactly(response, end - start + 1)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                cause = f"{exc.__class__.__name__}: {exc}"
                if not self.source.budget.pause(
                    f"part {index} of {self.source.display}", cause, stop=self._cancelled
                ):
                    raise
            finally:
                with self._cond:
                    self._inflight.discard(response)

    def _spawn(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._work, name="hubcache-range", daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- consumer ------------------------------------------------------------------------
    def chunks(self) -> Iterator[bytes]:
        self._spawn(self.limit)
        try:
            for index in range(self.parts):
                with self._cond:
                    while index not in self._results:
                        if self._stop:  # cancelled from another thread (Ctrl-C)
                            raise CancelledError("the download was cancelled")
                        self._cond.wait()
                    result = self._results.pop(index)
                    self._consumed = index + 1
                    self._cond.notify_all()
                if isinstance(result, BaseException):
                    raise result
                yield from result
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
        for response in inflight:
            with contextlib.suppress(Exception):
                response.shutdown()
        deadline = time.monotonic() + JOIN_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _read_exactly(response: Any, size: int) -> list[bytes]:
    out: list[bytes] = []
    got = 0
    try:
        while got < size:
            data = response.read(min(1024 * 1024, size - got))
            if not data:
                break
            out.append(data)
            got += len(data)
    except BaseException:
        response.close()  # a broken or cancelled connection must not go back to the pool
        raise
    finally:
        response.release_conn()
    if got < size:
        response.close()
        raise OSError(f"range body ended after {got} of {size} bytes")
    return out
