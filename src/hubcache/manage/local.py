"""The ``Cache`` backend of a local root: the layout of docs/cache-format.md (``local.entry``).

An entry is the group of names that start with one 40-hex key. Its handle comes from the
manifest, else from tensorflow_hub's descriptor; its last use is the manifest's atime
(``local.entry.record_use``), its download time the manifest's mtime (kept by that record).
Reads use O_NOATIME (``read_quietly``), so looking at a cache never makes it look used.

Removal takes the entry's ``DownloadLock`` (a live holder spares the entry; a holder
that died on this host is broken), re-checks the atime against the plan, then moves the
manifest and tree aside (``Entry.move_aside``) and deletes the descriptor and debris.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Sequence
from typing import Any, Optional

from .._errors import hide_credentials
from ..local.entry import Entry, descriptor_handle, read_quietly
from ..local.gc import Debris, DebrisPlan
from ..local.gc import execute as gc_execute
from ..local.gc import plan as gc_plan
from ..local.lock import DownloadLock, break_lock, new_uid, parse_holder, read_text
from ..local.root import not_a_folder
from ..local.tree import tree_stats
from .prune import PlanItem
from .records import (
    KEY,
    LEFTOVERS,
    EntryInfo,
    manifest_facts,
    rehash_files,
    take_for_removal,
    used_since,
)


class LocalRoot:
    def __init__(self, root: str) -> None:
        # A root that is a file (a typo in --cache-dir) would make every command fail
        # with a traceback, or gc report "removed 0 items" as if all were well: say so
        # once, with the exit code a resolve gives for the same root (6).
        if os.path.lexists(root) and not os.path.isdir(root):
            raise not_a_folder(root)
        try:
            os.stat(root)
        except NotADirectoryError:  # a root under a file: listdir would raise it later
            raise not_a_folder(root, under_a_file=True) from None
        except OSError:
            pass  # a missing root is an empty cache
        self.location = root

    def keys(self) -> list[str]:
        try:
            names = os.listdir(self.location)
        except FileNotFoundError:
            return []
        return sorted({name[:40] for name in names if KEY.match(name)})

    def entries(self) -> list[EntryInfo]:
        return [self._info(key) for key in self.keys()]

    def entry(self, key: str) -> Optional[EntryInfo]:
        return self._info(key) if key in self.keys() else None

    def is_complete(self, key: str) -> bool:
        return Entry(self.location, key).is_complete()

    def details(self, info: EntryInfo) -> dict[str, Any]:
        entry = Entry(self.location, info.key)
        manifest = entry.manifest()
        return {
            **info.to_json(),
            "manifest_path": entry.manifest_path if manifest is not None else "",
            "descriptor_path": entry.descriptor_path,
            # tensorflow_hub writes the handle as given, credentials and all
            "descriptor": hide_credentials(read_text(entry.descriptor_path) or ""),
            **manifest_facts(manifest),
            "debris": self._debris(info.key),
        }

    def _info(self, key: str) -> EntryInfo:
        entry = Entry(self.location, key)
        locked_by = _live_holder(entry)
        state = entry.state()
        name: str = state.name  # plus "in progress", which only a listing knows
        reason = state.reason
        manifest = entry.manifest()
        handle = (manifest.handle if manifest is not None else "") or _descriptor_handle(entry)
        handle = hide_credentials(handle)  # entries written before credentials were hidden
        if name == "missing" or (locked_by and name != "complete"):
            name, reason = ("in progress", "") if locked_by else ("damaged", LEFTOVERS)
        try:
            st = os.stat(entry.manifest_path)
            downloaded, last_used = st.st_mtime, st.st_atime
        except OSError:  # legacy or damaged: the descriptor (or the tree) is all we have
            downloaded = _mtime(entry.descriptor_path) or _mtime(entry.path)
            last_used = downloaded
        stats = tree_stats(entry.path)  # one walk: also which files other entries may share
        if name == "complete" and manifest is not None:
            sizes = [size for size, _digest in manifest.files.values()]
            size, files = sum(sizes), len(sizes)
        else:
            size, files = stats.size, stats.files
        return EntryInfo(
            key=key,
            handle=handle,
            size=size,
            last_used=last_used,
            state=name,
            locked_by=locked_by,
            links=stats.links,
            path=entry.path,
            files=files,
            downloaded=downloaded,
            reason=reason,
        )

    def _debris(self, key: str) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                os.path.join(self.location, n)
                for n in os.listdir(self.location)
                if n.startswith(key + ".") and n.endswith((".tmp", ".trash"))
            )
        return []

    def rehash(self, key: str) -> tuple[list[str], str]:
        entry = Entry(self.location, key)
        manifest = entry.manifest()

        def digest(rel: str) -> str:
            sha = hashlib.sha256()
            with open(os.path.join(entry.path, rel), "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
            return sha.hexdigest()

        return rehash_files(manifest, digest)

    def remove(self, item: PlanItem) -> None:
        entry = Entry(self.location, item.key)
        lock = DownloadLock(
            entry.lock_path, entry.staging, handle=item.handle or item.key, lease=0, timeout=0
        )

        def holder() -> tuple[Optional[str], bool]:
            contents = read_text(entry.lock_path)
            return contents, contents is not None and _is_live(contents)

        def break_stale(contents: str) -> None:
            break_lock(entry.lock_path, contents, lock.uid)  # its holder died here

        take_for_removal(item, lock, holder, break_stale)
        try:
            with contextlib.suppress(OSError):
                if os.stat(entry.manifest_path).st_atime > item.last_used + 1:
                    raise used_since(item)
            entry.move_aside(new_uid())  # manifest first, then the tree
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.descriptor_path)
            for debris in self._debris(item.key):
                if lock.uid not in debris:
                    shutil.rmtree(debris, ignore_errors=True)
        finally:
            lock.release()

    def export(self, keys: Sequence[str], out: str) -> list[str]:
        from .transfer import export_entries

        return export_entries(self.location, keys, out)

    def import_archive(self, archive: str) -> list[Any]:
        from .transfer import import_archive

        return import_archive(self.location, archive)

    def plan_gc(self, grace: float) -> DebrisPlan:
        return gc_plan(self.location, grace=grace)

    def execute_gc(self, plan: DebrisPlan) -> list[Debris]:
        return gc_execute(plan)


def _is_live(contents: str) -> bool:
    """A lock's holder is live unless it is provably a dead process on this host."""
    holder = parse_holder(contents)
    return holder is None or not holder.is_dead_here()


def _live_holder(entry: Entry) -> str:
    contents = read_text(entry.lock_path)
    if contents is None or not _is_live(contents):
        return ""
    return contents.strip() or "an unreadable lock"


def _descriptor_handle(entry: Entry) -> str:
    with contextlib.suppress(OSError):
        return descriptor_handle(read_quietly(entry.descriptor_path))
    return ""


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
