"""Putting :class:`HubcacheModelResolver` first in kagglehub's model registry, and taking it
out.

What we rely on (kagglehub 1.0.2 and 1.0.3): ``kagglehub.registry.model_resolver`` is a
``MultiImplRegistry`` whose ``_impls`` list is asked last-registered first, and
``kagglehub/__init__.py`` registers its HTTP, Kaggle-notebook and Colab resolvers by calling
its ``add_implementation``. So we append ours after them, and give that one registry object
an ``add_implementation`` of its own: a resolver of kagglehub's own (its package re-imported
or reloaded) goes in *before* ours, so ours stays asked first; anyone else's goes after ours,
as always, and so wins. Undoing both gives back exactly what kagglehub had.

When the registry does not look like that (a future release), nothing is changed and one
warning says so: kagglehub keeps working on its own.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Optional

from ._resolver import HubcacheModelResolver

_MARK = "_hubcache_original"  # attribute of our add_implementation: the method it wraps
_WARNED: list[str] = []  # the incompatibility already warned about in this process


def modules() -> tuple[Any]:
    """kagglehub's ``registry`` module (importing kagglehub)."""
    import kagglehub  # noqa: F401  (registers kagglehub's own resolvers first)
    from kagglehub import registry

    return (registry,)


def incompatibility(registry: Any) -> Optional[str]:
    """Why this kagglehub's registry cannot take our resolver, or None."""
    resolver = getattr(registry, "model_resolver", None)
    if not isinstance(getattr(resolver, "_impls", None), list):
        return "kagglehub.registry.model_resolver has no list of implementations (_impls)"
    if not callable(getattr(resolver, "add_implementation", None)):
        return "kagglehub.registry.model_resolver has no add_implementation()"
    try:
        from kagglehub.cache import Cache
        from kagglehub.exceptions import KaggleApiHTTPError  # noqa: F401
    except ImportError as exc:
        return f"kagglehub has no {exc.name or 'cache helper'} as the plug-in knows it"
    for name in ("load_from_cache", "mark_as_complete", "get_path"):
        if not callable(getattr(Cache, name, None)):
            return f"kagglehub.cache.Cache has no {name}()"
    return None


def ours(registry: Any) -> list[Any]:
    impls = getattr(getattr(registry, "model_resolver", None), "_impls", None)
    return [i for i in impls or [] if isinstance(i, HubcacheModelResolver)]


def install(registry: Any) -> bool:
    """Register ours (once) and keep it asked first when kagglehub registers its own again."""
    why = incompatibility(registry)
    if why is not None:
        if _WARNED:
            return False  # one warning per process (the .pth's hand-over, then install())
        _WARNED.append(why)
        warnings.warn(
            f"hubcache: {why}; this kagglehub ({_version()}) is not one hubcache's plug-in "
            "knows, so kagglehub keeps resolving on its own",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    resolver = registry.model_resolver
    if not ours(registry):
        resolver._impls.append(HubcacheModelResolver(registry))
    if getattr(resolver.add_implementation, _MARK, None) is None:
        resolver.add_implementation = _keep_first(resolver, registry)
    return True


def uninstall(registry: Any) -> bool:
    """Take ours out and restore ``add_implementation``; True when something was removed."""
    resolver = getattr(registry, "model_resolver", None)
    if resolver is None:
        return False
    removed = False
    if getattr(resolver.add_implementation, _MARK, None) is not None:
        del resolver.add_implementation  # the class's own method shows through again
        removed = True
    if ours(registry):
        resolver._impls = [i for i in resolver._impls if not isinstance(i, HubcacheModelResolver)]
        removed = True
    return removed


def _keep_first(resolver: Any, registry: Any) -> Any:
    original = resolver.add_implementation  # the bound method of the class

    def add_implementation(impl: Any) -> None:
        original(impl)
        if type(impl).__module__.split(".")[0] != "kagglehub":
            return  # the user's: registered after ours, asked before it
        mine = ours(registry)
        resolver._impls = [i for i in resolver._impls if not isinstance(i, HubcacheModelResolver)]
        resolver._impls.extend(mine[:1])

    setattr(add_implementation, _MARK, original)
    return add_implementation


def _version() -> str:
    return str(getattr(sys.modules.get("kagglehub"), "__version__", "unknown version"))
