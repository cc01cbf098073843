"""kagglehub's own cache, read and (when asked) written, so both tools share downloads.

Layout (kagglehub 1.x; the framework folder is spelled as in the handle the tool was given)::

    $KAGGLEHUB_CACHE/                        default ~/.cache/kagglehub
      models/<owner>/<model>/<framework>/<variation>/
        <version>/                           the model's files
        <version>.complete                   empty marker, written last: the only proof

        .complete/<version>/<path>.complete  per-file markers: ``model_download(h, path)``
                                             is a hit only when that file's own marker is there

kagglehub has no lock and no hashes. We use a version only when its marker and folder are
there and, for TensorFlow frameworks, ``saved_model.pb`` too (a half-deleted SavedModel
must not be served). Publishing stages hard links in a hidden sibling folder, renames it
into place, writes every file's marker and the bundle marker last, so kagglehub never sees
a partial tree, and its per-file calls (KerasHub's) find each file complete. A version
folder that is already there without its marker (kagglehub's own, perhaps half-written) is
left alone, unless the caller asks to replace it (the kagglehub plug-in, which answers for
that folder in kagglehub's place).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
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


MARKERS = ".complete"  # kagglehub's folder of per-file markers, beside the versions
PARTIAL_GRACE = 2.0  # seconds a version folder without its marker may be another's publish


def variation_dir(cache_root: str, model: KaggleModel) -> str:
    """Where kagglehub keeps ``model``'s versions (framework spelled as in the handle)."""
    return os.path.join(
        cache_root, "models", model.owner, model.model, model.framework, model.variation
    )


def file_marker(cache_root: str, model: KaggleModel, path: str) -> str:
    """kagglehub's completion marker of one file (``path`` relative, ``/`` separated)."""
    *folders, name = path.lstrip("/").split("/")
    base = os.path.join(variation_dir(cache_root, model), MARKERS, str(model.version))
    return os.path.join(base, *folders, name + ".complete")


def mark_file(cache_root: str, model: KaggleModel, path: str) -> None:
    """Write one file's marker (the file itself is there and complete)."""
    marker = file_marker(cache_root, model, path)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "a"):
        pass


def publish(
    tree: str, model: KaggleModel, cache_root: str, *, in_place_of_kagglehub: bool = False
) -> Optional[str]:
    """Make ``tree`` visible to kagglehub as ``model``; returns the folder, or None when
    kagglehub already has (or is writing) that version. Hard links where the filesystem
    allows, so disk use is not doubled.

    ``in_place_of_kagglehub`` (the plug-in, which answers for kagglehub): only the copy
    under the framework spelled as in ``model`` counts, since that is the path kagglehub
    returns; and a version folder there without its marker that stays so for PARTIAL_GRACE
    seconds (not another process of ours between its rename and its marker) is moved aside
    and replaced, as kagglehub itself would write over it."""
    variation = variation_dir(cache_root, model)
    target = os.path.join(variation, str(model.version))
    marker = target + ".complete"
    if in_place_of_kagglehub:
        if os.path.isfile(marker):
            return None
    elif find(cache_root, model) is not None:
        return None
    if os.path.lexists(target):
        if not in_place_of_kagglehub:
            log.info(
                "kagglehub's cache already has a folder %s without its marker; left alone", target
            )
            return None
        if _wait_for(marker):
            return None  # another process was publishing it
        log.warning(
            "replacing the incomplete copy of %s in kagglehub's cache at %s", model.slug, target
        )
        _move_aside(target, variation, model)
    os.makedirs(variation, exist_ok=True)
    staging = os.path.join(variation, f".{model.version}.hubcache-{uuid.uuid4().hex[:12]}.tmp")
    try:
        files = link_tree(tree, staging)
        _platform.retry_busy(os.rename, staging, target)  # Windows: a scanner may hold a file
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.lexists(target) and _wait_for(marker):
            return None  # another process renamed its copy first
        raise
    for rel in files:
        mark_file(cache_root, model, rel)
    with open(marker, "w"):
        pass  # the marker is kagglehub's proof of completeness: written last
    return target


def _wait_for(marker: str) -> bool:
    deadline = time.monotonic() + PARTIAL_GRACE
    while not os.path.isfile(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _move_aside(target: str, variation: str, model: KaggleModel) -> None:
    """A version folder goes out of kagglehub's sight at once (one rename), then away."""
    aside = os.path.join(variation, f".{model.version}.stale-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def remove(cache_root: str, model: KaggleModel) -> None:
    """Forget ``model``'s version in kagglehub's cache: bundle marker first, then the files'
    markers and the folder (``force_download``)."""
    variation = variation_dir(cache_root, model)
    target = os.path.join(variation, str(model.version))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target + ".complete")
    shutil.rmtree(os.path.join(variation, MARKERS, str(model.version)), ignore_errors=True)
    if os.path.lexists(target):
        _move_aside(target, variation, model)


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
