"""The exceptions hubcache raises, one hierarchy so callers can catch all of it.

::

    HubcacheError                      root; every error names the handle it concerns
    ├── InvalidHandleError    (ValueError)      the handle cannot be understood        exit 2
    ├── ConfigurationError    (ValueError)      a setting or variable has a bad value   exit 2
    ├── ModelNotFoundError    (LookupError)     404/410, a missing path                 exit 3
    ├── DownloadError         (OSError)         network, TLS or server error            exit 4
    │   └── HTTPStatusError                     an HTTP status we cannot go on from
    ├── ArchiveError          (ValueError)      the bytes are not a usable archive      exit 5
    │   ├── NotAnArchiveError                   HTML, JSON or an empty body
    │   ├── CorruptArchiveError                 CRC, length, truncation, bad headers
    │   ├── UnsafeArchiveError                  links, devices, ``..``, limits exceeded
    │   └── ChecksumMismatchError               the pinned sha256 does not match
    ├── CacheDirError         (OSError)         the cache root is unusable or full       exit 6
    ├── OfflineError          (LookupError)     offline and not cached                  exit 7
    ├── LockTimeoutError      (TimeoutError)    another process held the lock too long  exit 8
    ├── EntryInUseError                         rm/prune/import: a live process holds it exit 8
    └── MissingDependencyError (ImportError)    an optional extra is not installed      exit 2

The built-in mixins let callers that already catch ``OSError`` or ``ValueError`` keep
working. Attributes carry the facts (``handle``, ``status``, ``url``); the message is for
people. Every class pickles (errors cross process boundaries in ``prefetch`` and tests).

Layer: foundation (docs/architecture.md): the standard library only, so every layer can
raise these.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, ClassVar, Optional

__all__ = [
    "ArchiveError",
    "CacheDirError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "CorruptArchiveError",
    "DownloadError",
    "EntryInUseError",
    "HTTPStatusError",
    "HubcacheError",
    "InvalidHandleError",
    "LockTimeoutError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotAnArchiveError",
    "OfflineError",
    "UnsafeArchiveError",
]


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s]+)@")


def hide_credentials(text: str) -> str:
    """``http://user:secret@host/x`` -> ``http://user:***@host/x`` (a lone ``token@`` becomes
    ``***@``), in a URL or in any text holding URLs: what every message and record shows."""
    if "@" not in text:
        return text

    def hide(match: re.Match[str]) -> str:
        user, colon, _secret = match.group(2).partition(":")
        return f"{match.group(1)}{user + ':***' if colon else '***'}@"

    return _USERINFO.sub(hide, text)


class HubcacheError(Exception):
    """Root of every error raised by hubcache.

    Typed facts callers read instead of parsing the message: ``handle`` (always, once the
    error leaves a resolve), ``hint`` (what to do, kept apart from what went wrong, so the
    CLI, a plug-in and tests can each use it), and per class ``status``, ``url``,
    ``path``, ``attempts``, ``errno``... (``None`` when a raise site did not know them)."""

    exit_code: ClassVar[int] = 1
    # what the CLI says a step failed at, before the message, when the handle was attached
    # by the caller rather than written into the message by the raise site
    verb: ClassVar[str] = "cannot resolve"
    hint: str = ""
    status: Optional[int] = None
    url: Optional[str] = None
    path: Optional[str] = None
    attempts: Optional[int] = None

    def __init__(self, message: str, *, handle: Optional[str] = None, **facts: Any) -> None:
        # Exception.__init__ with one argument keeps str() and pickling simple; the
        # keyword facts go in attributes and are restored by __reduce__. Credentials in a
        # URL never reach a message, whichever code raised it (the safety net of
        # ``Handle.shown``).
        message = hide_credentials(message)
        handle = hide_credentials(handle) if handle is not None else None
        super().__init__(message)
        self.message = message
        self.handle = handle
        self.facts = facts
        self._attached = False
        for name, value in facts.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        text = self.message
        if self._attached and self.handle and self.handle not in text:
            text = f"{self.verb} {self.handle}: {text}"
        if self.hint and self.hint not in text:
            text = f"{text}; {self.hint}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.handle, self.facts))


@contextlib.contextmanager
def handle_context(handle: str, *, shown: bool = True) -> Iterator[None]:
    """Attach ``handle`` to our errors raised inside that name none (the layers below know
    a URL or a file, not the handle a person typed): once, at the orchestrator, as httpx
    attaches its request, never by rewriting a raised exception's message. ``shown``: the
    one line names it too ("cannot resolve H: ..."); False for errors about the cache
    itself (a read-only root, a lock), whose message says all."""
    try:
        yield
    except HubcacheError as exc:
        if exc.handle is None:
            exc.handle = hide_credentials(handle)
            exc._attached = shown
        raise


def _rebuild(
    cls: type[HubcacheError], message: str, handle: Optional[str], facts: dict[str, Any]
) -> HubcacheError:
    return cls(message, handle=handle, **facts)


class InvalidHandleError(HubcacheError, ValueError):
    """The handle is not a URL, path or archive name that hubcache can resolve."""

    exit_code = 2


class ConfigurationError(HubcacheError, ValueError):
    """An argument or environment variable has a value hubcache cannot use."""

    exit_code = 2


class ModelNotFoundError(HubcacheError, LookupError):
    """The server said 404/410, or a local or remote path does not exist."""

    exit_code = 3


class DownloadError(HubcacheError, OSError):
    """The network or the server failed, after retries where retrying made sense."""

    exit_code = 4


class HTTPStatusError(DownloadError):
    """The server answered with a status we cannot go on from (``status`` attribute)."""


class ArchiveError(HubcacheError, ValueError):
    """The downloaded bytes are not an archive we can extract safely and completely."""

    exit_code = 5


class NotAnArchiveError(ArchiveError):
    """An HTML page, JSON document or empty body came where an archive was expected."""


class CorruptArchiveError(ArchiveError):
    """A checksum, length or structure check failed: the archive is damaged or truncated."""


class UnsafeArchiveError(ArchiveError):
    """A member would escape the target, is not a plain file or directory, or a limit hit."""


class ChecksumMismatchError(ArchiveError):
    """The archive's sha256 differs from the one the caller pinned."""


