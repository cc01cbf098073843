"""hubcache as a tensorflow_hub resolver: ``is_supported(handle)`` and ``__call__(handle)``.

tensorflow_hub asks each registered resolver, last registered first, whether it supports a
handle; the first that does resolves it, and its result or exception is final. Ours claims
the handles its HTTP resolver would download (``http://`` and ``https://`` under the
compressed or AUTO load format) and reads every setting the way tensorflow_hub does, so
that the returned path is the one tensorflow_hub would return:

* cache root: ``TFHUB_CACHE_DIR``, else its ``--tfhub_cache_dir`` absl flag, else
  ``<tmp>/tfhub_modules`` (hubcache's reading is the same); a ``file://`` root gives a
  ``file://`` path back, as tensorflow_hub's ``os.path.join`` does;
* load format: tensorflow_hub's own ``model_load_format()`` (variable or flag, exact
  value): ``UNCOMPRESSED`` is left to its own resolver, anything else is compressed;
* local paths, ``gs://`` archives and anything else stay with tensorflow_hub's resolvers;
* a lock written by tensorflow_hub is judged by its rule (``LOCK_FILE_TIMEOUT_SEC`` of
  inactivity), ours by ours, and a dead holder on this host is broken at once either way;
* errors keep hubcache's class and message, but are OSErrors where tensorflow_hub raised
  OSErrors (``_errors.as_os_error``), so ``except OSError`` around ``hub.load`` still works.
"""

from __future__ import annotations

import collections
import os
import sys
import warnings
from typing import Any

from .._config import load_config
from .._errors import HubcacheError, MissingDependencyError, as_os_error
from .._resolve import parse, resolve_with, warm_entry

# tensorflow_hub's lock rule when its module does not say (every release from 0.2 to 0.16.1
# sets compressed_module_resolver.LOCK_FILE_TIMEOUT_SEC = 600).
TFHUB_LOCK_TIMEOUT = 600.0
_COMPRESSED = {"TFHUB_MODEL_LOAD_FORMAT": "COMPRESSED"}
_WARNED: set[str] = set()


def tfhub_load_format() -> str:
    """The load format as tensorflow_hub reads it (its env-or-flag helper since 0.10;
    older releases have no UNCOMPRESSED mode and ignore the variable)."""
    module = sys.modules.get("tensorflow_hub.resolver")
    read = getattr(module, "model_load_format", None)
    if read is None:
        return "COMPRESSED"
    try:
        return str(read() or "AUTO")
    except Exception:  # an unparsed absl flag in an odd program: behave as the default
        return "AUTO"


def tfhub_lock_timeout() -> float:
    module = sys.modules.get("tensorflow_hub.compressed_module_resolver")
    value = getattr(module, "LOCK_FILE_TIMEOUT_SEC", TFHUB_LOCK_TIMEOUT)
    return float(value) if isinstance(value, (int, float)) else TFHUB_LOCK_TIMEOUT


class HubcacheResolver:
    """Registered last in ``tensorflow_hub.registry.resolver``, so it is asked first."""

    def __init__(self, registry: Any = None) -> None:
        self._registry = registry  # to hand a handle on to tensorflow_hub's own resolvers

    def is_supported(self, handle: Any) -> bool:
        if not isinstance(handle, str) or not handle.startswith(("http://", "https://")):
            return False
        return tfhub_load_format() != "UNCOMPRESSED"

    def __call__(self, handle: str) -> str:
        try:
            return resolve_as_tfhub(handle)
        except MissingDependencyError as exc:
            # e.g. a gs:// cache root without hubcache[gcs]: tensorflow_hub reaches it
            # through TensorFlow's own file systems, so let it.
            fallback = self._next(handle)
            if fallback is None:
                raise
            _warn_once(f"{exc}; tensorflow_hub's own resolver handles {handle} instead")
            result: str = fallback(handle)
            return result
        except HubcacheError as exc:
            mapped = as_os_error(exc)
            if mapped is exc:
                raise
            raise mapped.with_traceback(exc.__traceback__) from None

    def _next(self, handle: str) -> Any:
        impls = getattr(getattr(self._registry, "resolver", None), "_impls", None) or []
        mine = [i for i, impl in enumerate(impls) if impl is self]
        for impl in reversed(impls[: mine[0]] if mine else []):
            if impl.is_supported(handle):
                return impl
        return None


def resolve_as_tfhub(handle: str) -> str:
    """hubcache's resolve with tensorflow_hub's reading of the settings."""
    parsed = parse(handle)
    warm = warm_entry(parsed, None)
    if warm is not None and warm.is_complete():
        return _as_tfhub_path(warm.path, warm.root)
    # tensorflow_hub downloads the archive whatever TFHUB_MODEL_LOAD_FORMAT says unless it
    # is exactly UNCOMPRESSED (is_supported already said no to that).
    environ = collections.ChainMap(_COMPRESSED, os.environ)
    config = load_config(environ=environ)._replace(foreign_lock_lease=tfhub_lock_timeout())
    path = resolve_with(parsed, config)
    return _as_tfhub_path(path, config.root)


def _as_tfhub_path(path: str, root: str) -> str:
    if root.startswith("file://") and not path.startswith("file://"):
        return "file://" + path
    return path


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(f"hubcache: {message}", RuntimeWarning, stacklevel=3)
