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

Bytes are counted as the disk counts them. Entries may share files through hard links (two
spellings of one Kaggle model version are one download): a file shared by several entries
counts once in a total, and removing one of them frees it only when no other entry that
stays still links it. ``Candidate.links`` lists those files; without links, an entry's
``size`` is what removing it frees.
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
    # files with more than one link: (identity "device:inode", size), for disk accounting
    links: tuple[tuple[str, int], ...] = ()


def disk_usage(entries: Iterable[Candidate]) -> int:
    """Bytes the entries hold on disk: a file several of them link counts once."""
    total = 0
    seen: dict[str, int] = {}
    for c in entries:
        total += c.size - sum(size for _identity, size in c.links)
        seen.update(c.links)
    return total + sum(seen.values())


class _Freeing:
    """Bytes freed as entries are removed one by one: a linked file goes with the last of
    the entries that link it."""

    def __init__(self, entries: Iterable[Candidate]) -> None:
        self.holders: dict[str, int] = {}
        for c in entries:
            for identity, _size in c.links:
                self.holders[identity] = self.holders.get(identity, 0) + 1

    def remove(self, c: Candidate) -> int:
        freed = c.size
        for identity, size in c.links:
            self.holders[identity] -= 1
            if self.holders[identity] > 0:
                freed -= size  # another entry that stays keeps it
        return freed


@dataclasses.dataclass(frozen=True)
class PlanItem:
    """One entry of a removal :class:`Plan`: to remove, or spared, and why."""

    key: str
    handle: str
    size: int
    last_used: float
    reason: str
    freed: int = -1  # bytes its removal frees (-1: all of ``size``; less when it shares files)

    def __post_init__(self) -> None:
        if self.freed < 0:
            object.__setattr__(self, "freed", self.size)

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
        return sum(item.freed for item in self.remove)

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
    total = disk_usage(entries)
    freeing = _Freeing(entries)
    spared: list[PlanItem] = []
    free: list[Candidate] = []
    for c in sorted(entries, key=lambda c: (c.last_used, c.key)):
        why = protection(c, keep, now)
        if why is None:
            free.append(c)
        else:
            spared.append(PlanItem(c.key, c.handle, c.size, c.last_used, why))
    chosen: dict[str, PlanItem] = {}

    def choose(c: Candidate, reason: str) -> int:
        freed = freeing.remove(c)
        chosen[c.key] = PlanItem(c.key, c.handle, c.size, c.last_used, reason, freed)
        return freed

    if older_than is not None:
        for c in free:
            if now - c.last_used >= older_than:
                reason = (
                    "never used"
                    if not c.last_used
                    else f"last used {format_age(now - c.last_used)}"
                )
                choose(c, reason)
    if max_size is not None:
        remaining = total - sum(item.freed for item in chosen.values())
        for c in free:
            if remaining <= max_size:
                break
            if c.key not in chosen:
                reason = f"least recently used while the cache exceeds {format_size(max_size)}"
                remaining -= choose(c, reason)
    ordered = tuple(sorted(chosen.values(), key=lambda item: (item.last_used, item.key)))
    return Plan(remove=ordered, spared=tuple(spared), total_before=total)


def plan_remove(entries: Iterable[Candidate], *, others: Iterable[Candidate] = ()) -> Plan:
    """``rm``: the named entries, minus those a live process holds (reported as spared).
    ``others`` are the rest of the cache: the totals are the whole cache's, and a file
    an entry shares with one of them is not counted as freed."""
    entries = list(entries)
    named = {c.key for c in entries}
    everything = entries + [c for c in others if c.key not in named]
    freeing = _Freeing(everything)
    remove, spared = [], []
    for c in entries:
        if c.locked_by:
            spared.append(
                PlanItem(c.key, c.handle, c.size, c.last_used, f"its lock is held by {c.locked_by}")
            )
        else:
            freed = freeing.remove(c)
            remove.append(PlanItem(c.key, c.handle, c.size, c.last_used, "named", freed))
    return Plan(remove=tuple(remove), spared=tuple(spared), total_before=disk_usage(everything))
