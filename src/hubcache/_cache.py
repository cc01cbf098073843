"""``hubcache.Cache``: see, check and clean a cache root (the library behind ``ls``, ``rm``...).

One facade for every kind of root; the work is done by a backend chosen once, when the
``Cache`` is made, so no command ever asks what kind of root it is on:

* ``_cache_local.LocalRoot``: a directory with the layout of DESIGN §4 (drawn in
  ``_entry``); last use is the manifest's atime, download time its mtime;
* ``_cache_store.StoreRoot``: any other root (gs://, s3://, memory://) through the storage
  seam (``_storage``); last use is the time of a ``<key>.used`` object, else the download.

Both answer the same questions (:class:`Backend`): which keys, the facts of one entry,
rehash it, remove it under its lock, gc, export, import.

Destructive operations build a frozen :class:`Plan` first (``_prune``), then
:meth:`Cache.execute` removes entry by entry, each under the entry's own download lock, so
a resolve cannot start downloading an entry while it is being removed, and an entry whose
lock a live process holds is spared. Removal order is manifest, tree, descriptor, debris:
a crash midway leaves at worst a damaged entry, which the next resolve heals.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Optional, Protocol

from ._config import load_config
from ._errors import EntryInUseError, HubcacheError, InvalidHandleError, ModelNotFoundError
from ._handles import cache_key
from .local.gc import GRACE, Item
from .local.gc import Plan as GcPlan
from .local.root import choose_root, is_remote
from .manage.prune import Candidate, Plan, PlanItem, plan_prune, plan_remove
from .manage.transfer import Imported

log = logging.getLogger(__name__)

KEY = re.compile(r"^[0-9a-f]{40}(?:$|\.)")  # a name that belongs to an entry
KEY_PREFIX = re.compile(r"[0-9a-f]{6,40}")  # what may name an entry by (part of) its key


@dataclasses.dataclass(frozen=True)
class EntryInfo(Candidate):
    """The facts of one entry (a row of ``hubcache ls``); ``to_json`` is what ``--json``
    prints. ``state`` is complete, legacy (no manifest), damaged or in progress."""

    path: str = ""
    files: int = 0
    downloaded: float = 0.0
    reason: str = ""  # why it is damaged

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found in one entry: ``ok`` when ``problems`` is empty."""

    key: str
    handle: str
    state: str  # complete / legacy / damaged / in progress
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
        return sum(item.size for item in self.removed)


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
    def plan_gc(self, grace: float) -> GcPlan: ...
    def execute_gc(self, plan: GcPlan) -> list[Item]: ...


