"""The stager: a miss becomes a verified folder in one place, under one set of rules.

Every surface that turns a handle into files (a resolve into a local root, a store root, the
shared tier, the plug-ins) calls :func:`stage`; nothing else downloads a model. ::

    handle -> provider (what to fetch: a Plan)
      ArchivePlan  -> open -> [a redirect through a Kaggle page: link an equal copy instead]
                   -> sniff, inflate, tar/zip parse -> SafeTree
      FileSetPlan  -> each listed file (up to PARALLEL_FILES at once) -> SafeTree
      LinkPlan     -> each file of the equivalent copy, hard-linked -> SafeTree
    -> every file and folder synced -> the pin checked -> a typed Manifest

One download loop (``fetch.retry.with_restarts``), one retry budget per call (every
retry of every file, part and resume draws on it), one safe writer, one pin check
(``local.manifest.check_pin``). Providers only decide: plain handles here
(:func:`_plain_plan`), Kaggle in ``kaggle.provider``.

Layer: acquisition (docs/architecture.md), under ``_resolve``; it stands on ``kaggle`` (a
provider), ``local`` (the manifest), ``archive`` (the safe writer) and ``fetch``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Optional

from . import _faults
from ._config import Config
from ._errors import ConfigurationError, CorruptArchiveError, HTTPStatusError, UnsafeArchiveError
from ._handles import Handle
from .archive.extract import extract
from .archive.safetree import SafeTree
from .fetch.plan import ArchivePlan, FileSet, FileSetPlan, LinkPlan, Plan
from .fetch.progress import Progress
from .fetch.retry import RetryBudget, with_restarts
from .fetch.source import CancelledError, FsspecSource, LocalFileSource, Source, redact
from .local.manifest import ArchiveFacts, Manifest, check_pin

log = logging.getLogger(__name__)

PARALLEL_FILES = 8  # files of a file set fetched at once (kagglehub's own choice is similar)


def stage(
    handle: Handle,
    key: str,
    staging: str,
    config: Config,
    sha256: Optional[str],
    *,
    plan: Optional[Plan] = None,
) -> Manifest:
    """Fill ``staging`` (created here, removed again on any failure) with the model of
    ``handle`` and return its manifest. The caller publishes it. ``plan``: what to fetch,
    when the caller knows better than the handle's provider (a shared tier's copy)."""
    plan = plan if plan is not None else _plan(handle, key, config)
    budget = RetryBudget.of(config)  # one budget for every retry of this download
    if isinstance(plan, FileSetPlan) and sha256 is not None:
        raise ConfigurationError(
            f"{handle.shown} is a set of {len(plan.files)} files, not an archive, so a sha256 "
            "pin cannot apply; resolve it without --sha256"
        )
    if isinstance(plan, LinkPlan):
        return _link(plan, handle, key, staging, config)
    if isinstance(plan, FileSetPlan):
        return _file_set(plan, handle, key, staging, config=config, budget=budget)
    return with_restarts(
        budget,
        handle.shown,
        lambda: _archive(plan, handle, key, staging, config=config, budget=budget, sha256=sha256),
    )


def _plan(handle: Handle, key: str, config: Config) -> Plan:
    if handle.kind == "kaggle":
        from .kaggle.provider import plan
        from .kaggle.settings import kaggle_settings

        return plan(handle, key, config, kaggle_settings())
    return _plain_plan(handle, config)


def _plain_plan(handle: Handle, config: Config) -> ArchivePlan:
    """One archive at the handle's location (through ``HUBCACHE_MIRRORS`` when set)."""

    def direct(place: Handle, cfg: Config, budget: RetryBudget) -> Source:
        if place.scheme in ("http", "https"):
            from .fetch.http import HTTPSource

            return HTTPSource(place.location, place.shown, cfg, budget)
        if place.scheme:
            return FsspecSource(place.location, place.shown, cfg.store_timeout)
        path = os.path.abspath(os.path.expanduser(place.location))
        return LocalFileSource(path, place.shown)

    def open_source(budget: RetryBudget) -> Source:
        if config.mirrors or config.no_origin:
            from .fetch.mirrors import MirroredSource

            return MirroredSource(handle, config, budget, direct)
        return direct(handle, config, budget)

    return ArchivePlan(open=open_source, label=_label(handle.shown))


