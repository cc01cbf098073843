"""hubcache: TF Hub / Kaggle model handles -> local directories, downloaded at most once.

The public surface is this module's ``__all__``; everything in ``hubcache._*`` is private.
Importing is cheap on purpose: the HTTP client, fsspec, tqdm and TensorFlow are imported
only when a call needs them.
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

__all__ = [
    "ArchiveError",
    "Cache",
    "CacheDirError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "CorruptArchiveError",
    "DownloadError",
    "EntryInUseError",
    "HTTPStatusError",
    "HubcacheError",
    "InvalidHandleError",
    "LockTimeoutError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotAnArchiveError",
    "OfflineError",
    "UnsafeArchiveError",
    "__version__",
    "cache_dir",
    "cache_key",
    "define_absl_flags",
    "load",
    "resolve",
    "tensorflow_hub",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """``hubcache.Cache`` and ``hubcache.tensorflow_hub`` are imported on first use, so
    ``import hubcache`` stays cheap for programs that only resolve."""
    if name == "Cache":
        from ._cache import Cache

        return Cache
    if name == "tensorflow_hub":  # the plug-in's public module, imported on first use
        import importlib

        return importlib.import_module(".tensorflow_hub", __name__)
    raise AttributeError(f"module 'hubcache' has no attribute {name!r}")


def cache_dir(cache_dir: Optional[str] = None) -> str:
    """The cache root the rules of docs/configuration.md select now (default-root check too)."""
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
