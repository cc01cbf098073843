"""Progress of one download: a tqdm bar on stderr, or log lines when nobody is watching.

On by default only when stderr is a terminal (CI logs and notebooks' captured stderr stay
clean); ``TFHUB_DOWNLOAD_PROGRESS`` or ``progress=`` force it either way. Counted in
network bytes, so the total is the Content-Length when the server sends one.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Optional

log = logging.getLogger("hubcache")

_LOG_EVERY = 10.0  # seconds between log lines when there is no bar


class Progress:
    def __init__(self, enabled: Optional[bool], total: Optional[int], label: str) -> None:
        if enabled is None:
            enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.label = label
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._last_log = time.monotonic()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
        else:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            log.info("downloading %s%s", label, size)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            self._last_log = now
            of = f" of {self.total / 1e6:.1f}" if self.total else ""
            log.info("downloading %s: %.1f%s MB", self.label, self.done / 1e6, of)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