# -- the three shapes ---------------------------------------------------------------------
def _archive(
    plan: ArchivePlan,
    handle: Handle,
    key: str,
    staging: str,
    *,
    config: Config,
    budget: RetryBudget,
    sha256: Optional[str],
) -> Manifest:
    """One attempt at an archive: open, decide, extract, verify (restarted by the caller)."""
    source = plan.open(budget)
    progress: Optional[Progress] = None
    _faults.fs.mkdir(staging, 0o755)
    try:
        source, linked, record = _open(source, handle, key, config, budget)
        if linked is not None:  # the chain named a Kaggle model we hold: link it instead
            source.close()
            _discard(staging)
            return _link(linked, handle, key, staging, config)
        record = plan.record or record
        progress = Progress(config.progress, source.total, plan.label)
        result = extract(
            source, staging, limits=config.limits, fsync=config.fsync, progress=progress
        )
        manifest = Manifest.new(
            handle=handle.shown,
            key=key,
            files=result.files,
            dirs=result.dirs,
            source=plan.source or source.display,
            etag=source.etag,
            last_modified=source.last_modified,
            archive=ArchiveFacts(result.format, result.archive_bytes, result.archive_sha256),
            kaggle=record,
        )
        check_pin(manifest, sha256, fresh=True, where=staging)
        return manifest
    except BaseException:
        _discard(staging)
        raise
    finally:
        source.close()
        if progress is not None:
            progress.close()


def _open(
    source: Source, handle: Handle, key: str, config: Config, budget: RetryBudget
) -> tuple[Source, Optional[LinkPlan], Optional[Mapping[str, Any]]]:
    """Open ``source`` and decide what its redirect chain means: (the source to read, an
    equivalent copy to link instead, the Kaggle model's record).

    A model URL's chain is stopped at a Kaggle model page (tfhub.dev redirects there), so
    a copy of that model already held costs no further request; a signed URL refused at
    the end of such a chain is replaced once by a fresh one from Kaggle's API."""
    if handle.kind not in ("model", "kaggle"):  # an archive URL, a file, a store object
        source.open()
        return source, None, None
    from .kaggle import redirects

    if handle.kind == "model":
        source.stop_at = redirects.model_page
    try:
        source.open()
        if source.stopped:
            linked, record = redirects.inspect(source, key, config, find_copy=True)
            if linked is not None:
                return source, linked, record
            source.follow_on()
    except HTTPStatusError as exc:
        fresh = redirects.refused(source, exc, handle.shown, config, budget)
        if fresh is None:
            raise
        source.close()
        fresh.open()
        source = fresh
    redirects.check_catalogue(source)
    return source, None, redirects.inspect(source, key, config, find_copy=False)[1]


def _file_set(
    plan: FileSetPlan,
    handle: Handle,
    key: str,
    staging: str,
    *,
    config: Config,
    budget: RetryBudget,
) -> Manifest:
    """Each listed file through the one loop and the safe writer, several at once; the
    first failure stops the others at their next chunk and removes the staging."""
    tree = SafeTree(staging, config.limits, fsync=config.fsync)
    _check_listing(plan, tree)  # before any request: a bad name refuses the whole set
    _faults.fs.mkdir(staging, 0o755)
    try:
        for folder in sorted(plan.dirs):
            if folder:
                tree.add_dir(folder)
    except BaseException:
        _discard(staging)
        raise
    sizes = [item.size for item in plan.files]
    total = sum(s for s in sizes if s is not None) if None not in sizes else None
    progress = Progress(config.progress, total, plan.label)
    stop = threading.Event()
    lock = threading.Lock()

    def one(item: FileSet) -> None:
        what = f"{item.name} of {handle.shown}"
        with_restarts(
            budget, what, lambda: _fetch_file(plan, item, tree, budget=budget, stop=stop, tick=tick)
        )

    def tick(n: int) -> None:
        with lock:
            progress.update(n)

    pool = ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_FILES, len(plan.files))))
    try:
        futures = [pool.submit(one, item) for item in plan.files]
        wait(futures, return_when=FIRST_EXCEPTION)
        stop.set()  # a failed file stops the others at their next chunk
        wait(futures)
        _raise_first_failure(futures)
        tree.finalize()
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        tree.close()
        _discard(staging)
        raise
    finally:
        progress.close()
    pool.shutdown(wait=True)
    return Manifest.new(
        handle=handle.shown,
        key=key,
        files=tree.files,
        dirs=tree.dirs,
        source=plan.source,
        kaggle=plan.record,
    )


