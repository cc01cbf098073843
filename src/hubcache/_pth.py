"""The one-line ``.pth`` files that ``hubcache tfhub enable`` and ``hubcache kagglehub
enable`` write.

``site`` executes a ``.pth`` line that starts with ``import`` at every interpreter start.
Ours import a tiny top-level hook module (``_hubcache_hook``, directly or through
``_hubcache_tfhub``), and do nothing at all when that module is gone (hubcache uninstalled
before ``disable``): a stale line must never print an error at every start-up. They go into
the running interpreter's site-packages (``purelib``): the environment ``hubcache`` itself
runs in. One file per plug-in, so enabling or disabling one never rewrites the other's.
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
from typing import Optional


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
        return os.path.join(site or site_dir(), self.name)

    def is_ours(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                return self.hook_module in f.read(4096)
        except OSError:
            return False

    def write(self, site: Optional[str] = None) -> str:
        """Write it atomically (a half-written line would run at every start-up)."""
        path = self.path(site)
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
