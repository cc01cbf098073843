"""What a miss will fetch: the three shapes the stager knows, as typed records.

A *provider* (plain handles in ``_stage``, Kaggle in ``kaggle.provider``) looks at a handle
and answers with one of these; the stager (``_stage``) carries it out with its one download
loop, one retry budget and the safe writer. A provider never downloads anything itself, so
a new kind of handle adds a provider, never a loop.

* :class:`ArchivePlan`: one archive, opened afresh by ``open`` for each attempt;
* :class:`FileSetPlan`: a set of listed files, each opened by ``open(name, budget)`` (a
  Kaggle version's files; a shared tier's copy of an entry);
* :class:`LinkPlan`: an equivalent copy already on this machine, linked in.

Named tuples rather than frozen dataclasses: every miss imports this module, and making a
frozen dataclass costs about 0.8 ms (its generated methods are compiled at import), a
named tuple under 0.1 ms; both are immutable and typed the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Optional, Union

from .retry import RetryBudget
from .source import Source


class ArchivePlan(NamedTuple):
    open: Callable[[RetryBudget], Source]  # a new, unopened source for one attempt
    label: str  # what the progress bar and messages call it
    record: Optional[Mapping[str, Any]] = None  # a Kaggle model's identity, for the manifest
    source: str = ""  # the manifest's "source" when not the opened source's own URL


class FileSet(NamedTuple):
    """One listed file: its name, its size when known, its sha256 when known."""

    name: str
    size: Optional[int] = None
    sha256: str = ""


class FileSetPlan(NamedTuple):
    files: tuple[FileSet, ...]
    open: Callable[[str, RetryBudget], Source]  # a new, unopened source for one file
    label: str
    source: str
    record: Optional[Mapping[str, Any]] = None
    dirs: tuple[str, ...] = ()  # folders to make even when no file lands in them


class LinkPlan(NamedTuple):
    path: str  # a complete folder holding the same model
    origin: str  # "hubcache entry <key>", "kagglehub cache"... for the manifest and logs
    digests: Optional[Mapping[str, Any]] = None  # its manifest's files, to keep known sha256
    record: Optional[Mapping[str, Any]] = None


Plan = Union[ArchivePlan, FileSetPlan, LinkPlan]
