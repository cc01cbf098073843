"""What ``prune`` and ``rm`` would remove: a frozen plan, decided by pure functions.

The plan is built first, shown (``--dry-run`` stops there), then executed entry by entry
with the safety checks repeated at that moment (``Cache.execute``). Deciding is kept apart
from deleting so every rule below is tested without touching a disk.

Rules, in order: an entry named by ``--keep``, one whose lock is held by a live process (or
one we cannot prove dead), one still being downloaded, and one used recently are never
chosen. "Recently" is RECENT_USE seconds: last use is recorded at most once per
USE_RECORD_INTERVAL (an hour), so a record younger than that plus a few minutes' grace
cannot prove the entry has been idle for those few minutes. Among the rest, least recently
used first: everything unused for ``older_than``, then more until the total fits
``max_size``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Optional

from .._units import format_age, format_size
from ..local.entry import USE_RECORD_INTERVAL

RECENT_GRACE = 300.0  # the "few minutes" an entry must have been idle before removal
RECENT_USE = USE_RECORD_INTERVAL + RECENT_GRACE


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The facts about one entry that removal decisions need (see ``Cache.entries``)."""

    key: str
    handle: str
    size: int
    last_used: float  # POSIX seconds; 0 when unknown (sorts as the oldest)
    state: str
    locked_by: str = ""  # lock contents when a live (or unprovably dead) process holds it


@dataclasses.dataclass(frozen=True)
class PlanItem:
    """One entry of a removal :class:`Plan`: to remove, or spared, and why."""

    key: str
    handle: str
    size: int
    last_used: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Entries to remove (LRU first), entries spared and why, and the byte counts."""

    remove: tuple[PlanItem, ...]
    spared: tuple[PlanItem, ...]
    total_before: int

    @property
    def bytes_freed(self) -> int:
        return sum(item.size for item in self.remove)

    @property
    def total_after(self) -> int:
        return self.total_before - self.bytes_freed

    def to_json(self) -> dict[str, Any]:
        return {
            "remove": [item.to_json() for item in self.remove],
            "spared": [item.to_json() for item in self.spared],
            "bytes_freed": self.bytes_freed,
            "total_before": self.total_before,
            "total_after": self.total_after,
        }


def protection(c: Candidate, keep: frozenset[str], now: float) -> Optional[str]:
    """Why ``c`` must not be removed now, or None."""
    if c.key in keep:
        return "kept (--keep)"
    if c.locked_by:
        return f"its lock is held by {c.locked_by}"
    if c.state == "in progress":
        return "it is being downloaded"
    if c.last_used and now - c.last_used < RECENT_USE:
        return f"used {format_age(now - c.last_used)} (idle less than {RECENT_USE / 60:.0f} min)"
    return None


def plan_prune(
    entries: Iterable[Candidate],
    *,
    now: float,
    older_than: Optional[float] = None,
    max_size: Optional[int] = None,
    keep: frozenset[str] = frozenset(),
) -> Plan:
    entries = list(entries)
    total = sum(c.size for c in entries)
    spared: list[PlanItem] = []
    free: list[Candidate] = []
    for c in sorted(entries, key=lambda c: (c.last_used, c.key)):
        why = protection(c, keep, now)
        if why is None:
            free.append(c)
        else:
            spared.append(PlanItem(c.key, c.handle, c.size, c.last_used, why))
    chosen: dict[str, PlanItem] = {}
    if older_than is not None:
        for c in free:
            if now - c.last_used >= older_than:
                reason = (
                    "never used"
                    if not c.last_used
                    else f"last used {format_age(now - c.last_used)}"
                )
                chosen[c.key] = PlanItem(c.key, c.handle, c.size, c.last_used, reason)
    if max_size is not None:
        remaining = total - sum(item.size for item in chosen.values())
        for c in free:
            if remaining <= max_size:
                break
            if c.key not in chosen:
                reason = f"least recently used while the cache exceeds {format_size(max_size)}"
                chosen[c.key] = PlanItem(c.key, c.handle, c.size, c.last_used, reason)
                remaining -= c.size
    ordered = tuple(sorted(chosen.values(), key=lambda item: (item.last_used, item.key)))
    return Plan(remove=ordered, spared=tuple(spared), total_before=total)


def plan_remove(entries: Iterable[Candidate], *, total_before: Optional[int] = None) -> Plan:
    """``rm``: the named entries, minus those a live process holds (reported as spared).
    ``total_before`` is the size of the whole cache (default: of the named entries)."""
    entries = list(entries)
    remove, spared = [], []
    for c in entries:
        if c.locked_by:
            spared.append(
                PlanItem(c.key, c.handle, c.size, c.last_used, f"its lock is held by {c.locked_by}")
            )
        else:
            remove.append(PlanItem(c.key, c.handle, c.size, c.last_used, "named"))
    if total_before is None:
        total_before = sum(c.size for c in entries)
    return Plan(remove=tuple(remove), spared=tuple(spared), total_before=total_before)
