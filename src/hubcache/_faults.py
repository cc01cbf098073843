"""Hook points where tests inject faults; in a user's process they cost next to nothing.

The crash, fault-sweep and disk-full tests need a real process to die, stop or fail at an
exact step of a resolve (after taking the lock, mid-download, just after the publishing
rename...) or at the k-th filesystem call. The package only offers the points; what happens
there is decided by the test suite, which replaces these attributes in its child processes
(``tests/support/faults/sitecustomize.py``). Nothing here reads the environment, so no
setting can make a user's process kill itself or stop locking.

* :func:`checkpoint` is called at each named step; here it does nothing.
* :data:`fs` *is* the :mod:`os` module. Every call that creates, writes, syncs, renames or
  removes something in a cache goes through ``_faults.fs.X`` (looked up at call time, so a
  replacement installed later is seen), which costs what ``os.X`` does.
* :data:`locking` is True; a test sets it False to model a filesystem whose locks do
  nothing, to prove that correctness never depends on the lock.

Layer: the foundation (docs/architecture.md), the bottom row with ``_errors`` and
``_version``: it imports only :mod:`os`, so every layer may call through it.
"""

from __future__ import annotations

import os
from typing import Any


def checkpoint(point: str) -> None:
    """A named step of a resolve (``after-lock``, ``mid-download``, ``before-rename``...)."""


fs: Any = os
locking = True
