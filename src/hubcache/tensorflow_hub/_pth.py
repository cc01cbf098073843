"""The one-line ``hubcache-tfhub.pth`` that ``hubcache tfhub enable`` writes.

Ours imports the tiny top-level module ``_hubcache_tfhub`` (see its docstring), which arms
the start-up finder for tensorflow_hub. Writing, recognising and removing the file is
``hubcache._pth``'s, shared with the kagglehub plug-in.
"""

from __future__ import annotations

from typing import Optional

from .._pth import PthFile, site_dir

__all__ = ["HOOK_MODULE", "PTH_LINE", "PTH_NAME", "is_ours", "pth_path", "remove", "site_dir"]

PTH_NAME = "hubcache-tfhub.pth"
HOOK_MODULE = "_hubcache_tfhub"
PTH_LINE = (
    f'import sys; exec("try:\\n import {HOOK_MODULE}\\nexcept ImportError:\\n pass")'
    "  # hubcache tfhub enable: tensorflow_hub uses hubcache (undo: hubcache tfhub disable)\n"
)
FILE = PthFile(PTH_NAME, PTH_LINE, HOOK_MODULE)


def pth_path(site: Optional[str] = None) -> str:
    return FILE.path(site)


def is_ours(path: str) -> bool:
    return FILE.is_ours(path)


def write(site: Optional[str] = None) -> str:
    return FILE.write(site)


def remove(site: Optional[str] = None) -> Optional[str]:
    return FILE.remove(site)
