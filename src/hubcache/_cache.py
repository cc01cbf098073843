"""``hubcache.Cache``: see, check and clean a cache root (the library behind ``ls``, ``rm``...).

Everything is derived from the layout of DESIGN §4 (drawn in ``_entry``): an entry is the
group of names that start with one 40-hex key. Its handle comes from the manifest, else from
tensorflow_hub's descriptor; its last use is the manifest's atime (``_entry.record_use``);
its download time the manifest's mtime (kept by the last-use record).

Destructive operations build a frozen :class:`Plan` first (``_prune``), then
:meth:`Cache.execute` removes entry by entry, each under the entry's own download lock, so
a resolve cannot start downloading an entry while it is being removed, and an entry whose
lock a live process holds is spared. Removal order is manifest, tree, descriptor, debris:
a crash midway leaves at worst a damaged entry, which the next resolve heals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ._config import load_config
from ._entry import Entry, read_quietly
from ._errors import EntryInUseError, HubcacheError, ModelNotFoundError
from ._handles import cache_key
from ._lock import DownloadLock, new_uid, parse_holder, read_text
from ._prune import Candidate, Plan, PlanItem, plan_prune, plan_remove
from ._root import choose_root, is_remote

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[0-9a-f]{40}(?:$|\.)")


@dataclasses.dataclass(frozen=True)
class EntryInfo(Candidate):
    """One row of ``hubcache ls``; ``to_json`` is what ``--json`` prints."""

    path: str = ""
    files: int = 0
    downloaded: float = 0.0
    reason: str = ""  # why it is damaged

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
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


class Cache:
    """One cache root. ``Cache()`` uses the root the rules of DESIGN §2 select."""

    def __init__(self, cache_dir: Optional[str] = None) -> None:
        config = load_config(cache_dir=cache_dir)
        if is_remote(config.root):
            raise HubcacheError(
                f"managing remote cache roots ({config.root.split('://')[0]}://) is not "
                "supported yet; mount the bucket or run the command where the cache is local"
            )
        self.root = choose_root(config)
        self.root_source = config.root_source

    def __repr__(self) -> str:
        return f"Cache({self.root!r})"

    # -- reading -------------------------------------------------------------------------
    def keys(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted({name[:40] for name in names if _KEY.match(name)})

    def entries(self) -> list[EntryInfo]:
        return [self._info(key) for key in self.keys()]

    def key_of(self, handle_or_key: str) -> str:
        """A key as given, or the key of a handle (tensorflow_hub's sha1 of the handle)."""
        if re.fullmatch(r"[0-9a-f]{40}", handle_or_key):
            return handle_or_key
        return cache_key(handle_or_key)

    def info(self, handle_or_key: str) -> EntryInfo:
        key = self.key_of(handle_or_key)
        if key not in self.keys():
            raise ModelNotFoundError(
                f"{handle_or_key} is not in the cache at {self.root} (see `hubcache ls`)",
                handle=handle_or_key,
            )
        return self._info(key)

    def details(self, handle_or_key: str) -> dict[str, Any]:
        """Everything known about one entry: ``info`` plus manifest, descriptor and paths."""
        info = self.info(handle_or_key)
        entry = Entry(self.root, info.key)
        manifest = entry.read_manifest() or {}
        return {
            **info.to_json(),
            "manifest_path": entry.manifest_path if manifest else "",
            "descriptor_path": entry.descriptor_path,
            "descriptor": read_text(entry.descriptor_path) or "",
            "source": manifest.get("source", ""),
            "etag": manifest.get("etag", ""),
            "archive": manifest.get("archive", {}),
            "created": manifest.get("created", ""),
            "tool": manifest.get("tool", ""),
            "adopted": manifest.get("adopted", False),
            "debris": self._debris(info.key),
        }

    def _info(self, key: str) -> EntryInfo:
        entry = Entry(self.root, key)
        locked_by = self._live_holder(entry)
        state = entry.state()
        name, reason = state.name, state.reason
        manifest = entry.read_manifest()
        handle = str((manifest or {}).get("handle", "")) or _descriptor_handle(entry)
        if name == "missing" or (locked_by and name != "complete"):
            name, reason = ("in progress", "") if locked_by else ("damaged", "only leftovers")
        try:
            st = os.stat(entry.manifest_path)
            downloaded, last_used = st.st_mtime, st.st_atime
        except OSError:  # legacy or damaged: the descriptor (or the tree) is all we have
            downloaded = _mtime(entry.descriptor_path) or _mtime(entry.path)
            last_used = downloaded
        if name == "complete" and manifest is not None:
            sizes = [size for size, _digest in manifest["files"].values()]
            size, files = sum(sizes), len(sizes)
        else:
            size, files = _tree_size(entry.path)
        return EntryInfo(
            key=key,
            handle=handle,
            size=size,
            last_used=last_used,
            state=name,
            locked_by=locked_by,
            path=entry.path,
            files=files,
            downloaded=downloaded,
            reason=reason,
        )

    def _live_holder(self, entry: Entry) -> str:
        contents = read_text(entry.lock_path)
        if contents is None:
            return ""
        holder = parse_holder(contents)
        if holder is not None and holder.is_dead_here():
            return ""
        return contents.strip() or "an unreadable lock"

    def _debris(self, key: str) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                os.path.join(self.root, n)
                for n in os.listdir(self.root)
                if n.startswith(key + ".") and n.endswith((".tmp", ".trash"))
            )
        return []

    # -- checking ------------------------------------------------------------------------
    def verify(self, handles: Sequence[str] = (), *, deep: bool = False) -> list[VerifyResult]:
        """Stat check against each manifest; ``deep`` also rehashes every file (sha256)."""
        keys = [self.key_of(h) for h in handles] if handles else self.keys()
        results = []
        for key in keys:
            if key not in self.keys():
                results.append(VerifyResult(key, key, "missing", ("not in the cache",)))
                continue
            info = self._info(key)
            problems: list[str] = []
            note = ""
            if info.state == "damaged":
                problems.append(info.reason)
            elif info.state == "complete" and deep:
                problems, note = _rehash(Entry(self.root, key))
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
        from ._transfer import export_entries

        if handles_or_keys:
            keys = [self.info(h).key for h in handles_or_keys]
        else:
            keys = [e.key for e in self.entries() if e.state == "complete"]
        return export_entries(self.root, keys, out)

    def import_archive(self, archive: str) -> list[Any]:
        """Verify and publish the entries of an ``export`` archive (``_transfer.Imported``)."""
        from ._transfer import import_archive

        return import_archive(self.root, archive)

    # -- removing ------------------------------------------------------------------------
    def plan_remove(self, handles_or_keys: Iterable[str]) -> Plan:
        return plan_remove(self.info(h) for h in handles_or_keys)

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
                self._remove(item)
            except EntryInUseError as exc:
                if strict:
                    raise
                spared.append(dataclasses.replace(item, reason=exc.message))
                continue
            removed.append(item)
        return Outcome(tuple(removed), tuple(spared))

    def _remove(self, item: PlanItem) -> None:
        entry = Entry(self.root, item.key)
        lock = DownloadLock(
            entry.lock_path, entry.staging, handle=item.handle or item.key, lease=0, timeout=0
        )
        for _ in range(3):
            if lock.try_acquire():
                break
            contents = read_text(entry.lock_path)
            holder = parse_holder(contents) if contents else None
            if contents is not None and (holder is None or not holder.is_dead_here()):
                raise EntryInUseError(
                    f"{item.handle or item.key} is in use: its lock is held by "
                    f"{contents.strip()}; try again when that process is done",
                    handle=item.handle or None,
                )
            if contents is not None:
                lock._break(contents)  # its holder died on this host
        else:
            raise EntryInUseError(f"cannot take the lock of {item.key}", handle=item.handle)
        try:
            with contextlib.suppress(OSError):
                if os.stat(entry.manifest_path).st_atime > item.last_used + 1:
                    raise EntryInUseError(
                        f"{item.handle or item.key} was used since the plan was made",
                        handle=item.handle or None,
                    )
            entry.move_aside(new_uid())  # manifest first, then the tree
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.descriptor_path)
            for debris in self._debris(item.key):
                if lock.uid not in debris:
                    shutil.rmtree(debris, ignore_errors=True)
        finally:
            lock.release()


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


def _rehash(entry: Entry) -> tuple[list[str], str]:
    manifest = entry.read_manifest() or {"files": {}}
    problems, unhashed = [], 0
    for rel, (_size, digest) in manifest["files"].items():
        if not digest:
            unhashed += 1
            continue
        sha = hashlib.sha256()
        try:
            with open(os.path.join(entry.path, rel), "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
        except OSError as exc:
            problems.append(f"file {rel}: {exc.strerror}")
            continue
        if sha.hexdigest() != digest:
            problems.append(f"file {rel}: sha256 differs from the manifest")
    note = (
        f"{unhashed} files have no recorded sha256 (adopted entry): sizes checked only"
        if unhashed
        else ""
    )
    return problems, note


def _descriptor_handle(entry: Entry) -> str:
    with contextlib.suppress(OSError):
        first = read_quietly(entry.descriptor_path).decode("utf-8", "replace").split("\n", 1)[0]
        if first.startswith("Module: "):
            return first[len("Module: ") :].strip()
    return ""


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _tree_size(path: str) -> tuple[int, int]:
    size = count = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_size
                count += 1
    return size, count