def _check_listing(plan: FileSetPlan, tree: SafeTree) -> None:
    """The listing's names, count and sizes against the safe writer's rules, up front."""
    limits = tree.limits
    names = [tree.normalize(item.name) for item in plan.files]
    if len(names) > limits.max_members:
        raise UnsafeArchiveError(f"{plan.label} lists more than {limits.max_members} files")
    if sum(item.size or 0 for item in plan.files) > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{plan.label} is larger than {limits.max_total_bytes} bytes")
    parents = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    if not all(names) or len(set(names)) != len(names) or parents & set(names):
        raise UnsafeArchiveError(
            f"{plan.label} lists a file twice, as both a file and a folder, or with an empty "
            "name; refused"
        )


def _fetch_file(
    plan: FileSetPlan,
    item: FileSet,
    tree: SafeTree,
    *,
    budget: RetryBudget,
    stop: threading.Event,
    tick: Callable[[int], None],
) -> None:
    """One attempt at one listed file: its bytes go through a SafeTree writer (names,
    limits, O_NOFOLLOW, declared size, sha256, sync); an attempt that breaks leaves nothing
    (the writer's file is removed) so the next attempt starts clean."""
    if stop.is_set():
        raise CancelledError("another file of the set failed")
    source = plan.open(item.name, budget)
    writer = None
    try:
        source.open()
        writer = tree.add_file(item.name, item.size, 0o644)
        for chunk in source.chunks():
            _stop_if(stop)
            writer.write(chunk)
            tick(len(chunk))
        _check_digest(item, writer.sha256, source.display)
        writer.close()
        writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
            tree.forget_file(item.name)
        raise
    finally:
        source.close()


def _stop_if(stop: threading.Event) -> None:
    if stop.is_set():
        raise CancelledError("another file of the set failed")


def _check_digest(item: FileSet, actual: str, where: str) -> None:
    if item.sha256 and actual != item.sha256:
        raise CorruptArchiveError(
            f"{item.name} from {where} has sha256 {actual}, not the {item.sha256} its listing gives"
        )


def _raise_first_failure(futures: list[Future[None]]) -> None:
    """The error that stopped the set, not one of the cancellations it caused."""
    failures = [f.exception() for f in futures if f.exception() is not None]
    real = [e for e in failures if not isinstance(e, CancelledError)]
    if failures:
        raise (real or failures)[0]  # type: ignore[misc]


def _link(
    plan: LinkPlan,
    handle: Handle,
    key: str,
    staging: str,
    config: Config,
) -> Manifest:
    """Fill ``staging`` from an equivalent complete copy with hard links (copies where the
    filesystem cannot link), through the safe writer and synced like a download."""
    log.info("%s: using the copy in the %s (linked, not downloaded)", handle.shown, plan.origin)
    _faults.fs.mkdir(staging, 0o755)
    tree = SafeTree(staging, config.limits, fsync=config.fsync)
    digests: Mapping[str, Any] = plan.digests or {}
    try:
        for dirpath, dirnames, names in os.walk(plan.path):
            rel = os.path.relpath(dirpath, plan.path)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in sorted(dirnames):
                _link_dir(tree, os.path.join(dirpath, name), prefix + name)
            for name in sorted(names):
                path = os.path.join(dirpath, name)  # add_link refuses all but regular files
                known = digests.get(prefix + name)
                size = os.lstat(path).st_size
                digest = str(known[1]) if known is not None and _same_size(known, size) else ""
                tree.add_link(prefix + name, path, digest)
        tree.finalize()
    except BaseException:
        tree.close()
        _discard(staging)
        raise
    return Manifest.new(
        handle=handle.shown,
        key=key,
        files=tree.files,
        dirs=tree.dirs,
        source=f"linked from {plan.origin}",
        kaggle=plan.record,
    )


def _link_dir(tree: SafeTree, path: str, rel: str) -> None:
    if os.path.islink(path):
        raise UnsafeArchiveError(
            f"{path} is a symbolic link, not a regular folder; the copy is not linked from "
            "(check it with `hubcache verify`)"
        )
    tree.add_dir(rel)


def _same_size(known: Any, size: int) -> bool:
    return isinstance(known, (list, tuple)) and len(known) == 2 and known[0] == size


def _discard(staging: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(staging, ignore_errors=True)


def _label(shown: str) -> str:
    text = redact(shown) if "?" in shown else shown
    text = text.split("?", 1)[0]
    return text if len(text) <= 60 else "..." + text[-57:]
