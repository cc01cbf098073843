"""Putting :class:`HubcacheResolver` first in tensorflow_hub's registry, and taking it out.

What we rely on (the same in every release from 0.2 to 0.16.1, read at each tag):
``tensorflow_hub.registry.resolver`` is a ``MultiImplRegister`` whose ``_impls`` list is
tried last-registered first; ``tensorflow_hub.config._run()`` registers the defaults; test
programs call ``registry._clear()`` (0.10+) and then ``config._run()`` again. So we append
ours after the defaults, and wrap ``config._run`` so that it appends ours again after
re-registering them. Undoing both gives back exactly what tensorflow_hub had.

When the registry does not look like that (a future release), nothing is changed and one
warning says so: tensorflow_hub keeps working on its own.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, Optional

from ._resolver import HubcacheResolver

_MARK = "_hubcache_original"  # attribute of our wrapper of config._run: the function it wraps


def modules() -> tuple[Any, Any]:
    """tensorflow_hub's ``registry`` and ``config`` modules (importing tensorflow_hub)."""
    from tensorflow_hub import config, registry

    return registry, config


def incompatibility(registry: Any, config: Any) -> Optional[str]:
    """Why this tensorflow_hub's registry cannot take our resolver, or None."""
    resolver = getattr(registry, "resolver", None)
    if not isinstance(getattr(resolver, "_impls", None), list):
        return "tensorflow_hub.registry.resolver has no list of implementations (_impls)"
    if not callable(getattr(resolver, "add_implementation", None)):
        return "tensorflow_hub.registry.resolver has no add_implementation()"
    if not callable(getattr(config, "_run", None)):
        return "tensorflow_hub.config has no _run()"
    return None


def ours(registry: Any) -> list[Any]:
    impls = getattr(getattr(registry, "resolver", None), "_impls", None)
    return [i for i in impls or [] if isinstance(i, HubcacheResolver)]


def install(registry: Any, config: Any) -> bool:
    """Register ours (once) and keep it registered across ``_clear(); _run()``."""
    why = incompatibility(registry, config)
    if why is not None:
        warnings.warn(
            f"hubcache: {why}; this tensorflow_hub ({_version()}) is not one hubcache's "
            "plug-in knows, so tensorflow_hub keeps resolving on its own",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if not ours(registry):
        registry.resolver.add_implementation(HubcacheResolver(registry))
    if getattr(config._run, _MARK, None) is None:
        config._run = _rerun_then_add(config._run, registry)
    return True


def uninstall(registry: Any, config: Any) -> bool:
    """Take ours out and restore ``config._run``; True when something was removed."""
    removed = False
    original = getattr(getattr(config, "_run", None), _MARK, None)
    if original is not None:
        config._run = original
        removed = True
    if ours(registry):
        impls = registry.resolver._impls
        registry.resolver._impls = [i for i in impls if not isinstance(i, HubcacheResolver)]
        removed = True
    return removed


def _rerun_then_add(run: Callable[..., Any], registry: Any) -> Callable[..., Any]:
    @functools.wraps(run)
    def _run(*args: Any, **kwargs: Any) -> Any:
        result = run(*args, **kwargs)
        # Last again, after the defaults just added (also when _run ran without _clear).
        mine = ours(registry) or [HubcacheResolver(registry)]
        registry.resolver._impls = [
            i for i in registry.resolver._impls if not isinstance(i, HubcacheResolver)
        ]
        registry.resolver.add_implementation(mine[0])
        return result

    setattr(_run, _MARK, run)
    return _run


def _version() -> str:
    import sys

    return str(getattr(sys.modules.get("tensorflow_hub"), "__version__", "unknown version"))
