"""hubcache's start-up hook for tensorflow_hub, armed by ``hubcache-tfhub.pth``.

``hubcache tfhub enable`` writes that one-line ``.pth`` into site-packages; ``site`` runs it
at every interpreter start, so this module must cost next to nothing: it imports nothing,
defines two small classes and puts a finder first on ``sys.meta_path``. The finder answers
only for ``tensorflow_hub`` (one string comparison for every other import). When that
package has finished importing, the work moves to ``hubcache.tensorflow_hub``, which reads
``HUBCACHE_TFHUB_PLUGIN`` and registers hubcache's resolver. Nothing here may break the
import of tensorflow_hub: any failure of ours becomes one warning.

It lives outside the ``hubcache`` package on purpose: importing ``hubcache._anything``
would import ``hubcache/__init__.py`` first, at every start-up.
"""

import sys

_TARGET = "tensorflow_hub"


class _AfterImport:
    """Wraps tensorflow_hub's loader: runs it unchanged, then hands over to hubcache."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # tensorflow_hub sees its own loader, as if we were never there.
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _disarm()
        _hand_over()

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _Finder:
    """First on ``sys.meta_path``; wraps the real spec of tensorflow_hub, ignores the rest."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if getattr(spec, "loader", None) is not None and hasattr(
                    spec.loader, "exec_module"
                ):
                    spec.loader = _AfterImport(spec.loader)
                return spec
        return None


def _disarm():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def _hand_over():
    try:
        from hubcache.tensorflow_hub import _on_tensorflow_hub_import

        _on_tensorflow_hub_import()
    except Exception as exc:  # never break the user's import of tensorflow_hub
        import warnings

        # Located at "hubcache", not at a line of this file: the warning is about a
        # setting, and Python would otherwise print that source line under it.
        warnings.warn_explicit(
            f"hubcache's tensorflow_hub plug-in is off in this process: {exc}",
            RuntimeWarning,
            "hubcache",
            0,
        )


def arm():
    """Put the finder in place (once), unless tensorflow_hub is already imported."""
    if _TARGET in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


arm()
