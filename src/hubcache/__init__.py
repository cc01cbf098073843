"""hubcache: TF Hub / Kaggle model handles -> local directories, downloaded at most once.

The public surface is this module's ``__all__``; everything in ``hubcache._*`` and the
subpackages is private. Importing is cheap on purpose: the HTTP client, fsspec, tqdm and
TensorFlow are imported only when a call needs them, and the cache-management names below
(``Cache`` and the types its methods return) on first use.

Resolving and loading:

* ``resolve(handle, ...)``: the local folder of a model, downloaded at most once;
* ``load(handle, ...)``: ``resolve`` then ``tf.saved_model.load`` (needs ``hubcache[tf]``);
* ``cache_dir()``: the cache root the rules select now; ``cache_key(handle)``: the
  folder name of a handle in that root (tensorflow_hub's sha1 of the handle);
* ``define_absl_flags()``: define ``--tfhub_cache_dir`` for absl programs.

Plug-ins, so that unmodified code of other libraries resolves through hubcache (each with
``install()``, ``uninstall()``, ``enable()``, ``disable()`` and ``status()``):
``tensorflow_hub`` (``hub.load``, ``hub.KerasLayer``) and ``kagglehub``
(``kagglehub.model_download`` and KerasHub's Kaggle presets).

Seeing, checking and cleaning a cache: ``Cache(cache_dir=None)``, whose methods return

* ``EntryInfo`` (``entries``, ``info``), ``VerifyResult`` (``verify``);
* ``Plan`` of ``PlanItem`` (``plan_remove``, ``plan_prune``) and ``Outcome`` (``execute``);
* ``DebrisPlan`` of ``Debris`` (``plan_gc``, ``execute_gc``);
* ``Imported`` (``import_archive``).

Errors, all under ``HubcacheError`` (each has an ``exit_code``, the CLI's):
``InvalidHandleError``, ``ConfigurationError``, ``ModelNotFoundError``, ``DownloadError``
and its ``HTTPStatusError``, ``ArchiveError`` and its ``NotAnArchiveError``,
``CorruptArchiveError``, ``UnsafeArchiveError``, ``ChecksumMismatchError``,
``CacheDirError``, ``OfflineError``, ``LockTimeoutError``, ``EntryInUseError`` (rm, prune
or import met an entry a live process holds), ``DamagedEntryError`` (export or
``verify --fix`` met an entry it cannot vouch for) and ``MissingDependencyError``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from ._config import load_config as _load_config
from ._errors import (
    ArchiveError,
    CacheDirError,
    ChecksumMismatchError,
    ConfigurationError,
    CorruptArchiveError,
    DamagedEntryError,
    DownloadError,
    EntryInUseError,
    HTTPStatusError,
    HubcacheError,
    InvalidHandleError,
    LockTimeoutError,
    MissingDependencyError,
    ModelNotFoundError,
    NotAnArchiveError,
    OfflineError,
    UnsafeArchiveError,
)
from ._handles import cache_key
from ._load import load
from ._resolve import resolve
from ._version import __version__

if TYPE_CHECKING:
    from ._cache import Cache
    from .local.gc import Debris, DebrisPlan
    from .manage.prune import Plan, PlanItem
    from .manage.records import EntryInfo, Outcome, VerifyResult
    from .manage.transfer import Imported

# name -> (module, attribute): imported on first use, so ``import hubcache`` stays cheap for
# programs that only resolve (``Cache`` pulls in the management backends).
_LAZY = {
    "Cache": ("._cache", "Cache"),
    "EntryInfo": (".manage.records", "EntryInfo"),
    "VerifyResult": (".manage.records", "VerifyResult"),
    "Outcome": (".manage.records", "Outcome"),
    "Plan": (".manage.prune", "Plan"),
    "PlanItem": (".manage.prune", "PlanItem"),
    "DebrisPlan": (".local.gc", "DebrisPlan"),
    "Debris": (".local.gc", "Debris"),
    "Imported": (".manage.transfer", "Imported"),
}

__all__ = [
    "ArchiveError",
    "Cache",
    "CacheDirError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "CorruptArchiveError",
    "DamagedEntryError",
    "Debris",
    "DebrisPlan",
    "DownloadError",
    "EntryInUseError",
    "EntryInfo",
    "HTTPStatusError",
    "HubcacheError",
    "Imported",
    "InvalidHandleError",
    "LockTimeoutError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotAnArchiveError",
    "OfflineError",
    "Outcome",
    "Plan",
    "PlanItem",
    "UnsafeArchiveError",
    "VerifyResult",
    "__version__",
    "cache_dir",
    "cache_key",
    "define_absl_flags",
    "kagglehub",
    "load",
    "resolve",
    "tensorflow_hub",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """The names of ``_LAZY``, imported on first use; also ``hubcache.tensorflow_hub`` and
    ``hubcache.kagglehub``, the plug-ins' public modules."""
    import importlib

    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attribute)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in ("tensorflow_hub", "kagglehub"):
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'hubcache' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Lists the lazy names too, so ``help(hubcache)`` and completion show ``Cache``."""
    return sorted(set(globals()) | set(_LAZY))


def cache_dir(cache_dir: Optional[str] = None) -> str:
    """The cache root the rules select right now: ``cache_dir``, else ``TFHUB_CACHE_DIR``,
    else absl's ``--tfhub_cache_dir``, else ``<tmp>/tfhub_modules`` (or a private
    ``tfhub_modules-<uid>`` when that one is not safe to share): docs/configuration.md."""
    from .local.root import choose_root

    return choose_root(_load_config(cache_dir=cache_dir))


def define_absl_flags() -> None:
    """Define ``--tfhub_cache_dir`` for absl programs that do not import tensorflow_hub.

    Never called implicitly: tensorflow_hub defines the same flag at import, and absl
    refuses a second definition. Safe to call when the flag already exists.
    """
    from absl import flags

    if "tfhub_cache_dir" not in flags.FLAGS:
        flags.DEFINE_string(
            "tfhub_cache_dir", None, "Cache directory for TF Hub models (hubcache/tensorflow_hub)."
        )
