"""``HUBCACHE_MAX_SIZE``: after a download, remove least recently used entries until the
local cache fits. The same plan and the same removal rules as ``hubcache prune``."""

from __future__ import annotations

import logging
import time

from .._errors import HubcacheError
from .local import LocalRoot
from .prune import plan_prune
from .records import execute_plan

log = logging.getLogger(__name__)


def evict_beyond(root: str, max_size: int, *, keep: str) -> None:
    """Never fails the resolve that triggered it: a failure is one warning."""
    try:
        backend = LocalRoot(root)
        plan = plan_prune(
            backend.entries(), now=time.time(), max_size=max_size, keep=frozenset([keep])
        )
        outcome = execute_plan(backend, plan)
    except (OSError, HubcacheError) as exc:
        log.warning("HUBCACHE_MAX_SIZE eviction in %s failed: %s", root, exc)
        return
    for item in outcome.removed:
        log.info(
            "evicted %s (%d bytes) to keep %s under its size limit", item.handle, item.size, root
        )
