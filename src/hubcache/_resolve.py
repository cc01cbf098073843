"""resolve(): one handle in, one local directory out, downloading at most once.

::

    handle -> config -> resolver (what to fetch) -> entry (key, paths, state)
      complete?  -> return path                  (fast path: no lock, no network, no write)
      lock       -> re-check -> fetch -> extract (streamed, safe)
                 -> manifest + descriptor -> publish (one atomic rename) -> unlock -> path

Layer: resolve (docs/architecture.md), under ``_load`` and the public façade; it stands on
the acquisition layer (``_stage``), the targets (``local``, ``store``) and the core, and
reaches ``fetch`` and ``archive`` only through them (an import-linter contract).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union, cast

from . import _faults
from ._config import Config, check_load_format, load_config, warm_root
from ._errors import (
    CacheDirError,
    ConfigurationError,
    HubcacheError,
    ModelNotFoundError,
    OfflineError,
    handle_context,
)
from ._handles import Handle, parse_handle
from .local.entry import Entry
from .local.root import choose_root, is_remote, unsafe_reason

if TYPE_CHECKING:
    from .local.manifest import Manifest

log = logging.getLogger(__name__)

_HANDLES: dict[str, Handle] = {}  # parsed handles, so the warm path parses each once
_ENTRIES: dict[tuple[str, str], Entry] = {}  # (root, handle) -> Entry, for the warm path


def resolve(
    handle: str,
    *,
    cache_dir: Optional[str] = None,
    offline: Optional[bool] = None,
    sha256: Optional[str] = None,
    progress: Optional[bool] = None,
    on_wait: Optional[Callable[[str], None]] = None,
    mirrors: Union[str, Sequence[str], None] = None,
    no_origin: Optional[bool] = None,
    kagglehub_cache: Optional[bool] = None,
) -> str:
    """Return a local directory holding the model of ``handle``, downloading it at most once.

    ``mirrors`` (default ``HUBCACHE_MIRRORS``): ``"PREFIX=REPLACEMENT,..."`` URL rewrites
    tried in order before the origin, the cache key staying the handle; ``no_origin=True``
    never falls back to the handle's own URL.

    ``kagglehub_cache=True`` (or ``HUBCACHE_KAGGLEHUB=1``) also publishes a downloaded Kaggle
    model in kagglehub's cache (hard links), so ``kagglehub.model_download`` finds it.

    ``cache_dir`` overrides ``TFHUB_CACHE_DIR``; ``offline=True`` (or ``HUBCACHE_OFFLINE=1``)
    never touches the network; ``sha256`` pins the archive's digest (a mismatch raises
    ``ChecksumMismatchError`` and nothing is cached); ``progress`` forces the bar on or off.
    """
    parsed = parse(handle)
    if sha256 is not None:
        sha256 = check_sha256(sha256, parsed)
    config = load_config(  # memoised: a warm hit checks every setting for ~1 µs
        cache_dir=cache_dir,
        offline=offline,
        progress=progress,
        mirrors=mirrors,
        no_origin=no_origin,
        kagglehub=kagglehub_cache,
    )
    if (
        sha256 is None
        and parsed.kind != "directory"
        and check_load_format(config) != "UNCOMPRESSED"
    ):
        warm = _warm(parsed, config.root, config.root_is_default)
        if warm is not None and warm.is_complete():
            return warm.path
    return resolve_with(parsed, config, sha256=sha256, on_wait=on_wait)


def resolve_with(
    parsed: Handle,
    config: Config,
    *,
    sha256: Optional[str] = None,
    on_wait: Optional[Callable[[str], None]] = None,
) -> str:
    """The rest of :func:`resolve` once the settings are read (the tensorflow_hub plug-in
    enters here with tensorflow_hub's reading of them)."""
    if parsed.kind == "directory":
        return _existing_directory(parsed, config)
    if parsed.kind == "kaggle" or (parsed.kind == "model" and "/models/" in parsed.raw):
        from .kaggle.versions import pin

        parsed, _model = pin(parsed, config)  # a Kaggle model, pinned to one version
    if check_load_format(config) == "UNCOMPRESSED" and parsed.kind == "model":
        from ._uncompressed import uncompressed_location

        location = uncompressed_location(parsed, config)
        if location is not None:  # None: the server sent an archive, resolve it as one
            return location
    if is_remote(config.root):
        from .store.remote import open_target

        target = open_target(parsed.shown, parsed.key, config)
        try:
            return acquire(parsed, target, config, sha256, on_wait)
        finally:
            target.close()  # its own store client: closed now, not at garbage collection
    root = choose_root(config)
    entry = Entry(root, parsed.key)
    if sha256 is None and entry.is_complete():
        return entry.path
    from .local.target import LocalTarget

    return acquire(parsed, LocalTarget(entry, parsed.shown, config), config, sha256, on_wait)


def check_sha256(sha256: object, handle: Handle) -> str:
    """A pin must look like a sha256 before anything is downloaded: a malformed one could
    never match, so it would only fail after the whole download."""
    text = sha256.strip() if isinstance(sha256, str) else ""
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ConfigurationError(
            f"sha256 pin {sha256!r} for {handle.shown} is not 64 hexadecimal digits; copy the "
            "archive's digest exactly, as `sha256sum` prints it",
            handle=handle.shown,
        )
    if handle.kind == "directory":  # used as it is: a pin on it was silently never checked
        raise ConfigurationError(
            f"a sha256 pin checks a downloaded archive, but {handle.shown} is a folder, used "
            "as it is; drop the pin, or pin the archive the folder came from",
            handle=handle.shown,
        )
    return text.lower()


def warm_entry(handle: Handle, cache_dir: Optional[str]) -> Optional[Entry]:
    """The entry a hit would be served from, by tensorflow_hub's reading of the settings
    (the plug-in's warm path: no ``Config``, a bad hubcache variable is not its concern).
    None means "let the full rules decide" (remote roots, an unsafe default root, the
    UNCOMPRESSED protocol)."""
    found = warm_root(cache_dir)
    if found is None:
        return None
    root, source = found
    return _warm(handle, root, source == "default")


def _warm(handle: Handle, root: str, is_default: bool) -> Optional[Entry]:
    """The hot path (a few microseconds): the entry under a local root, memoised per
    (root, handle); None for a remote root or an unsafe default root."""
    if "://" in root or (is_default and unsafe_reason(root) is not None):
        return None
    entry = _ENTRIES.get((root, handle.raw))
    if entry is None:
        entry = Entry(root, handle.key)
        if len(_ENTRIES) < 4096:
            _ENTRIES[root, handle.raw] = entry
    return entry


def parse(handle: str) -> Handle:
    parsed = _HANDLES.get(handle) if isinstance(handle, str) else None
    if parsed is None:
        parsed = parse_handle(handle)
        if len(_HANDLES) < 4096:
            _HANDLES[handle] = parsed
    return parsed


def _existing_directory(handle: Handle, config: Config) -> str:
    """A directory handle is returned as it is, after checking that it exists."""
    if handle.scheme:
        from .store.remote import is_remote_directory

        if not is_remote_directory(handle.location, handle.shown, config.store_timeout):
            raise ModelNotFoundError(
                f"{handle.shown} is not an existing directory", handle=handle.shown
            )
        return handle.raw
    path = os.path.expanduser(handle.location)
    if not os.path.isdir(path):
        hint = "" if os.path.exists(path) else " (no such file or directory)"
        raise ModelNotFoundError(
            f"{handle.shown!r} is neither a URL nor an existing model directory{hint}; pass an "
            "https:// model URL, an archive (.tar.gz, .zip) or a folder holding a model",
            handle=handle.shown,
        )
    return path


class Target(Protocol):
    """Where a resolve publishes: a local root (``local.target``) or a store root
    (``store.remote``). Each answers the skeleton's questions for its kind of storage."""

    path: str  # what resolve returns
    where: str  # the root, for messages

    def hit(self, sha256: Optional[str]) -> bool: ...

    def lock(self, on_wait: Optional[Callable[[str], None]]) -> Any: ...

    def done(self) -> bool: ...

    def prepare(self, uid: str, sha256: Optional[str]) -> Optional[str]: ...

    def publish(self, staging: str, manifest: Manifest) -> None: ...

    def cleanup(self, staging: str) -> None: ...

    def unusable(self, exc: OSError) -> CacheDirError: ...


def acquire(
    handle: Handle,
    target: Target,
    config: Config,
    sha256: Optional[str],
    on_wait: Optional[Callable[[str], None]],
) -> str:
    """The miss path, the same for every kind of root::

        hit? -> offline? -> lock -> prepare (gc debris, re-check, heal) -> stage (shared
        tier or origin) -> publish (+ fill the tier) -> evict -> unlock

    Its modules (HTTP client, extraction, locking) are imported on the way, so
    ``import hubcache`` and warm hits never pay them. Our errors raised below get the
    handle here, once (``handle_context``)."""
    with handle_context(handle.shown, shown=False):
        if target.hit(sha256):
            return target.path
        if config.offline and handle.kind != "kaggle":  # Kaggle may link a copy it holds
            raise OfflineError(
                f"{handle.shown} is not in the cache at {target.where} and offline mode is on "
                "(HUBCACHE_OFFLINE / offline=True); on a machine with network access run "
                f"`hubcache prefetch FILE` (or `hubcache resolve {handle.shown}`), then "
                "`hubcache export OUT.tar ...` there and `hubcache import OUT.tar` here"
            )
        lock = target.lock(on_wait)
        held = _Held()
        try:  # released even when the wait fails: a root made for this lock goes with it
            while not lock.wait_for_turn(target.done):  # another process published meanwhile
                if target.hit(sha256):
                    return target.path
            with handle_context(handle.shown):  # what fails from here is about this model
                try:
                    return _fill(handle, target, config, sha256, lock.uid, held)
                except OSError as exc:  # creating or publishing the staging folder failed
                    if isinstance(exc, HubcacheError):
                        raise
                    raise target.unusable(exc) from exc
        finally:
            held.release(target)
            lock.release()


class _Held:
    """What one locked fill holds until it ends: its staging folder, the tier's lock."""

    def __init__(self) -> None:
        self.staging = ""
        self.tier: Any = None

    def release(self, target: Target) -> None:
        if self.tier is not None:
            self.tier.release()
            self.tier.close()
        if self.staging:
            target.cleanup(self.staging)


def _fill(  # noqa: PLR0917 - the private body of acquire, its values in order
    handle: Handle,
    target: Target,
    config: Config,
    sha256: Optional[str],
    uid: str,
    held: _Held,
) -> str:
    """Under the lock: prepare, stage (tier or origin), publish, fill the tier, evict."""
    from ._stage import stage

    _faults.checkpoint("after-lock")
    prepared = target.prepare(uid, sha256)
    if prepared is None:
        return target.path
    held.staging = prepared
    held.tier = tier = _tier(handle, config, target)
    manifest = _stage_via(tier, stage, handle, prepared, config=config, sha256=sha256)
    target.publish(prepared, manifest)
    if tier is not None:
        tier.upload(target.path, manifest)
    if config.max_size is not None and not is_remote(config.root):
        from .manage.evict import evict_beyond  # HUBCACHE_MAX_SIZE: opt-in LRU

        evict_beyond(os.path.dirname(target.path), config.max_size, keep=handle.key)
    if config.kagglehub and manifest.kaggle is not None and not is_remote(config.root):
        from .kaggle.kagglehub_cache import publish_entry

        publish_entry(target.path, manifest.kaggle)
    return target.path


def _tier(handle: Handle, config: Config, target: Target) -> Any:
    """The shared tier of a local resolve (``HUBCACHE_SHARED_CACHE``), or None."""
    if not config.shared_cache or is_remote(config.root):
        return None
    from .store.tiered import Tier

    return Tier(config.shared_cache, handle.shown, handle.key, config)


def _stage_via(
    tier: Any,
    stage: Callable[..., Manifest],
    handle: Handle,
    staging: str,
    *,
    config: Config,
    sha256: Optional[str],
) -> Manifest:
    """The tier's copy when it has one; else (holding its lock, so other nodes wait for
    us) the origin's. A failing tier is warned about once and then left alone."""
    if tier is not None:
        for attempt in range(2):  # before its lock, then again once we hold it
            found = tier.plan(sha256)
            if found is not None:
                plan, manifest = found
                try:
                    stage(handle, handle.key, staging, config, sha256, plan=plan)
                    return cast("Manifest", manifest)
                except (HubcacheError, OSError) as exc:
                    tier.fail("copying from it", exc)
                    break
            if attempt == 0 and not tier.hold():
                break
    return stage(handle, handle.key, staging, config, sha256)
