"""``load()``: the one place that touches TensorFlow, imported only when called.

Layer: loading (docs/architecture.md), under ``_cache`` and above ``_resolve``, the only
layer it calls (lazily, so ``import hubcache`` pays for neither).
"""

from __future__ import annotations

from typing import Any

from ._errors import MissingDependencyError


def load(handle: str, **resolve_options: Any) -> Any:
    """``tf.saved_model.load`` on the resolved directory of ``handle``."""
    from ._resolve import resolve

    path = resolve(handle, **resolve_options)
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError(
            f"hubcache.load({handle!r}) needs TensorFlow: pip install 'hubcache[tf]' (or use "
            f"hubcache.resolve() to get the directory: {path})",
            handle=handle,
        ) from None
    return tf.saved_model.load(path)
