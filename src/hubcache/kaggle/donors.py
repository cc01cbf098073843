"""Equivalent copies already on this machine, so one Kaggle model is downloaded once.

The same model version can be asked for under several handles (``kaggle:`` and both URL
forms, any case of the framework, a tfhub.dev URL that redirects to it), each with its own
cache key. Every entry we make for a Kaggle model records the model under ``"kaggle"`` in its
manifest; a miss looks for a complete entry with the same model, then in kagglehub's cache,
and fills the new entry from it with hard links: no network, no second copy on disk.

The scan reads each manifest that mentions ``"kaggle"`` (a substring test first, so other
manifests cost one read); it runs only on a miss, where it replaces a download.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

from ..local.entry import Entry, read_quietly
from . import kagglehub_cache
from .identity import KaggleModel

_SUFFIX = ".manifest.json"


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
            manifest = json.loads(data)
            model = KaggleModel.from_record(manifest.get("kaggle"))
            if model is not None and isinstance(manifest.get("files"), dict):
                found.append((name[:40], model, manifest))
    return found


def find_donor(
    model: KaggleModel, root: str, key: str, kagglehub_root: Optional[str]
) -> Optional[Donor]:
    """A complete copy of ``model`` (versioned) other than entry ``key``, or None."""
    if "://" not in root:
        for other, found, manifest in _kaggle_manifests(root):
            if other != key and found.same(model) and Entry(root, other).is_complete():
                path = os.path.join(root, other)
                return Donor(path, manifest["files"], f"hubcache entry {other}")
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
