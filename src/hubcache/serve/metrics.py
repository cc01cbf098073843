"""The mirror's counters, exposed at ``/metrics`` in the Prometheus text format.

prometheus_client (the Prometheus project's own client) renders them; each server gets its
own registry, so tests running several servers in one process never share counts.

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

from collections.abc import Callable
from typing import Any


class Metrics:
    def __init__(self, stored_bytes: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
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
        self.in_flight = Gauge("hubcache_mirror_fills_in_flight", "Fills running now", registry=r)
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
        self.fd_limit = Gauge("hubcache_mirror_fd_limit", "Open-file limit in force", registry=r)
        self.limits = Gauge(
            "hubcache_mirror_limit", "Operator limits in force", ["name"], registry=r
        )
        stored = Gauge("hubcache_mirror_stored_bytes", "Bytes of archives stored", registry=r)
        stored.set_function(stored_bytes)

    def answered(self, status: int) -> None:
        """One request answered with ``status`` (its counter child is looked up once:
        ``labels()`` takes a lock and builds a key, and this runs on every request)."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(str(status))
        child.inc()

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
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
