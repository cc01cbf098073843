"""hubcache as kagglehub's model resolver: unmodified ``kagglehub.model_download`` code, and
KerasHub's ``from_preset("kaggle://...")`` on top of it, get hubcache's cache (one download
per version across processes, verified bytes, resumable downloads, mirrors, offline mode).

Two ways in, both reversible:

* ``hubcache kagglehub enable`` (:func:`enable`) writes a one-line ``.pth`` into this
  environment's site-packages; every later ``import kagglehub`` in it registers hubcache's
  resolver. Nothing is imported at interpreter start-up, and processes that never import
  kagglehub are not affected. ``HUBCACHE_KAGGLEHUB_PLUGIN=0`` turns it off without
  uninstalling; ``hubcache kagglehub disable`` (:func:`disable`) removes it.
* :func:`install` in code, after or instead of the ``.pth`` (idempotent); :func:`uninstall`
  gives kagglehub back its own resolvers exactly.

Installing hubcache alone changes nothing in kagglehub: only these do.

Supported: kagglehub 1.0.3 and 1.0.2 (both tested end to end; the same registry, cache
helper and model-download code). On a kagglehub whose registry or cache helper differs the
plug-in does nothing but warn once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Optional

from .._pth import PthFile, read_status
from .._values import flag

__all__ = [
    "PTH",
    "PluginStatus",
    "disable",
    "enable",
    "install",
    "is_installed",
    "plugin_enabled",
    "status",
    "uninstall",
]

TESTED_VERSIONS = ("1.0.2", "1.0.3")
SWITCH = "HUBCACHE_KAGGLEHUB_PLUGIN"
HOOK_MODULE = "_hubcache_hook"
PTH = PthFile(
    "hubcache-kagglehub.pth",
    f"import sys; exec(\"try:\\n import {HOOK_MODULE}\\n {HOOK_MODULE}.arm('kagglehub')\\n"
    'except ImportError:\\n pass")'
    "  # hubcache kagglehub enable: kagglehub uses hubcache (undo: hubcache kagglehub disable)\n",
    HOOK_MODULE,
)


def plugin_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """``HUBCACHE_KAGGLEHUB_PLUGIN``: unset or yes turns the plug-in on when its ``.pth`` is
    installed (or :func:`install` is called), no (``0``) turns it off without uninstalling."""
    value = flag(os.environ if environ is None else environ, SWITCH)
    return True if value is None else value


def install() -> bool:
    """Make hubcache kagglehub's first model resolver in this process, importing kagglehub if
    needed. Idempotent. False when ``HUBCACHE_KAGGLEHUB_PLUGIN=0`` or when this kagglehub's
    registry is not one the plug-in knows (one warning then)."""
    if not plugin_enabled():
        return False
    # kagglehub first: with the .pth armed its import hands over to this very function,
    # which must find our modules whole (our resolver imports kagglehub's exceptions)
    import kagglehub  # noqa: F401

    from ._registry import install as register
    from ._registry import modules

    return register(*modules())


def uninstall() -> bool:
    """Give kagglehub back exactly its own resolvers; True when ours was there."""
    if "kagglehub.registry" not in sys.modules:
        return False
    from ._registry import uninstall as unregister

    return unregister(sys.modules["kagglehub.registry"])


def is_installed() -> bool:
    """True when kagglehub is imported here and hubcache's resolver is registered."""
    if "kagglehub.registry" not in sys.modules:
        return False
    from ._registry import ours

    return bool(ours(sys.modules["kagglehub.registry"]))


def enable(site_dir: Optional[str] = None) -> str:
    """Write the ``.pth`` into ``site_dir`` (default: this interpreter's site-packages);
    returns its path. Needs the hook module shipped with hubcache to be importable."""
    return PTH.enable(site_dir)


def disable(site_dir: Optional[str] = None) -> Optional[str]:
    """Remove the ``.pth``; returns the path removed, or None when it was not there."""
    return PTH.remove(site_dir)


@dataclasses.dataclass(frozen=True)
class PluginStatus:
    """What ``hubcache kagglehub status`` reports."""

    active: bool  # a new process importing kagglehub here would use hubcache
    pth_path: str
    pth_present: bool
    switch: str  # "on", "off (HUBCACHE_KAGGLEHUB_PLUGIN)" or the error of a bad value
    kagglehub_version: Optional[str]  # as installed, read without importing it
    registry: str  # "compatible", "differs: ..." or "not installed"
    in_this_process: bool
    site_dir_read: bool = True  # this python reads .pth files from the folder at start-up


# what the plug-in relies on, by file of the kagglehub package (read, never imported)
_NEEDS = {
    "registry.py": ("class MultiImplRegistry", "self._impls", "def add_implementation"),
    "__init__.py": ("registry.model_resolver.add_implementation",),
    "cache.py": ("class Cache", "def load_from_cache", "def mark_as_complete", "def get_path"),
    "handle.py": ("class ModelHandle", "def with_version"),
    "exceptions.py": ("class KaggleApiHTTPError",),
}


def status(site_dir: Optional[str] = None) -> PluginStatus:
    reading = read_status(PTH, site_dir, (SWITCH, plugin_enabled), "kagglehub", _NEEDS)
    return PluginStatus(
        *reading[:-1], in_this_process=is_installed(), site_dir_read=reading.site_dir_read
    )


def _on_kagglehub_import() -> None:
    """Called by the ``.pth`` hook once ``import kagglehub`` has finished."""
    install()
