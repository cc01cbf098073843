"""Mirrors: URL-prefix rewrites tried in order before the origin (``HUBCACHE_MIRRORS``).

Code keeps the canonical handle (``https://tfhub.dev/...``), so the cache key never changes;
only where the bytes come from does. :class:`MirroredSource` is one :class:`Source` that,
when opened, tries each candidate location in turn and then behaves as the first one that
answered. A candidate is skipped when opening it fails for a reason another host may not
share: connection errors, 5xx after retries, 404/410, 401/403. Once bytes flow, the source
is committed (a broken stream is resumed or restarted by the usual rules, on the same host).

Mirrors get one retry, not the configured five: a mirror that is down should cost a second,
not the full backoff, before the next place is tried. The last candidate keeps the full
policy. When every candidate fails, the error (of the last one's type) lists each place
tried and why, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Optional

from .._config import Config
from .._errors import DownloadError, HubcacheError, ModelNotFoundError
from .._handles import Handle
from .retry import RetryBudget
from .source import Source, redact

log = logging.getLogger(__name__)

_FALL_THROUGH = (DownloadError, ModelNotFoundError)


def candidates(handle: Handle, config: Config) -> list[Handle]:
    """Where to fetch ``handle`` from, in order: each matching mirror, then the origin."""
    out: list[Handle] = []
    for prefix, replacement in config.mirrors:
        if handle.location.startswith(prefix):
            location = replacement + handle.location[len(prefix) :]
            scheme = location.split("://", 1)[0].lower()
            out.append(handle._replace(location=location, scheme=scheme))
    if not config.no_origin or not out:
        out.append(handle)
    return out


class MirroredSource(Source):
    """The first of several sources that opens; see the module docstring."""

    def __init__(
        self,
        handle: Handle,
        config: Config,
        budget: RetryBudget,
        opener: Callable[[Handle, Config, RetryBudget], Source],
    ) -> None:
        self.handle = handle
        self.config = config
        self.budget = budget
        self._opener = opener
        self._chosen: Optional[Source] = None
        self.tried: list[str] = []

    def open(self) -> None:
        places = candidates(self.handle, self.config)
        if self.config.no_origin and places == [self.handle]:
            raise ModelNotFoundError(
                f"no mirror in HUBCACHE_MIRRORS matches {self.handle.shown} and the origin is "
                "disabled (--no-origin / HUBCACHE_NO_ORIGIN)",
                handle=self.handle.shown,
            )
        last: Optional[HubcacheError] = None
        for index, place in enumerate(places):
            final = index == len(places) - 1
            # a mirror gets a budget of its own (one retry); the last place the download's
            budget = (
                self.budget
                if final
                else RetryBudget(min(self.config.retries, 1), self.config.backoff)
            )
            source = self._opener(place, self.config, budget)
            source.stop_at = self.stop_at
            try:
                source.open()
            except _FALL_THROUGH as exc:
                self.hops = source.hops
                source.close()
                what = "origin" if place is self.handle else "mirror"
                self.tried.append(f"{what} {redact(place.location)}: {exc.message}")
                last = exc
                if not final:
                    log.info("%s failed for %s; trying the next place", what, self.handle.shown)
                continue
            self._adopt(source)
            return
        if last is None:  # unreachable: candidates() always returns at least one place
            raise ModelNotFoundError(
                f"nowhere to fetch {self.handle.shown}", handle=self.handle.shown
            )
        raise type(last)(
            f"cannot fetch {self.handle.shown}; tried, in order: " + "; ".join(self.tried),
            handle=self.handle.shown,
            **{**last.facts, "tried": list(self.tried)},
        )

    def _adopt(self, source: Source) -> None:
        self._chosen = source
        self.display = source.display
        self.total = source.total
        self.content_type = source.content_type
        self.etag = source.etag
        self.last_modified = source.last_modified
        self.hops = source.hops
        self.stopped = source.stopped

    def chunks(self) -> Iterator[bytes]:
        if self._chosen is None:
            raise RuntimeError("MirroredSource.chunks() before a successful open()")
        return self._chosen.chunks()

    def follow_on(self) -> None:
        if self._chosen is None:
            raise RuntimeError("MirroredSource.follow_on() before open()")
        self._chosen.follow_on()
        self._adopt(self._chosen)

    def close(self) -> None:
        if self._chosen is not None:
            self._chosen.close()

    def cancel(self) -> None:
        if self._chosen is not None:
            self._chosen.cancel()

    def local_file(self) -> Optional[str]:
        return self._chosen.local_file() if self._chosen is not None else None
