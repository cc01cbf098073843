"""hubcache's start-up hook for its plug-ins, armed by the ``.pth`` files that
``hubcache tfhub enable`` and ``hubcache kagglehub enable`` write.

``site`` runs those one-line ``.pth`` files at every interpreter start, so this module must
cost next to nothing: it imports nothing, defines two small classes and puts one finder
first on ``sys.meta_path``. The finder answers only for the packages it was armed for (one
set lookup for every other import); both plug-ins share it. When an armed package has
finished importing, the work moves to its plug-in module (``hubcache.tensorflow_hub`` or
``hubcache.kagglehub``), which reads its kill switch and registers hubcache's resolver.
Nothing here may break the user's import: any failure of ours becomes one warning.

It lives outside the ``hubcache`` package on purpose: importing ``hubcache._anything``
would import ``hubcache/__init__.py`` first, at every start-up.
"""

import sys

# the package whose import is watched -> (plug-in module, function called once it is in)
_HAND_OVER = {
    "tensorflow_hub": ("hubcache.tensorflow_hub", "_on_tensorflow_hub_import"),
    "kagglehub": ("hubcache.kagglehub", "_on_kagglehub_import"),
}


class _AfterImport:
    """Wraps a watched package's loader: runs it unchanged, then hands over to hubcache."""

    def __init__(self, loader, name):
        self.loader = loader
        self.name = name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # the package sees its own loader, as if we were never there.
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _done(self.name)
        _hand_over(self.name)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _Finder:
    """First on ``sys.meta_path``; wraps the real spec of each armed package, ignores the
    rest."""

    def __init__(self):
        self.targets = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.targets:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if getattr(spec, "loader", None) is not None and hasattr(
                    spec.loader, "exec_module"
                ):
                    spec.loader = _AfterImport(spec.loader, fullname)
                return spec
        return None


def _finder():
    return next((f for f in sys.meta_path if isinstance(f, _Finder)), None)


def _done(name):
    """One shot per package; the finder leaves ``sys.meta_path`` with its last target."""
    finder = _finder()
    if finder is not None:
        finder.targets.discard(name)
        if not finder.targets:
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def _hand_over(name):
    module_name, function = _HAND_OVER[name]
    try:
        import importlib

        getattr(importlib.import_module(module_name), function)()
    except Exception as exc:  # never break the user's import
        import warnings

        # Located at "hubcache", not at a line of this file: the warning is about a
        # setting, and Python would otherwise print that source line under it.
        warnings.warn_explicit(
            f"hubcache's {name} plug-in is off in this process: {exc}",
            RuntimeWarning,
            "hubcache",
            0,
        )


def arm(name):
    """Watch ``name`` (a key of ``_HAND_OVER``), unless it is already imported."""
    if name not in _HAND_OVER or name in sys.modules:
        return
    finder = _finder()
    if finder is None:
        finder = _Finder()
        sys.meta_path.insert(0, finder)
    finder.targets.add(name)
