"""The mirror's counters, exposed at ``/metrics`` in the Prometheus text format.

prometheus_client (the Prometheus project's own client) renders them; each server gets its
own registry, so tests running several servers in one process never share counts.

With ``--workers N`` the counts are the whole server's, whichever worker answers the scrape:
the parent gives the workers one private folder (``MULTIPROC_ENV``, set before any of them
imports prometheus_client, which chooses its value store at import), each worker keeps its
values in memory-mapped files there (prometheus_client's multiprocess mode, made for
pre-forking servers), and ``/metrics`` sums them (``render``). Counters of a worker that has
stopped still count; gauges of fills in flight count live workers only. ``stored_bytes`` is
read from the answering worker's store (every worker sees the same DIR).

| metric | meaning |
| --- | --- |
| ``hubcache_mirror_requests_total{code}`` | requests answered, by HTTP status |
| ``hubcache_mirror_hits_total`` | archive requests answered from the store |
| ``hubcache_mirror_misses_total`` | archive requests that waited for a fill (started or joined) |
| ``hubcache_mirror_fills_total{result}`` | fills finished: stored, missing, failed |
| ``hubcache_mirror_fills_in_flight`` | fills running now |
| ``hubcache_mirror_upstream_bytes_total`` | bytes received from upstreams |
| ``hubcache_mirror_served_bytes_total`` | body bytes sent to clients |
| ``hubcache_mirror_evictions_total`` | archives removed by ``--max-size`` |
| ``hubcache_mirror_stored_bytes`` | bytes of archives the mirror stored (local DIR) |
| ``hubcache_mirror_fills_refused_total`` | misses answered 503 because ``--max-fills`` ran |
| ``hubcache_mirror_header_timeouts_total`` | connections closed by ``--header-timeout`` |
| ``hubcache_mirror_kaggle_calls_total{method,source}`` | Kaggle API calls, by who answered |
| ``hubcache_mirror_fd_limit`` | the open-file limit in force (raised to the hard limit) |
| ``hubcache_mirror_limit{name}`` | each operator limit: header/idle timeout (s), max fills, ... |
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch to multiprocess


class Metrics:
    def __init__(self, stored_bytes: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.shared = os.environ.get(MULTIPROC_ENV) or None  # --workers: the workers' folder
        self.registry = CollectorRegistry(auto_describe=True)
        self._stored = _StoredBytes(stored_bytes)
        r = self.registry
        self.requests = Counter(
            "hubcache_mirror_requests", "Requests answered, by status", ["code"], registry=r
        )
        self._by_status: dict[int, Any] = {}
        self.hits = Counter(
            "hubcache_mirror_hits", "Archive requests served from the store", registry=r
        )
        self.misses = Counter(
            "hubcache_mirror_misses", "Archive requests that waited for a fill", registry=r
        )
        self.fills = Counter(
            "hubcache_mirror_fills", "Fills finished, by result", ["result"], registry=r
        )
        self.in_flight = Gauge(
            "hubcache_mirror_fills_in_flight",
            "Fills running now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_bytes = Counter(
            "hubcache_mirror_upstream_bytes", "Bytes received from upstreams", registry=r
        )
        self.served_bytes = Counter(
            "hubcache_mirror_served_bytes", "Body bytes sent to clients", registry=r
        )
        self.evictions = Counter(
            "hubcache_mirror_evictions", "Archives evicted by --max-size", registry=r
        )
        self.fills_refused = Counter(
            "hubcache_mirror_fills_refused", "Misses refused by --max-fills", registry=r
        )
        self.header_timeouts = Counter(
            "hubcache_mirror_header_timeouts",
            "Connections closed by --header-timeout",
            registry=r,
        )
        self.kaggle_calls = Counter(
            "hubcache_mirror_kaggle_calls",
            "Kaggle API calls answered, by method and by who answered",
            ["method", "source"],
            registry=r,
        )
        self.fd_limit = Gauge(
            "hubcache_mirror_fd_limit",
            "Open-file limit in force",
            registry=r,
            multiprocess_mode="max",
        )
        self.limits = Gauge(
            "hubcache_mirror_limit",
            "Operator limits in force",
            ["name"],
            registry=r,
            multiprocess_mode="max",
        )
        r.register(self._stored)
        # The stored hit's counts, noted in plain numbers on the event loop and moved into
        # the counters once per turn of the loop (``tally``): three locked counter updates
        # per request (six with --workers' memory-mapped files) were 4% of a hit's CPU.
        self._hits = self._ok = self._bytes = 0
        self._due = False

    def tally(self, *, hit: bool = False, ok: bool = False, sent: int = 0) -> None:
        """Count a stored hit, a 200 answered, body bytes sent: on the event loop's thread
        only; in the counters by the end of this turn of the loop (before any scrape)."""
        self._hits += hit
        self._ok += ok
        self._bytes += sent
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self.settle)

    def settle(self) -> None:
        """Move what ``tally`` noted into the counters."""
        self._due = False
        hits, ok, sent = self._hits, self._ok, self._bytes
        self._hits = self._ok = self._bytes = 0
        if hits:
            self.hits.inc(hits)
        if ok:
            self.answered(200, ok)
        if sent:
            self.served_bytes.inc(sent)

    def answered(self, status: int, count: int = 1) -> None:
        """One request answered with ``status`` (its counter child is looked up once:
        ``labels()`` takes a lock and builds a key, and this runs on every request)."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(str(status))
        child.inc(count)

    def event(self, what: str) -> None:
        """Fill and eviction events from the pull-through side."""
        if what == "fill-started":
            self.in_flight.inc()
        elif what.startswith("fill-"):
            self.in_flight.dec()
            self.fills.labels(what.removeprefix("fill-")).inc()
        elif what == "evicted":
            self.evictions.inc()

    def render(self) -> tuple[bytes, str]:
        """The text ``/metrics`` answers: this server's registry, or with ``--workers``
        every worker's values summed from the shared folder."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.settle()
        if self.shared is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared)  # type: ignore[no-untyped-call]
        registry.register(self._stored)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _StoredBytes:
    """``hubcache_mirror_stored_bytes``, read when scraped: a collector rather than a
    gauge, so that with ``--workers`` it is not also a per-worker file of zeros."""

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read

    def describe(self) -> list[Any]:
        return list(self._families(0.0))

    def collect(self) -> Iterator[Any]:
        return self._families(self.read())

    @staticmethod
    def _families(value: float) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "hubcache_mirror_stored_bytes", "Bytes of archives stored", value=value
        )
