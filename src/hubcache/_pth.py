"""The one-line ``.pth`` files that ``hubcache tfhub enable`` and ``hubcache kagglehub
enable`` write.

``site`` executes a ``.pth`` line that starts with ``import`` at every interpreter start.
Ours import a tiny top-level hook module (``_hubcache_hook``, directly or through
``_hubcache_tfhub``), and do nothing at all when that module is gone (hubcache uninstalled
before ``disable``): a stale line must never print an error at every start-up. They go into
the running interpreter's site-packages (``purelib``): the environment ``hubcache`` itself
runs in. One file per plug-in, so enabling or disabling one never rewrites the other's.

Layer: values (docs/architecture.md), beside ``_units`` and ``_values``, under the plug-ins
that use it; it stands on ``_errors`` alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Optional

from ._errors import ConfigurationError


def site_dir() -> str:
    return sysconfig.get_paths()["purelib"]


class PthFile:
    """One plug-in's ``.pth``: its file name, its line and the hook module the line imports
    (the mark that says hubcache wrote it)."""

    def __init__(self, name: str, line: str, hook_module: str) -> None:
        self.name = name
        self.line = line
        self.hook_module = hook_module

    def path(self, site: Optional[str] = None) -> str:
        if site is not None and not site.strip():
            # "" would quietly mean this python's own site-packages: not what was asked for.
            raise ValueError("an empty site folder names no folder; give a path, or leave it out")
        return os.path.join(site if site is not None else site_dir(), self.name)

    def is_ours(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                return self.hook_module in f.read(4096)
        except OSError:
            return False

    def write(self, site: Optional[str] = None) -> str:
        """Write it atomically (a half-written line would run at every start-up). A file of
        that name that hubcache did not write is left alone (FileExistsError), as
        :meth:`remove` leaves it."""
        path = self.path(site)
        if os.path.lexists(path) and not self.is_ours(path):
            raise FileExistsError(f"{path} was not written by hubcache; leaving it alone")
        tmp = f"{path}.{os.getpid()}.part"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(self.line)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def remove(self, site: Optional[str] = None) -> Optional[str]:
        """Remove it; None when there was none. A file of that name that is not ours is left
        alone (we never delete what we did not write)."""
        path = self.path(site)
        if not os.path.exists(path):
            return None
        if not self.is_ours(path):
            raise FileExistsError(f"{path} was not written by hubcache; leaving it alone")
        os.unlink(path)
        return path

    def enable(self, site: Optional[str] = None) -> str:
        """Write it, once the hook module it imports is known to be importable here."""
        if importlib.util.find_spec(self.hook_module) is None:
            raise ConfigurationError(
                f"hubcache's start-up hook ({self.hook_module}.py) is not importable in this "
                "environment; reinstall hubcache (pip install --force-reinstall hubcache)"
            )
        return self.write(site)


class Reading(NamedTuple):
    """What a plug-in's ``status()`` reports: all but the last in the order of its
    ``PluginStatus`` fields, which puts ``in_this_process`` before ``site_dir_read``."""

    active: bool  # a new process importing the library here would use hubcache
    pth_path: str
    pth_present: bool
    switch: str  # "on", "off (<VARIABLE>)" or the error of a bad value
    version: Optional[str]  # the library's, as installed, read without importing it
    registry: str  # "compatible", "differs: ..." or "not installed"
    site_dir_read: bool  # this python reads .pth files from the folder at start-up


def read_at_start(site: Optional[str]) -> bool:
    """Whether this python reads ``.pth`` files from ``site`` when it starts (its own
    site-packages, user site-packages included); None means this python's own folder."""
    if site is None:
        return True
    import site as site_module

    known = {*site_module.getsitepackages(), site_dir(), sysconfig.get_paths()["platlib"]}
    with contextlib.suppress(AttributeError):  # some embedded pythons have no user site
        if site_module.ENABLE_USER_SITE:
            known.add(site_module.getusersitepackages())
    return os.path.realpath(site) in {os.path.realpath(k) for k in known}


def read_status(
    pth: PthFile,
    site: Optional[str],
    switch: tuple[str, Callable[[], bool]],
    package: str,
    needs: Mapping[str, Sequence[str]],
) -> Reading:
    """The state of one plug-in here: its ``.pth``, its switch (variable name and reader),
    and whether ``package`` is installed with the source the plug-in relies on."""
    path = pth.path(site)
    present = os.path.exists(path) and pth.is_ours(path)
    name, enabled = switch
    try:
        switch_on = enabled()
        said = "on" if switch_on else f"off ({name})"
    except ConfigurationError as exc:
        switch_on, said = False, str(exc)
    version, registry = installed(package, needs)
    hook = importlib.util.find_spec(pth.hook_module) is not None
    read = read_at_start(site)
    active = present and hook and switch_on and read and registry == "compatible"
    return Reading(active, path, present, said, version, registry, read)


def installed(package: str, needs: Mapping[str, Sequence[str]]) -> tuple[Optional[str], str]:
    """``package``'s version and whether its files hold the words the plug-in relies on
    (``needs``: file name -> words), read without importing it: importing tensorflow_hub
    imports TensorFlow (seconds), kagglehub its SDK and requests."""
    import importlib.metadata

    try:
        version: Optional[str] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return version, "not installed"
    folder = next(iter(spec.submodule_search_locations))
    for name, words in needs.items():
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            return version, f"differs: cannot read {package}/{name} ({exc.strerror})"
        missing = [w for w in words if w not in text]
        if missing:
            return version, f"differs: {package}/{name} has no {missing[0]!r}"
    return version, "compatible"
