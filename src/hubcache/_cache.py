"""``hubcache.Cache``: see, check and clean a cache root (the library behind ``ls``, ``rm``...).

One facade for every kind of root; the work is done by a backend chosen once, when the
``Cache`` is made, so no command ever asks what kind of root it is on:

* ``manage.local.LocalRoot``: a directory with the layout of docs/cache-format.md (drawn in
  ``local.entry``); last use is the manifest's atime, download time its mtime;
* ``manage.store.StoreRoot``: any other root (gs://, s3://, memory://) through the storage
  seam (``store.storage``); last use is the time of a ``<key>.used`` object, else the download.

Both answer the same questions (:class:`Backend`): which keys, the facts of one entry,
rehash it, remove it under its lock, gc, export, import.

Destructive operations build a frozen :class:`Plan` first (``manage.prune``), then
:meth:`Cache.execute` removes entry by entry, each under the entry's own download lock, so
a resolve cannot start downloading an entry while it is being removed, and an entry whose
lock a live process holds is spared. Removal order is manifest, tree, descriptor, debris:
a crash midway leaves at worst a damaged entry, which the next resolve heals.

Layer: the management façade (docs/architecture.md), under ``cli`` and the servers; it
stands on ``manage``, ``local`` and the core, and on ``_resolve`` only to re-download a
damaged entry (``fix``), imported then.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ._config import load_config
from ._errors import DamagedEntryError, InvalidHandleError, ModelNotFoundError
from ._handles import cache_key
from .local.gc import GRACE, Debris, DebrisPlan
from .local.root import choose_root, is_remote
from .manage.prune import Plan, plan_prune, plan_remove
from .manage.records import LEFTOVERS, Backend, EntryInfo, Outcome, VerifyResult, execute_plan
from .manage.transfer import Imported

log = logging.getLogger(__name__)

KEY_PREFIX = re.compile(r"[0-9a-f]{6,40}")  # what may name an entry by (part of) its key

__all__ = ["Cache", "EntryInfo", "Outcome", "VerifyResult"]


class Cache:
    """One cache root. ``Cache()`` uses the root the rules of docs/configuration.md select; a remote
    root (``gs://``, ``s3://``, ``memory://``) is managed through the storage seam."""

    def __init__(self, cache_dir: Optional[str] = None) -> None:
        config = load_config(cache_dir=cache_dir)
        self.root_source = config.root_source
        self._backend: Backend
        if is_remote(config.root):
            from .manage.store import StoreRoot

            self._backend = StoreRoot(
                config.root, lease=config.lock_lease, timeout=config.store_timeout
            )
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
        if not handle_or_key.strip():
            raise InvalidHandleError(
                "an empty HANDLE_OR_KEY names no entry; give a handle, a key or a key prefix",
                handle=handle_or_key,
            )
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
            state = info.state
            if state == "damaged" and info.reason == LEFTOVERS:
                # A killed download's lock and staging: no entry to check or re-download;
                # they are gc's to remove (a resolve of the handle also clears them).
                state = "leftovers"
                note = "debris of an interrupted download, not an entry: `hubcache gc` removes it"
            elif info.state == "damaged":
                problems.append(info.reason)
            elif info.state == "complete" and deep:
                problems, note = self._backend.rehash(key)
            elif info.state == "legacy":
                note = "no manifest (made by tensorflow_hub or by hand): looks usable"
            results.append(VerifyResult(key, info.handle, state, tuple(problems), note))
        return results

    def fix(self, result: VerifyResult) -> str:
        """Remove a damaged entry and download it again; returns its new path."""
        if not result.handle or result.handle == result.key:
            raise DamagedEntryError(
                f"cannot re-download {result.key}: its handle is unknown (no manifest or "
                f"descriptor); remove it with `hubcache rm {result.key}`",
                key=result.key,
            )
        if cache_key(result.handle) != result.key:
            # The handle kept is not the one resolved: its password is hidden as user:***@
            # (docs/configuration.md). Resolving that would send "***" and fill another key,
            # after this entry was removed: say so and leave it, as for an unknown handle.
            raise DamagedEntryError(
                f"cannot re-download {result.key}: the password in its handle "
                f"{result.handle} is not stored; resolve the handle with its password again, "
                f"or remove the entry with `hubcache rm {result.key}`",
                key=result.key,
            )
        from ._resolve import resolve

        self.execute(self.plan_remove([result.key]), strict=True)
        return resolve(result.handle, cache_dir=self.root)

    # -- moving between machines ---------------------------------------------------------
    def export(self, out: str, handles_or_keys: Sequence[str] = ()) -> list[str]:
        """Write entries (default: every complete one) into the tar ``out``; their handles."""
        if handles_or_keys:  # an entry named twice is written once (it went in twice)
            keys = list(dict.fromkeys(self.info(h).key for h in handles_or_keys))
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
        named: dict[str, EntryInfo] = {}  # one entry named twice (a handle, then its key)
        for h in handles_or_keys:  # is removed once: it counted twice, bytes and all
            info = self.info(h)
            named.setdefault(info.key, info)
        return plan_remove(list(named.values()), others=self.entries())

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
            # info(), not key_of(): a --keep naming no entry (a typo) is exit 3 like every
            # other name, not a silent no-op that lets the entry meant be pruned
            keep=frozenset(self.info(h).key for h in keep),
        )

    def execute(self, plan: Plan, *, strict: bool = False) -> Outcome:
        """Remove the plan's entries, re-checking each: an entry used or locked since the
        plan was made is spared (``strict``: raise EntryInUseError instead)."""
        return execute_plan(self._backend, plan, strict=strict)

    # -- debris --------------------------------------------------------------------------
    def plan_gc(self, grace: float = GRACE) -> DebrisPlan:
        """Debris of crashed downloads and uploads (``local.gc``, ``manage.store_gc``)."""
        return self._backend.plan_gc(grace)

    def execute_gc(self, plan: DebrisPlan) -> list[Debris]:
        return self._backend.execute_gc(plan)
