"""hubcache as tensorflow_hub's resolver: unmodified ``hub.load`` / ``hub.KerasLayer`` /
``hub.resolve`` code gets hubcache's cache (verified, self-healing, resumable downloads).

Two ways in, both reversible:

* ``hubcache tfhub enable`` (:func:`enable`) writes a one-line ``.pth`` into this
  environment's site-packages; every later ``import tensorflow_hub`` in it registers
  hubcache's resolver. Nothing is imported at interpreter start-up, and processes that
  never import tensorflow_hub are not affected. ``HUBCACHE_TFHUB_PLUGIN=0`` turns it off
  without uninstalling; ``hubcache tfhub disable`` (:func:`disable`) removes it.
* :func:`install` in code, after or instead of the ``.pth`` (idempotent); :func:`uninstall`
  gives tensorflow_hub back its own resolvers exactly.

Installing hubcache alone changes nothing in tensorflow_hub: only these do.

Supported: tensorflow_hub 0.16.1 (tested end to end); 0.10 to 0.16.0 have the same registry,
configuration and lock rule (read at each release tag). On a tensorflow_hub whose registry
differs the plug-in does nothing but warn once.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Optional

from .._config import tfhub_plugin_enabled
from .._pth import read_status
from . import _pth

__all__ = ["PluginStatus", "disable", "enable", "install", "is_installed", "status", "uninstall"]

TESTED_VERSIONS = ("0.16.1",)


def install() -> bool:
    """Make hubcache tensorflow_hub's first resolver in this process, importing
    tensorflow_hub if needed. Idempotent. False when ``HUBCACHE_TFHUB_PLUGIN=0`` or when
    this tensorflow_hub's registry is not one the plug-in knows (one warning then)."""
    if not tfhub_plugin_enabled():
        return False
    from ._registry import install as register
    from ._registry import modules

    return register(*modules())


def uninstall() -> bool:
    """Give tensorflow_hub back exactly its own resolvers; True when ours was there."""
    if "tensorflow_hub" not in sys.modules:
        return False
    from ._registry import modules
    from ._registry import uninstall as unregister

    return unregister(*modules())


def is_installed() -> bool:
    """True when tensorflow_hub is imported here and hubcache's resolver is registered."""
    if "tensorflow_hub.registry" not in sys.modules:
        return False
    from ._registry import ours

    return bool(ours(sys.modules["tensorflow_hub.registry"]))


def enable(site_dir: Optional[str] = None) -> str:
    """Write the ``.pth`` into ``site_dir`` (default: this interpreter's site-packages);
    returns its path. Needs the hook module shipped with hubcache to be importable."""
    return _pth.FILE.enable(site_dir)


def disable(site_dir: Optional[str] = None) -> Optional[str]:
    """Remove the ``.pth``; returns the path removed, or None when it was not there."""
    return _pth.remove(site_dir)


@dataclasses.dataclass(frozen=True)
class PluginStatus:
    """What ``hubcache tfhub status`` reports."""

    active: bool  # a new process importing tensorflow_hub here would use hubcache
    pth_path: str
    pth_present: bool
    switch: str  # "on", "off (HUBCACHE_TFHUB_PLUGIN)" or the error of a bad value
    tensorflow_hub_version: Optional[str]  # as installed, read without importing it
    registry: str  # "compatible", "differs: ..." or "not installed"
    in_this_process: bool
    site_dir_read: bool = True  # this python reads .pth files from the folder at start-up


# what the plug-in relies on, by file of the tensorflow_hub package (read, never imported)
_NEEDS = {
    "registry.py": ("class MultiImplRegister", "self._impls", "def add_implementation"),
    "config.py": ("def _run",),
}


def status(site_dir: Optional[str] = None) -> PluginStatus:
    switch = ("HUBCACHE_TFHUB_PLUGIN", tfhub_plugin_enabled)
    reading = read_status(_pth.FILE, site_dir, switch, "tensorflow_hub", _NEEDS)
    return PluginStatus(
        *reading[:-1], in_this_process=is_installed(), site_dir_read=reading.site_dir_read
    )


def _on_tensorflow_hub_import() -> None:
    """Called by the ``.pth`` hook once ``import tensorflow_hub`` has finished."""
    install()
