"""What both management backends share: the records they return and the rules of removal.

``Cache`` (the public facade) picks a backend per root: ``local.LocalRoot`` for a directory,
``store.StoreRoot`` for a URL behind the storage seam. Both return the records defined here
and remove entries by :func:`take_for_removal` and :func:`execute_plan`, so a directory and
a bucket follow one rule: a live lock or a use since the plan was made spares the entry.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Optional, Protocol

from .._errors import EntryInUseError
from ..local.gc import Debris, DebrisPlan
from ..local.manifest import Manifest
from .prune import Candidate, Plan, PlanItem
from .transfer import Imported

KEY = re.compile(r"^[0-9a-f]{40}(?:$|\.)")  # a name that belongs to an entry


@dataclasses.dataclass(frozen=True)
class EntryInfo(Candidate):
    """The facts of one entry (a row of ``hubcache ls``); ``to_json`` is what ``--json``
    prints. ``state`` is complete, legacy (no manifest), damaged or in progress."""

    path: str = ""
    files: int = 0
    downloaded: float = 0.0
    reason: str = ""  # why it is damaged

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        links = data.pop("links")
        data["linked_bytes"] = sum(size for _identity, size in links)  # shared with others
        return data


LEFTOVERS = "only leftovers"  # the reason of a key with debris and no entry


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found in one entry: ``ok`` when ``problems`` is empty."""

    key: str
    handle: str
    state: str  # complete / legacy / damaged / in progress / leftovers
    problems: tuple[str, ...] = ()
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :meth:`Cache.execute` did: entries removed, entries spared at the last moment."""

    removed: tuple[PlanItem, ...]
    spared: tuple[PlanItem, ...]

    @property
    def bytes_freed(self) -> int:
        return sum(item.freed for item in self.removed)


class Backend(Protocol):
    """What ``Cache`` needs from a kind of root (see the module docstring)."""

    location: str  # the root as printed: a path or a URL

    def keys(self) -> list[str]: ...
    def entries(self) -> list[EntryInfo]: ...
    def entry(self, key: str) -> Optional[EntryInfo]: ...  # None: nothing of it is there
    def details(self, info: EntryInfo) -> dict[str, Any]: ...
    def rehash(self, key: str) -> tuple[list[str], str]: ...  # (problems, note)
    def remove(self, item: PlanItem) -> None: ...  # raises EntryInUseError
    def is_complete(self, key: str) -> bool: ...
    def export(self, keys: Sequence[str], out: str) -> list[str]: ...
    def import_archive(self, archive: str) -> list[Imported]: ...
    def plan_gc(self, grace: float) -> DebrisPlan: ...
    def execute_gc(self, plan: DebrisPlan) -> list[Debris]: ...


class Lock(Protocol):
    def try_acquire(self) -> bool: ...


def take_for_removal(
    item: PlanItem,
    lock: Lock,
    holder: Callable[[], tuple[Optional[str], bool]],
    break_stale: Callable[[str], None],
) -> None:
    """Take an entry's lock before removing it, or raise EntryInUseError.

    ``holder()`` reads the lock now: ``(None, _)`` when there is none any more, else its
    contents and whether its holder is live. A live holder spares the entry; a dead or
    stale one is broken (``break_stale(contents)``) and the lock tried again.
    """
    for _ in range(3):
        if lock.try_acquire():
            return
        contents, live = holder()
        if contents is None:
            continue  # released between our two calls
        if live:
            raise in_use(item, contents)
        break_stale(contents)
    raise EntryInUseError(f"cannot take the lock of {item.key}", handle=item.handle)


def execute_plan(backend: Backend, plan: Plan, *, strict: bool = False) -> Outcome:
    """Remove the plan's entries, re-checking each: an entry used or locked since the plan
    was made is spared (``strict``: raise EntryInUseError instead)."""
    removed, spared = [], []
    for item in plan.remove:
        try:
            backend.remove(item)
        except EntryInUseError as exc:
            if strict:
                raise
            spared.append(dataclasses.replace(item, reason=exc.message))
            continue
        removed.append(item)
    return Outcome(tuple(removed), tuple(spared))


def manifest_facts(manifest: Optional[Manifest]) -> dict[str, Any]:
    """The manifest's fields that ``hubcache info`` shows (empty ones without a manifest)."""
    if manifest is None:
        return {
            "source": "",
            "etag": "",
            "archive": {},
            "created": "",
            "tool": "",
            "adopted": False,
        }
    facts: dict[str, Any] = {
        "source": manifest.source,
        "etag": manifest.etag,
        "archive": manifest.archive.to_dict() if manifest.archive is not None else {},
        "created": manifest.created,
        "tool": manifest.tool,
        "adopted": manifest.adopted,
    }
    if manifest.kaggle is not None:
        facts["kaggle"] = dict(manifest.kaggle)  # Kaggle's model
    return facts


def rehash_files(manifest: Optional[Manifest], digest: Any) -> tuple[list[str], str]:
    """``verify --deep``: compare ``digest(rel)`` with every recorded sha256."""
    problems, unhashed = [], 0
    for rel, (_size, recorded) in (manifest.files if manifest is not None else {}).items():
        if not recorded:
            unhashed += 1
            continue
        try:
            actual = digest(rel)
        except OSError as exc:
            problems.append(f"file {rel}: {exc.strerror or exc}")
            continue
        if actual != recorded:
            problems.append(f"file {rel}: sha256 differs from the manifest")
    note = (
        f"{unhashed} files have no recorded sha256 (adopted entry): sizes checked only"
        if unhashed
        else ""
    )
    return problems, note


def in_use(item: PlanItem, contents: str) -> EntryInUseError:
    return EntryInUseError(
        f"{item.handle or item.key} is in use: its lock is held by "
        f"{contents.strip()}; try again when that process is done",
        handle=item.handle or None,
    )


def used_since(item: PlanItem) -> EntryInUseError:
    return EntryInUseError(
        f"{item.handle or item.key} was used since the plan was made",
        handle=item.handle or None,
    )
