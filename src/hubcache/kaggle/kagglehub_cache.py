"""kagglehub's own cache, read and (when asked) written, so both tools share downloads.

Layout (kagglehub 1.x; the framework folder is spelled as in the handle the tool was given)::

    $KAGGLEHUB_CACHE/                        default ~/.cache/kagglehub
      models/<owner>/<model>/<framework>/<variation>/
        <version>/                           the model's files
        <version>.complete                   empty marker, written last: the only proof

kagglehub has no lock and no hashes. We use a version only when its marker and folder are
there and, for TensorFlow frameworks, ``saved_model.pb`` too (a half-deleted SavedModel
must not be served). Publishing stages hard links in a hidden sibling folder, renames it
into place and writes the marker last, so kagglehub never sees a partial tree; a version
folder that is already there (kagglehub's own, perhaps half-written) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import Optional

from .. import _platform
from ..local.tree import link_tree, tree_stats
from .identity import KaggleModel, framework_id

log = logging.getLogger(__name__)


def _variation_dirs(cache_root: str, model: KaggleModel) -> list[tuple[str, str]]:
    """(framework folder as spelled on disk, variation folder) pairs matching ``model``,
    whatever the case of the framework (Kaggle treats ``tensorflow2`` = ``tensorFlow2``)."""
    base = os.path.join(cache_root, "models", model.owner, model.model)
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = []
    for name in sorted(names, key=lambda n: n != model.framework):  # the exact spelling first
        if framework_id(name) == framework_id(model.framework):
            path = os.path.join(base, name, model.variation)
            if os.path.isdir(path):
                found.append((name, path))
    return found


def usable(version_dir: str, model: KaggleModel) -> bool:
    if not (os.path.isfile(version_dir + ".complete") and os.path.isdir(version_dir)):
        return False
    if model.is_tensorflow and not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        return False
    return any(files for _, _, files in os.walk(version_dir))


def find(cache_root: str, model: KaggleModel) -> Optional[str]:
    """The folder of a complete copy of ``model`` (versioned) in kagglehub's cache, or None."""
    for _name, variation in _variation_dirs(cache_root, model):
        path = os.path.join(variation, str(model.version))
        if usable(path, model):
            return path
    return None


def versions(cache_root: str, model: KaggleModel) -> list[int]:
    """Complete versions of ``model``'s variation in kagglehub's cache."""
    found = set()
    for _name, variation in _variation_dirs(cache_root, model):
        for name in os.listdir(variation):
            if name.isdigit() and usable(os.path.join(variation, name), model):
                found.add(int(name))
    return sorted(found)


def publish(tree: str, model: KaggleModel, cache_root: str) -> Optional[str]:
    """Make ``tree`` visible to kagglehub as ``model``; returns the folder, or None when
    kagglehub already has (or is writing) that version. Hard links where the filesystem
    allows, so disk use is not doubled."""
    variation = os.path.join(
        cache_root, "models", model.owner, model.model, model.framework, model.variation
    )
    target = os.path.join(variation, str(model.version))
    marker = target + ".complete"
    if find(cache_root, model) is not None:
        return None
    if os.path.lexists(target):
        log.info("kagglehub's cache already has a folder %s without its marker; left alone", target)
        return None
    os.makedirs(variation, exist_ok=True)
    staging = os.path.join(variation, f".{model.version}.hubcache-{uuid.uuid4().hex[:12]}.tmp")
    try:
        link_tree(tree, staging)
        _platform.retry_busy(os.rename, staging, target)  # Windows: a scanner may hold a file
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    with open(marker, "w"):
        pass  # the marker is kagglehub's proof of completeness: written last
    return target


def entries(cache_root: str) -> list[tuple[str, str, int, int]]:
    """(kagglehub handle, folder, bytes, files) of every model version there that a resolve
    would use (``usable``): a marker beside an empty or partial folder is not one."""
    rows = []
    base = os.path.join(cache_root, "models")
    with contextlib.suppress(OSError):
        for owner in sorted(os.listdir(base)):
            for name in sorted(_listdir(os.path.join(base, owner))):
                for fw in sorted(_listdir(os.path.join(base, owner, name))):
                    for var in sorted(_listdir(os.path.join(base, owner, name, fw))):
                        variation = os.path.join(base, owner, name, fw, var)
                        for ver in sorted(_listdir(variation)):
                            path = os.path.join(variation, ver)
                            model = KaggleModel(
                                owner, name, fw, var, int(ver) if ver.isdigit() else None
                            )
                            if ver.isdigit() and usable(path, model):  # what resolve would use
                                du = tree_stats(path)
                                slug = f"{owner}/{name}/{fw}/{var}/{ver}"
                                rows.append((slug, path, du.size, du.files))
    return rows


def _listdir(path: str) -> list[str]:
    try:
        return [n for n in os.listdir(path) if not n.startswith(".")]
    except OSError:
        return []


def publish_entry(tree: str, record: object) -> None:
    """``publish`` for a finished cache entry, best effort: a failure costs one warning."""
    from .identity import KaggleModel
    from .settings import kaggle_settings

    model = KaggleModel.from_record(record)
    if model is None:
        return
    root = kaggle_settings().kagglehub_cache
    try:
        target = publish(tree, model, root)
    except OSError as exc:
        log.warning("could not publish %s in kagglehub's cache at %s: %s", model.slug, root, exc)
        return
    if target is not None:
        log.info("published %s in kagglehub's cache at %s", model.slug, target)
