"""``HUBCACHE_MAX_SIZE``: after a download, remove least recently used entries until the
local cache fits. The same plan and the same removal rules as ``hubcache prune``: entries
used in the last ``RECENT_USE`` seconds (a process may still be loading them), the one just
downloaded and entries a live process holds are never removed, so the cache may stay above
the limit for a while; a ``-v`` note says so, rather than letting it grow silently."""

from __future__ import annotations

import logging
import time

from .._errors import HubcacheError
from .._units import format_size
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
    if plan.total_after > max_size:
        log.info(
            "the cache %s holds %s, over HUBCACHE_MAX_SIZE=%s: %s spared (%s)",
            root,
            format_size(plan.total_after),
            format_size(max_size),
            "1 entry" if len(plan.spared) == 1 else f"{len(plan.spared)} entries",
            "; ".join(
                f"{item.handle or item.key[:12]}: "
                + ("just downloaded" if item.key == keep else item.reason)
                for item in plan.spared[:3]
            )
            + ("; ..." if len(plan.spared) > 3 else ""),
        )
