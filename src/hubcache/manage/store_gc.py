"""``hubcache gc`` on a root behind the storage seam: the debris of uploads that stopped.

A store has no staging folders or trash (entries are uploaded in place, manifest last), so
its debris is different from a local root's (``local.gc``); the plan and items are the same::

    <key>/... without <key>.manifest.json   an upload that never finished ("staging"): when
                                            no live lock covers it
    <key>.lock                              holder dead on this host, or not refreshed for
                                            the grace period on the store's clock
    <key>.descriptor.txt, <key>.used        left over ("partial") when neither tree,
      without manifest or tree              manifest nor live lock remains
    .hubcache-clock/<uid>                   a clock probe left by a killed process, after
                                            the grace period
    <tmp>/hubcache-stage.<host>.<pid>.<uid> on THIS machine: the local extraction folder of
                                            a resolve into this root that was killed
                                            (``store.remote.stale_local_stagings``)

Executing re-checks each item: a tree is kept when its manifest appeared or its lock
changed hands since the plan was made; a lock is deleted only if it still holds what was
judged. Reading and deleting are two requests, so a new upload starting in between can,
rarely, lose files: it then publishes no manifest (its files are checked against the
listing first) or a reader finds the entry damaged and downloads it again.
"""

from __future__ import annotations

import shutil
from typing import Optional, Protocol

from ..local.gc import Debris, DebrisPlan
from ..store.lock import judge_store_lock
from ..store.remote import stale_local_stagings
from ..store.storage import Storage


class StoreRoot(Protocol):
    """What gc needs of ``store.StoreRoot`` (a protocol, so the two never import each other)."""

    store: Storage

    def scan(self) -> dict[str, tuple[dict[str, int], set[str]]]: ...
    def store_now(self) -> Optional[float]: ...


CLOCK = ".hubcache-clock/"


def plan(root: StoreRoot, grace: float) -> DebrisPlan:
    store = root.store
    items: list[Debris] = []
    for key, (tree, small) in sorted(root.scan().items()):
        if ".manifest.json" in small:
            continue
        judged, why = (
            judge_store_lock(store, key, grace, root.store_now())
            if ".lock" in small
            else ("", "no lock")
        )
        if why is None:
            continue  # a live upload
        if tree:
            reason = f"an upload that never finished (no manifest; {why})"
            items.append(Debris(store.join(key), "staging", reason, sum(tree.values()), judged))
        else:
            for suffix in (".descriptor.txt", ".used"):
                if suffix in small:
                    items.append(Debris(store.join(key + suffix), "partial", "left over", 0))
        if judged:
            items.append(Debris(store.join(f"{key}.lock"), "lock", why, 0, judged))
    now = root.store_now()
    for name in sorted(store.listing(CLOCK[:-1])):
        touched = store.modified(CLOCK + name)
        if now is not None and touched is not None and now - touched > grace:
            items.append(Debris(store.join(CLOCK + name), "partial", "a clock probe left over", 0))
    items.extend(stale_local_stagings(grace))
    return DebrisPlan(store.url, tuple(items))


def execute(store: Storage, plan: DebrisPlan) -> list[Debris]:
    """Remove what the plan lists, re-checking each item; return what went."""
    done = []
    local = {item.path for item in stale_local_stagings(0.0)}  # re-judged now
    for item in plan.items:
        if not item.path.startswith(store.url + "/"):  # a local staging folder
            if item.path in local:
                shutil.rmtree(item.path, ignore_errors=True)
                done.append(item)
            continue
        name = item.path[len(store.url) + 1 :]
        try:
            if item.kind == "staging":
                lock = store.read(f"{name}.lock")
                if store.read_manifest(name) is not None or (
                    lock is not None and lock.decode("utf-8", "replace") != item.judged
                ):
                    continue
                store.remove_tree(name)
            elif item.kind == "lock":
                if store.read(name) != item.judged.encode():
                    continue
                store.remove(name)
            else:
                store.remove(name)
        except OSError:
            continue  # reported as not removed; the next gc tries again
        done.append(item)
    return done
