"""resolve(): one handle in, one local directory out, downloading at most once.

::

    handle -> config -> resolver (what to fetch) -> entry (key, paths, state)
      complete?  -> return path                  (fast path: no lock, no network, no write)
      lock       -> re-check -> fetch -> extract (streamed, safe)
                 -> manifest + descriptor -> publish (one atomic rename) -> unlock -> path
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Optional, Union

from . import _faults
from ._config import Config, check_load_format, load_config, select_root
from ._errors import (
    CacheDirError,
    ChecksumMismatchError,
    ConfigurationError,
    HubcacheError,
    ModelNotFoundError,
    OfflineError,
)
from ._handles import Handle, parse_handle
from .local.entry import Entry
from .local.root import choose_root, ensure_root, is_remote, unsafe_reason

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
    if sha256 is None and parsed.kind != "directory":
        warm = warm_entry(parsed, cache_dir)
        if warm is not None and warm.is_complete():
            return warm.path
    config = load_config(
        cache_dir=cache_dir,
        offline=offline,
        progress=progress,
        mirrors=mirrors,
        no_origin=no_origin,
        kagglehub=kagglehub_cache,
    )
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
        return _existing_directory(parsed)
    if parsed.kind == "kaggle" or (parsed.kind == "model" and "/models/" in parsed.raw):
        from .kaggle.versions import pin

        parsed, _model = pin(parsed, config)  # a Kaggle model, pinned to one version
    if check_load_format(config) == "UNCOMPRESSED" and parsed.kind == "model":
        from ._uncompressed import uncompressed_location

        location = uncompressed_location(parsed, config)
        if location is not None:  # None: the server sent an archive, resolve it as one
            return location
    if is_remote(config.root):
        from ._download import stage
        from .store.remote import resolve_remote

        return resolve_remote(parsed, config, sha256=sha256, on_wait=on_wait, stage=stage)
    root = choose_root(config)
    entry = Entry(root, parsed.key)
    if sha256 is None and entry.is_complete():
        return entry.path
    return _resolve_slow(parsed, entry, config, sha256=sha256, on_wait=on_wait)


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
    return text.lower()


def warm_entry(handle: Handle, cache_dir: Optional[str]) -> Optional[Entry]:
    """The entry a hit would be served from, found with only the reads a hit needs.

    This is the hot path (a few microseconds): it applies the cache-root rules and the
    default-root safety check but builds no ``Config``. None means "let the full rules
    decide" (remote roots, an unsafe default root, the UNCOMPRESSED protocol).
    """
    environ = os.environ
    if environ.get("TFHUB_MODEL_LOAD_FORMAT", "").strip().upper() == "UNCOMPRESSED":
        return None
    root, source = select_root(cache_dir, environ)
    if "://" in root or (source == "default" and unsafe_reason(root) is not None):
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


def _existing_directory(handle: Handle) -> str:
    """A directory handle is returned as it is, after checking that it exists."""
    if handle.scheme:
        from .fetch.objectstore import first_contact, store_error
        from .fetch.source import filesystem

        fs, path = filesystem(handle.location, handle.shown)
        try:
            first_contact(handle.location, load_config().store_timeout, lambda: fs.isdir(path))
            is_dir = fs.isdir(path)
        except HubcacheError:
            raise
        except Exception as exc:
            raise store_error(handle.location, exc, handle.shown) from exc
        if not is_dir:
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


def _resolve_slow(
    handle: Handle,
    entry: Entry,
    config: Config,
    *,
    sha256: Optional[str],
    on_wait: Optional[Callable[[str], None]],
) -> str:
    """The miss path: lock, re-check, heal, download, publish. Its modules (HTTP client,
    extraction, locking) are imported here, so ``import hubcache`` and hits never pay them."""
    from ._download import download
    from .archive.safetree import disk_error
    from .local.gc import remove_debris
    from .local.lock import DownloadLock
    from .local.publish import adopt

    if sha256 is not None and entry.is_complete():
        _check_pinned(handle, entry, sha256)
        return entry.path
    state = entry.state()
    if state.name == "legacy" and sha256 is None:
        adopt(entry, handle.shown) if not config.offline else None
        return entry.path
    if config.offline and handle.kind != "kaggle":  # Kaggle may link a copy it holds
        raise OfflineError(
            f"{handle.shown} is not in the cache at {entry.root} and offline mode is on "
            "(HUBCACHE_OFFLINE / offline=True); on a machine with network access run "
            f"`hubcache prefetch FILE` (or `hubcache resolve {handle.shown}`), then "
            "`hubcache export OUT.tar ...` there and `hubcache import OUT.tar` here",
            handle=handle.shown,
        )
    ensure_root(entry.root, private=config.root_is_default)
    lock = DownloadLock(
        entry.lock_path,
        entry.staging,
        handle=handle.shown,
        lease=config.lock_lease,
        timeout=config.lock_timeout,
        on_wait=on_wait,
        foreign_lease=config.foreign_lock_lease,
    )
    if not lock.wait_for_turn(entry.is_complete):
        return entry.path  # another process finished it while we waited
    try:
        _faults.checkpoint("after-lock")
        remove_debris(entry.root, entry.key, keep=lock.uid)
        state = entry.state()  # re-check: the previous holder may have published
        if state.name == "complete" and sha256 is None:
            return entry.path
        if state.name == "legacy" and sha256 is None:
            adopt(entry, handle.shown)
            return entry.path
        if state.name in ("damaged", "complete", "legacy"):
            if state.name == "damaged":
                log.warning(
                    "the cached copy of %s at %s is damaged (%s); downloading it again",
                    handle.shown,
                    entry.path,
                    state.reason,
                )
            entry.move_aside(lock.uid)
        try:
            if config.shared_cache:
                from .store.tiered import download_via_tier

                download_via_tier(handle, entry, config, lock.uid, sha256=sha256, download=download)
            else:
                download(handle, entry, config, lock.uid, sha256)
        except CacheDirError as exc:
            if exc.handle is not None:
                raise
            # the extractor does not know the handle; the person reading the error needs it
            raise CacheDirError(
                f"cannot store {handle.raw}: {exc.message}", handle=handle.raw, **exc.facts
            ) from exc
        except HubcacheError:
            raise
        except OSError as exc:  # creating or publishing the staging folder failed
            raise disk_error(exc, entry.root, None, None, handle=handle.raw) from exc
        if config.max_size is not None:  # HUBCACHE_MAX_SIZE: opt-in LRU eviction
            from .manage.evict import evict_beyond

            evict_beyond(entry.root, config.max_size, keep=entry.key)
        return entry.path
    finally:
        lock.release()


def _check_pinned(handle: Handle, entry: Entry, sha256: str) -> None:
    manifest = entry.read_manifest() or {}
    recorded = manifest.get("archive", {}).get("sha256", "")
    if recorded and recorded != sha256.lower():
        raise ChecksumMismatchError(
            f"the cached archive of {handle.shown} has sha256 {recorded}, not the pinned "
            f"{sha256}; remove it with `hubcache rm` if the pin is right",
            handle=handle.shown,
        )
