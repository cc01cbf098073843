"""The one-line ``hubcache-tfhub.pth`` that ``hubcache tfhub enable`` writes.

``site`` executes a ``.pth`` line that starts with ``import`` at every interpreter start.
Ours imports the tiny top-level module ``_hubcache_tfhub`` (see its docstring), and does
nothing at all when that module is gone (hubcache uninstalled before ``disable``): a stale
line must never print an error at every start-up. It goes into the running interpreter's
site-packages (``purelib``): the environment ``hubcache`` itself runs in.
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
from typing import Optional

PTH_NAME = "hubcache-tfhub.pth"
HOOK_MODULE = "_hubcache_tfhub"
PTH_LINE = (
    f'import sys; exec("try:\\n import {HOOK_MODULE}\\nexcept ImportError:\\n pass")'
    "  # hubcache tfhub enable: tensorflow_hub uses hubcache (undo: hubcache tfhub disable)\n"
)


def site_dir() -> str:
    return sysconfig.get_paths()["purelib"]


def pth_path(site: Optional[str] = None) -> str:
    if site is not None and not site.strip():
        # "" would quietly mean this python's own site-packages: not what was asked for.
        raise ValueError("an empty site folder names no folder; give a path, or leave it out")
    return os.path.join(site if site is not None else site_dir(), PTH_NAME)


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


def is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return HOOK_MODULE in f.read(4096)
    except OSError:
        return False


def write(site: Optional[str] = None) -> str:
    """Write the ``.pth`` atomically (a half-written line would run at every start-up).
    A file of that name that hubcache did not write is left alone (FileExistsError), as
    :func:`remove` leaves it."""
    path = pth_path(site)
    if os.path.lexists(path) and not is_ours(path):
        raise FileExistsError(f"{path} was not written by hubcache; leaving it alone")
    tmp = f"{path}.{os.getpid()}.part"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(PTH_LINE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove(site: Optional[str] = None) -> Optional[str]:
    """Remove our ``.pth``; None when there was none. A file of that name that is not ours
    is left alone (we never delete what we did not write)."""
    path = pth_path(site)
    if not os.path.exists(path):
        return None
    if not is_ours(path):
        raise FileExistsError(f"{path} was not written by hubcache; leaving it alone")
    os.unlink(path)
    return path
