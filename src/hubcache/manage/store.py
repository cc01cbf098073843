"""The ``Cache`` backend of a root behind the storage seam (gs://, s3://, memory://, ...).

Same layout as a local root (drawn in ``store.storage``), but objects instead of files, so some
facts are read differently:

* **listing**: one recursive listing of the root gives every key, every object's size and
  which of ``.manifest.json``, ``.descriptor.txt``, ``.lock``, ``.used`` exist; then a few
  small reads per entry, eight entries at a time (latency, not bandwidth, is the cost).
* **states**: complete (manifest, every listed file there with its size), damaged (a
  manifest whose files differ, or a tree WITHOUT a manifest: an unfinished upload or a
  copy written by tensorflow_hub, which the next resolve downloads again: there is no
  legacy state on a store), in progress (no manifest, a live lock).
* **times**: downloaded is the manifest's modification time on the store's clock; last use
  the time of ``<key>.used`` (written by hits, ``Storage.record_use``), else the download.
* **locks**: a lock is live unless its holder is a dead process on this host or it was not
  refreshed for ``lease`` seconds, judged on the store's clock (``Storage.server_time``);
  when the clock cannot be read (a read-only bucket) every lock counts as live.

Removal takes ``<key>.lock`` with ``StorageLock`` (create-if-absent), re-checks
``<key>.used`` against the plan, then ``Storage.retire`` (manifest first, so no reader
trusts the tree while it goes), the descriptor and ``.used``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from .._errors import hide_credentials
from ..local.entry import descriptor_handle
from ..local.gc import Debris, DebrisPlan
from ..store.backend import open_storage
from ..store.lock import StorageLock, judge_store_lock
from ..store.storage import CHUNK, WORKERS
from .prune import PlanItem
from .records import (
    LEFTOVERS,
    EntryInfo,
    manifest_facts,
    rehash_files,
    take_for_removal,
    used_since,
)

SMALL = (".manifest.json", ".descriptor.txt", ".lock", ".used")
_NAME = re.compile(r"^[0-9a-f]{40}(?:$|[./])")  # an object of an entry: tree or sibling


class StoreRoot:
    def __init__(self, url: str, *, lease: float, timeout: Optional[float] = None) -> None:
        self.store = open_storage(url, timeout=timeout)
        self.location = self.store.url
        self.lease = lease
        self._clock: Optional[float] = None  # store clock minus ours, read once when needed

    # -- reading -------------------------------------------------------------------------
    def scan(self) -> dict[str, tuple[dict[str, int], set[str]]]:
        """key -> (its tree: relative name -> size, the suffixes of its small objects)."""
        found: dict[str, tuple[dict[str, int], set[str]]] = {}
        for name, size in self.store.listing("").items():
            if not _NAME.match(name):
                continue
            tree, small = found.setdefault(name[:40], ({}, set()))
            if name[40:41] == "/":
                tree[name[41:]] = size
            elif name[40:] in SMALL:
                small.add(name[40:])
        return found

    def keys(self) -> list[str]:
        return sorted(self.scan())

    def entries(self) -> list[EntryInfo]:
        found = self.scan()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(lambda k: self._info(k, *found[k]), sorted(found)))

    def entry(self, key: str) -> Optional[EntryInfo]:
        tree = self.store.listing(key)
        small = {s for s in SMALL if self.store.modified(key + s) is not None}
        return self._info(key, tree, small) if tree or small else None

    def is_complete(self, key: str) -> bool:
        return self.store.complete_manifest(key) is not None

    def _info(self, key: str, tree: dict[str, int], small: set[str]) -> EntryInfo:
        store = self.store
        manifest = store.read_manifest(key) if ".manifest.json" in small else None
        handle = hide_credentials(manifest.handle if manifest is not None else "")
        if not handle and ".descriptor.txt" in small:
            handle = descriptor_handle(store.read(f"{key}.descriptor.txt") or b"")
        locked_by = self.live_holder(key) if ".lock" in small else ""
        name, reason = "complete", ""
        if manifest is not None:
            reason = _difference(manifest.files, tree)
            name = "damaged" if reason else "complete"
        elif locked_by:
            name = "in progress"
        elif tree:
            name = "damaged"
            reason = "no manifest: an unfinished upload or tensorflow_hub's copy"
        else:
            name, reason = "damaged", LEFTOVERS
        downloaded = (store.modified(f"{key}.manifest.json") if manifest is not None else None) or (
            store.modified(f"{key}.descriptor.txt") if ".descriptor.txt" in small else None
        )
        used = store.modified(f"{key}.used") if ".used" in small else None
        if name == "complete" and manifest is not None:
            sizes = [size for size, _digest in manifest.files.values()]
        else:
            sizes = list(tree.values())
        return EntryInfo(
            key=key,
            handle=handle,
            size=sum(sizes),
            last_used=max(used or 0.0, downloaded or 0.0),
            state=name,
            locked_by=locked_by,
            path=store.join(key),
            files=len(sizes),
            downloaded=downloaded or 0.0,
            reason=reason,
        )

    def live_holder(self, key: str) -> str:
        """The lock's contents when a live (or unprovably dead) holder has it, else ""."""
        contents, stale = judge_store_lock(self.store, key, self.lease, self.store_now())
        return "" if stale is not None else (contents.strip() or "an unreadable lock")

    def store_now(self) -> Optional[float]:
        if self._clock is None:
            try:
                self._clock = self.store.server_time() - time.time()
            except Exception:  # read-only or unreachable: judge no lock stale
                return None
        return time.time() + self._clock

    def details(self, info: EntryInfo) -> dict[str, Any]:
        manifest = self.store.read_manifest(info.key)
        descriptor = self.store.read(f"{info.key}.descriptor.txt")
        return {
            **info.to_json(),
            "manifest_path": (
                self.store.join(f"{info.key}.manifest.json") if manifest is not None else ""
            ),
            "descriptor_path": self.store.join(f"{info.key}.descriptor.txt"),
            "descriptor": hide_credentials((descriptor or b"").decode("utf-8", "replace")),
            **manifest_facts(manifest),
            "debris": [],  # a store has no staging: an unfinished upload is the state above
        }

    def rehash(self, key: str) -> tuple[list[str], str]:
        manifest = self.store.read_manifest(key)

        def digest(rel: str) -> str:
            sha = hashlib.sha256()
            try:
                with self.store.open_read(f"{key}/{rel}") as f:
                    while chunk := f.read(CHUNK):
                        sha.update(chunk)
            except FileNotFoundError as exc:
                raise OSError("missing") from exc
            return sha.hexdigest()

        files = manifest.files if manifest is not None else {}
        hashed = [rel for rel, (_size, recorded) in files.items() if recorded]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # one object per thread
            digests = dict(zip(hashed, pool.map(_safe(digest), hashed), strict=True))

        def recorded(rel: str) -> str:
            value = digests[rel]
            if isinstance(value, OSError):
                raise value
            return str(value)

        return rehash_files(manifest, recorded)

    # -- removing ------------------------------------------------------------------------
    def remove(self, item: PlanItem) -> None:
        store, key = self.store, item.key
        lock = StorageLock(store, key, handle=item.handle or key, lease=self.lease, timeout=0)

        def holder() -> tuple[Optional[str], bool]:
            raw = store.read(f"{key}.lock")
            if raw is None:
                return None, False
            return raw.decode("utf-8", "replace"), bool(self.live_holder(key))

        def break_stale(contents: str) -> None:
            if store.read(f"{key}.lock") == contents.encode():  # still what we judged
                store.remove(f"{key}.lock")

        take_for_removal(item, lock, holder, break_stale)
        try:
            used = store.modified(f"{key}.used")
            if used is not None and used > item.last_used + 1:
                raise used_since(item)
            store.retire(key)  # manifest first, then the tree
            store.remove(f"{key}.descriptor.txt")
            store.remove(f"{key}.used")
        finally:
            lock.release()

    # -- export, import, gc --------------------------------------------------------------
    def export(self, keys: Sequence[str], out: str) -> list[str]:
        from .transfer_store import export_from_store

        return export_from_store(self.store, keys, out)

    def import_archive(self, archive: str) -> list[Any]:
        from .transfer_store import import_into_store

        return import_into_store(self.store, archive, lease=self.lease)

    def plan_gc(self, grace: float) -> DebrisPlan:
        from .store_gc import plan

        return plan(self, grace)

    def execute_gc(self, plan: DebrisPlan) -> list[Debris]:
        from .store_gc import execute

        return execute(self.store, plan)


def _difference(files: Mapping[str, tuple[int, str]], tree: dict[str, int]) -> str:
    """Why ``tree`` does not hold what the manifest lists, or ""."""
    for rel, (size, _digest) in files.items():
        if rel not in tree:
            return f"file {rel} is missing"
        if tree[rel] != size:
            return f"file {rel} has {tree[rel]} bytes instead of {size}"
    return ""


def _safe(work: Any) -> Any:
    def run(arg: Any) -> Any:
        try:
            return work(arg)
        except OSError as exc:
            return exc

    return run
