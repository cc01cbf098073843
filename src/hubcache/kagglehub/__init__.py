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
import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Optional

from .._errors import ConfigurationError
from .._pth import PthFile
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
    if importlib.util.find_spec(HOOK_MODULE) is None:
        raise ConfigurationError(
            f"hubcache's start-up hook ({HOOK_MODULE}.py) is not importable in this "
            "environment; reinstall hubcache (pip install --force-reinstall hubcache)"
        )
    return PTH.write(site_dir)


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


def status(site_dir: Optional[str] = None) -> PluginStatus:
    path = PTH.path(site_dir)
    present = os.path.exists(path) and PTH.is_ours(path)
    try:
        switch_on = plugin_enabled()
        switch = "on" if switch_on else f"off ({SWITCH})"
    except ConfigurationError as exc:
        switch_on, switch = False, str(exc)
    version, registry = _installed_kagglehub()
    hook = importlib.util.find_spec(HOOK_MODULE) is not None
    return PluginStatus(
        active=present and hook and switch_on and registry == "compatible",
        pth_path=path,
        pth_present=present,
        switch=switch,
        kagglehub_version=version,
        registry=registry,
        in_this_process=is_installed(),
    )


# what the plug-in relies on, by file of the kagglehub package (read, never imported)
_NEEDS = {
    "registry.py": ("class MultiImplRegistry", "self._impls", "def add_implementation"),
    "__init__.py": ("registry.model_resolver.add_implementation",),
    "cache.py": ("class Cache", "def load_from_cache", "def mark_as_complete", "def get_path"),
    "handle.py": ("class ModelHandle", "def with_version"),
    "exceptions.py": ("class KaggleApiHTTPError",),
}


def _installed_kagglehub() -> tuple[Optional[str], str]:
    """Its version and whether its registry is the one we know, without importing it
    (importing kagglehub costs a few hundred milliseconds: requests, kagglesdk)."""
    import importlib.metadata

    try:
        version: Optional[str] = importlib.metadata.version("kagglehub")
    except importlib.metadata.PackageNotFoundError:
        version = None
    spec = importlib.util.find_spec("kagglehub")
    if spec is None or not spec.submodule_search_locations:
        return version, "not installed"
    folder = next(iter(spec.submodule_search_locations))
    for name, words in _NEEDS.items():
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            return version, f"differs: cannot read kagglehub/{name} ({exc.strerror})"
        missing = [w for w in words if w not in text]
        if missing:
            return version, f"differs: kagglehub/{name} has no {missing[0]!r}"
    return version, "compatible"


def _on_kagglehub_import() -> None:
    """Called by the ``.pth`` hook once ``import kagglehub`` has finished."""
    install()