class CacheDirError(HubcacheError, OSError):
    """The cache root cannot be used: permissions, unsafe ownership, a full disk."""

    exit_code = 6
    verb = "cannot store"


class OfflineError(HubcacheError, LookupError):
    """Offline mode is on and the handle is not in the cache."""

    exit_code = 7


class LockTimeoutError(HubcacheError, TimeoutError):
    """Another process held the download lock longer than the configured timeout."""

    exit_code = 8


class EntryInUseError(HubcacheError):
    """A cache entry cannot be removed or replaced now: a live process holds its lock."""

    exit_code = 8


class DamagedEntryError(HubcacheError):
    """A cache entry cannot be used as it is: damaged, or without the manifest that would
    prove it whole (export refuses it; ``verify --fix`` cannot re-download it)."""

    exit_code = 5


class MissingDependencyError(HubcacheError, ImportError):
    """A feature needs an optional extra that is not installed; the message names it.
    Exit 2, as ``serve`` without ``[server]``: the command cannot run as this environment
    is set up, the fix is the user's (an install), and trying again will not help."""

    exit_code = 2


# -- raised in tensorflow_hub's place (hubcache.tensorflow_hub) --------------------------------
# tensorflow_hub's own resolvers fail with OSError (urllib's HTTPError and URLError, "... does
# not appear to be a valid module"), so code written against it catches OSError. As its
# plug-in we raise these instead of the classes above that are not OSErrors: the same class
# (so ``except CorruptArchiveError`` still works), message and facts, plus OSError.


class PluginModelNotFoundError(ModelNotFoundError, OSError):
    """:class:`ModelNotFoundError` raised through tensorflow_hub (urllib's 404 was an OSError)."""


class PluginArchiveError(ArchiveError, OSError):
    """:class:`ArchiveError` raised through tensorflow_hub ("not a valid module": OSError)."""


class PluginNotAnArchiveError(NotAnArchiveError, OSError):
    """:class:`NotAnArchiveError` raised through tensorflow_hub."""


class PluginCorruptArchiveError(CorruptArchiveError, OSError):
    """:class:`CorruptArchiveError` raised through tensorflow_hub."""


class PluginUnsafeArchiveError(UnsafeArchiveError, OSError):
    """:class:`UnsafeArchiveError` raised through tensorflow_hub."""


class PluginChecksumMismatchError(ChecksumMismatchError, OSError):
    """:class:`ChecksumMismatchError` raised through tensorflow_hub."""


class PluginOfflineError(OfflineError, OSError):
    """:class:`OfflineError` raised through tensorflow_hub (urllib's URLError was an OSError)."""


_OS_TWINS: dict[type[HubcacheError], type[HubcacheError]] = {
    ModelNotFoundError: PluginModelNotFoundError,
    ArchiveError: PluginArchiveError,
    NotAnArchiveError: PluginNotAnArchiveError,
    CorruptArchiveError: PluginCorruptArchiveError,
    UnsafeArchiveError: PluginUnsafeArchiveError,
    ChecksumMismatchError: PluginChecksumMismatchError,
    OfflineError: PluginOfflineError,
}


def as_os_error(exc: HubcacheError) -> HubcacheError:
    """``exc`` as an OSError where tensorflow_hub raised one (same message and facts)."""
    twin = _OS_TWINS.get(type(exc))
    if twin is None:
        return exc
    return twin(str(exc), handle=exc.handle, **exc.facts)
