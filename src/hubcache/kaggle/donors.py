"""Equivalent copies already on this machine, so one Kaggle model is downloaded once.

The same model version can be asked for under several handles (``kaggle:`` and both URL
forms, any case of the framework, a tfhub.dev URL that redirects to it), each with its own
cache key. Every entry we make for a Kaggle model records the model under ``"kaggle"`` in its
manifest; a miss looks for a complete entry with the same model, then in kagglehub's cache,
and fills the new entry from it with hard links: no network, no second copy on disk.

The scan reads each manifest that mentions ``"kaggle"`` (a substring test first, so other
manifests cost one read); it runs only on a miss, where it replaces a download. Entries
tensorflow_hub made for a Kaggle URL have no such record (no manifest, or one hubcache wrote
when it adopted them): their descriptor's handle is parsed as a Kaggle URL instead, and an
entry that looks usable is a donor too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from .._values import parse_json
from ..local.entry import Entry, descriptor_handle, read_quietly
from . import kagglehub_cache
from .identity import KAGGLE_HOSTS, KaggleModel, from_url

_SUFFIX = ".manifest.json"
_DESCRIPTOR = ".descriptor.txt"
_USABLE = ("complete", "legacy")  # legacy: tensorflow_hub's, no manifest, nothing missing


@dataclass(frozen=True)
class Donor:
    path: str  # the folder holding the model's files
    files: Optional[dict[str, Any]]  # a manifest's files (with sha256), None for kagglehub's
    origin: str  # for the manifest and logs: "hubcache entry <key>" / "kagglehub cache"


def _kaggle_manifests(root: str) -> list[tuple[str, KaggleModel, dict[str, Any]]]:
    found = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if not name.endswith(_SUFFIX) or len(name) != 40 + len(_SUFFIX):
            continue
        with contextlib.suppress(OSError, ValueError):
            data = read_quietly(os.path.join(root, name))
            if b'"kaggle"' not in data:
                continue
            manifest = parse_json(data)
            model = KaggleModel.from_record(manifest.get("kaggle"))
            if model is not None and isinstance(manifest.get("files"), dict):
                found.append((name[:40], model, manifest))
    return found


def _url_entries(root: str, hosts: Iterable[str]) -> list[tuple[str, KaggleModel]]:
    """Entries whose descriptor names a Kaggle model URL and whose manifest (if any) does
    not record the model: those tensorflow_hub made, adopted or not."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if not name.endswith(_DESCRIPTOR) or len(name) != 40 + len(_DESCRIPTOR):
                continue
            key = name[:40]
            with contextlib.suppress(OSError, ValueError):
                with contextlib.suppress(FileNotFoundError):
                    if b'"kaggle"' in read_quietly(os.path.join(root, key + _SUFFIX)):
                        continue  # recorded: the manifest scan has it
                handle = descriptor_handle(read_quietly(os.path.join(root, name)))
                model = from_url(handle, hosts) if "://" in handle else None
                if model is not None:
                    found.append((key, model))
    return found


def find_donor(
    model: KaggleModel,
    root: str,
    key: str,
    kagglehub_root: Optional[str],
    hosts: Iterable[str] = KAGGLE_HOSTS,
) -> Optional[Donor]:
    """A complete copy of ``model`` (versioned) other than entry ``key``, or None.
    ``hosts``: the Kaggle web hosts whose model URLs tensorflow_hub may have cached."""
    if "://" not in root:
        for other, found, manifest in _kaggle_manifests(root):
            if other != key and found.same(model) and Entry(root, other).is_complete():
                path = os.path.join(root, other)
                return Donor(path, manifest["files"], f"hubcache entry {other}")
        for other, found in _url_entries(root, hosts):
            entry = Entry(root, other)
            if other != key and found.same(model) and entry.state().name in _USABLE:
                return Donor(entry.path, None, f"tensorflow_hub entry {other}")
    if kagglehub_root:
        copy = kagglehub_cache.find(kagglehub_root, model)
        if copy is not None:
            return Donor(copy, None, "kagglehub cache")
    return None


def cached_versions(model: KaggleModel, root: str) -> list[int]:
    """Versions of ``model``'s variation complete in the hubcache root."""
    return sorted(
        {
            found.version
            for key, found, _ in _kaggle_manifests(root)
            if found.same_variation(model)
            and found.version is not None
            and Entry(root, key).is_complete()
        }
    )