class Cache:
    """One cache root. ``Cache()`` uses the root the rules of DESIGN §2 select; a remote
    root (``gs://``, ``s3://``, ``memory://``) is managed through the storage seam."""

    def __init__(self, cache_dir: Optional[str] = None) -> None:
        config = load_config(cache_dir=cache_dir)
        self.root_source = config.root_source
        self._backend: Backend
        if is_remote(config.root):
            from .manage.store import StoreRoot

            self._backend = StoreRoot(config.root, lease=config.lock_lease)
        else:
            from .manage.local import LocalRoot

            self._backend = LocalRoot(choose_root(config))
        self.root = self._backend.location
        self.remote = is_remote(config.root)

    def __repr__(self) -> str:
        return f"Cache({self.root!r})"

    # -- reading -------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return self._backend.keys()

    def entries(self) -> list[EntryInfo]:
        return self._backend.entries()

    def key_of(self, handle_or_key: str) -> str:
        """The key of an entry named by its key, a unique key prefix (``ls`` prints 12 hex
        digits), or its handle (tensorflow_hub's sha1 of the handle).

        A string of 6 to 39 lowercase hex digits that starts the key of an entry in this
        cache is that entry; when it starts several, :class:`InvalidHandleError` lists
        them. Anything else is a handle (whose key may or may not be cached)."""
        if KEY_PREFIX.fullmatch(handle_or_key) is None:
            return cache_key(handle_or_key)
        if len(handle_or_key) == 40:
            return handle_or_key
        matches = sorted(k for k in self.keys() if k.startswith(handle_or_key))
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(k[:12] for k in matches[:10]) + (", ..." if len(matches) > 10 else "")
            raise InvalidHandleError(
                f"key prefix {handle_or_key} matches {len(matches)} entries ({shown}); "
                "give more of the key (see `hubcache ls`)",
                handle=handle_or_key,
            )
        return cache_key(handle_or_key)  # no entry starts with it: maybe a handle after all

    def info(self, handle_or_key: str) -> EntryInfo:
        """The facts of one entry; :class:`ModelNotFoundError` when it is not cached."""
        info = self._backend.entry(self.key_of(handle_or_key))
        if info is None:
            raise ModelNotFoundError(
                f"{handle_or_key} is not in the cache at {self.root} (see `hubcache ls`)",
                handle=handle_or_key,
            )
        return info

    def details(self, handle_or_key: str) -> dict[str, Any]:
        """Everything known about one entry: ``info`` plus manifest, descriptor and paths."""
        return self._backend.details(self.info(handle_or_key))

    def is_complete(self, handle_or_key: str) -> bool:
        return self._backend.is_complete(self.key_of(handle_or_key))

    # -- checking ------------------------------------------------------------------------
    def verify(self, handles: Sequence[str] = (), *, deep: bool = False) -> list[VerifyResult]:
        """Stat check against each manifest; ``deep`` also rehashes every file (sha256).

        Every named entry must be in the cache (else :class:`ModelNotFoundError`, before
        anything is checked, as ``info`` does): a missing entry is not a damaged one."""
        infos: dict[str, EntryInfo]
        if handles:
            infos = {}
            for handle in handles:
                info = self.info(handle)
                infos[info.key] = info
        else:
            infos = {e.key: e for e in self.entries()}
        results = []
        for key, info in infos.items():
            problems: list[str] = []
            note = ""
            if info.state == "damaged":
                problems.append(info.reason)
            elif info.state == "complete" and deep:
                problems, note = self._backend.rehash(key)
            elif info.state == "legacy":
                note = "no manifest (made by tensorflow_hub or by hand): looks usable"
            results.append(VerifyResult(key, info.handle, info.state, tuple(problems), note))
        return results

    def fix(self, result: VerifyResult) -> str:
        """Remove a damaged entry and download it again; returns its new path."""
        if not result.handle or result.handle == result.key:
            raise HubcacheError(
                f"cannot re-download {result.key}: its handle is unknown (no manifest or "
                "descriptor); remove it with `hubcache rm`"
            )
        from ._resolve import resolve

        self.execute(self.plan_remove([result.key]), strict=True)
        return resolve(result.handle, cache_dir=self.root)

    # -- moving between machines ---------------------------------------------------------
    def export(self, out: str, handles_or_keys: Sequence[str] = ()) -> list[str]:
        """Write entries (default: every complete one) into the tar ``out``; their handles."""
        if handles_or_keys:
            keys = [self.info(h).key for h in handles_or_keys]
        else:
            keys = [e.key for e in self.entries() if e.state == "complete"]
        return self._backend.export(keys, out)

    def import_archive(self, archive: str) -> list[Imported]:
        """Verify and publish the entries of an ``export`` archive: one :class:`Imported`
        per entry, in the archive's key order."""
        return self._backend.import_archive(archive)

    # -- removing ------------------------------------------------------------------------
    def plan_remove(self, handles_or_keys: Iterable[str]) -> Plan:
        """Plan the removal of the named entries (each must be cached). The plan's totals
        are the whole cache's, before and after."""
        named = [self.info(h) for h in handles_or_keys]
        return plan_remove(named, total_before=sum(e.size for e in self.entries()))

    def plan_prune(
        self,
        *,
        older_than: Optional[float] = None,
        max_size: Optional[int] = None,
        keep: Iterable[str] = (),
        now: Optional[float] = None,
    ) -> Plan:
        """LRU-first plan: unused for ``older_than`` seconds, then down to ``max_size``."""
        return plan_prune(
            self.entries(),
            now=time.time() if now is None else now,
            older_than=older_than,
            max_size=max_size,
            keep=frozenset(self.key_of(h) for h in keep),
        )

    def execute(self, plan: Plan, *, strict: bool = False) -> Outcome:
        """Remove the plan's entries, re-checking each: an entry used or locked since the
        plan was made is spared (``strict``: raise EntryInUseError instead)."""
        removed, spared = [], []
        for item in plan.remove:
            try:
                self._backend.remove(item)
            except EntryInUseError as exc:
                if strict:
                    raise
                spared.append(dataclasses.replace(item, reason=exc.message))
                continue
            removed.append(item)
        return Outcome(tuple(removed), tuple(spared))

    # -- debris --------------------------------------------------------------------------
    def plan_gc(self, grace: float = GRACE) -> GcPlan:
        """Debris of crashed downloads and uploads (``_gc``, ``_gc_store``): what may go."""
        return self._backend.plan_gc(grace)

    def execute_gc(self, plan: GcPlan) -> list[Item]:
        return self._backend.execute_gc(plan)


def evict_beyond(root: str, max_size: int, *, keep: str) -> None:
    """``HUBCACHE_MAX_SIZE``: after a download, remove LRU entries until the cache fits.
    Same safety rules as ``prune``; never fails the resolve that triggered it."""
    try:
        cache = Cache(root)
        outcome = cache.execute(cache.plan_prune(max_size=max_size, keep=[keep]))
    except (OSError, HubcacheError) as exc:
        log.warning("HUBCACHE_MAX_SIZE eviction in %s failed: %s", root, exc)
        return
    for item in outcome.removed:
        log.info(
            "evicted %s (%d bytes) to keep %s under its size limit", item.handle, item.size, root
        )
