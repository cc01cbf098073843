"""Debris collection: what crashed or interrupted downloads leave next to the entries.

A frozen :class:`DebrisPlan` is built first (what goes, why, how many bytes); ``hubcache gc
--dry-run`` prints it, ``hubcache gc`` executes it. Resolve runs the same rules for one key
when it takes that key's lock, so debris of earlier attempts goes away on its own.

Rules, for the names of docs/cache-format.md (``<key>`` is 40 hex digits)::

    <key>.lock                       holder on this host and dead (PID gone or reused): at once;
                                     otherwise when neither it nor its staging changed for
                                     the grace period (a holder elsewhere that stopped)
    <key>.<uid>.tmp/                 staging: at once when its lock's holder is dead here;
                                     kept while a live lock names its uid; else when nothing
                                     in it changed for the grace period
    <key>.<uid>.trash/               a damaged tree moved aside: after the grace period
    *.<pid>.part, <key>.lock.tmp<hex>  half-written small files (ours, tensorflow_hub's)
    <key>.lock.<uid>.broken          a lock being broken: after the grace period

The grace period (default one hour) protects what a live process may still use but that
nothing on disk ties to a live lock, e.g. the staging of a holder whose lock was taken over
while it was stopped: it loses cleanly when it resumes, unless it stays stopped longer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from typing import Literal, Optional

from .lock import Holder, break_lock, parse_holder, read_text
from .tree import tree_stats

GRACE = 3600.0  # seconds without change before unowned debris is removed

_NAME = re.compile(
    r"^(?P<key>[0-9a-f]{40})(?:"
    r"(?P<lock>\.lock)"
    r"|\.(?P<uid>[^./]+)\.(?P<kind>tmp|trash)"
    r"|\.lock\.[^./]+\.(?P<broken>broken)"
    r"|\.lock\.(?P<tftmp>tmp)[0-9a-f]+"
    r")$"
)
_PART = re.compile(r"\.\d+\.part$")


DebrisKind = Literal["lock", "staging", "trash", "partial", "broken"]


@dataclass(frozen=True)
class Debris:
    """One piece of debris that ``gc`` removes: its path, kind, why it may go, its size."""

    path: str
    kind: DebrisKind
    reason: str
    size: int
    judged: str = ""  # a lock's contents when judged, so a newer lock is never removed


@dataclass(frozen=True)
class DebrisPlan:
    """What ``gc`` would remove from one root: built first, printed by ``--dry-run``, then
    executed item by item."""

    root: str
    items: tuple[Debris, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.items)


def plan(
    root: str,
    *,
    grace: float = GRACE,
    key: Optional[str] = None,
    keep: str = "",
    now: Optional[float] = None,
) -> DebrisPlan:
    """What may go under ``root`` (only ``key``'s debris when given; never uid ``keep``)."""
    now = time.time() if now is None else now
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return DebrisPlan(root, ())
    if key is not None:
        names = [n for n in names if n.startswith(key + ".")]
    holders: dict[str, tuple[Optional[Holder], str, float]] = {}
    for name in names:
        if name.endswith(".lock") and _NAME.match(name):
            path = os.path.join(root, name)
            contents = read_text(path)
            if contents is not None:
                holders[name[:40]] = (parse_holder(contents), contents, tree_stats(path).newest)
    items: list[Debris] = []
    for name in names:
        item = _judge(root, name, holders, grace, now, keep)
        if item is not None:
            items.append(item)
    return DebrisPlan(root, tuple(items))


def _judge(  # noqa: PLR0917 - private helper of plan()
    root: str,
    name: str,
    holders: dict[str, tuple[Optional[Holder], str, float]],
    grace: float,
    now: float,
    keep: str,
) -> Optional[Debris]:
    path = os.path.join(root, name)
    match = _NAME.match(name)
    if match is None:
        if not _PART.search(name):
            return None
        stats = tree_stats(path)
        newest, size = stats.newest, stats.size
        return Debris(path, "partial", "half-written file", size) if now - newest > grace else None
    holder, contents, locked = holders.get(match["key"], (None, "", 0.0))
    dead = holder is not None and holder.is_dead_here()
    here = holder is not None and holder.host == socket.gethostname()
    if match["lock"]:
        if contents == "" and not os.path.exists(path):
            return None
        if holder is not None and dead:
            return Debris(path, "lock", f"holder pid {holder.pid} is dead", 0, contents)
        if here:
            return None  # alive on this host: however slow, it is still working
        staging = 0.0
        if holder is not None:
            staging = tree_stats(os.path.join(root, f"{match['key']}.{holder.uid}.tmp")).newest
        newest = max(locked, staging)
        if now - newest > grace:
            return Debris(path, "lock", f"no progress for {now - newest:.0f}s", 0, contents)
        return None
    stats = tree_stats(path)
    newest, size = stats.newest, stats.size
    if match["kind"] == "tmp":
        uid = match["uid"]
        if uid == keep:
            return None
        if holder is not None and holder.uid == uid:
            if dead:
                return Debris(path, "staging", f"its holder pid {holder.pid} is dead", size)
            if here or now - max(newest, locked) <= grace:
                return None  # a live download
            return Debris(
                path, "staging", f"its holder made no progress for {now - newest:.0f}s", size
            )
        if now - newest > grace:
            return Debris(path, "staging", f"orphan, unchanged for {now - newest:.0f}s", size)
        return None
    kind: DebrisKind = (
        "trash" if match["kind"] == "trash" else "broken" if match["broken"] else "partial"
    )
    if now - newest > grace:
        return Debris(path, kind, f"left over, unchanged for {now - newest:.0f}s", size)
    return None


def execute(plan: DebrisPlan) -> list[Debris]:
    """Remove what the plan lists; return what went. Vanished items are skipped silently."""
    done: list[Debris] = []
    for item in plan.items:
        if item.kind == "lock":
            if break_lock(item.path, item.judged, f"gc{os.getpid()}"):
                done.append(item)
            continue
        try:
            if os.path.isdir(item.path) and not os.path.islink(item.path):
                shutil.rmtree(item.path)
            else:
                os.unlink(item.path)
        except FileNotFoundError:
            continue
        except OSError:
            continue  # reported as not removed; the next gc tries again
        done.append(item)
    return done


def remove_debris(root: str, key: str, *, keep: str) -> None:
    """Opportunistic gc of one key, run by resolve under that key's lock. Never raises."""
    with contextlib.suppress(OSError):
        execute(plan(root, key=key, keep=keep))
