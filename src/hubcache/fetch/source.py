"""Fetch: turn a location into a stream of byte chunks, from a local file or fsspec.

Every source has the same shape: :meth:`Source.open` makes the request (raising our errors
for a missing archive), then :meth:`Source.chunks` yields the body. HTTP(S) lives in
``fetch.http``; when a stream cannot be resumed safely, :class:`RestartDownloadError`
tells the pipeline to start over.
"""

from __future__ import annotations

import logging
import os
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .. import _platform
from .._config import Config
from .._errors import (
    ConfigurationError,
    DownloadError,
    HubcacheError,
    InvalidHandleError,
    MissingDependencyError,
    ModelNotFoundError,
)
from .._handles import FSSPEC_SCHEMES

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class RestartDownloadError(Exception):
    """The stream broke and cannot be resumed in place: start the download over."""


class CancelledError(Exception):
    """The consumer gave up (Ctrl-C, an error downstream): stop reading, never resume."""


def redact(url: str) -> str:
    """A URL safe to show: no user info, query values replaced (signed URLs carry keys)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = "&".join(
        f"{k}=..." if k != "tf-hub-format" else f"{k}={v}"
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Source:
    """Where the archive bytes come from. Subclasses fill the metadata in :meth:`open`."""

    display: str = ""
    total: Optional[int] = None  # bytes, when the server or filesystem says
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    # Every URL the opening request went through (``open``, ``follow_on``), redirects
    # included, the last one answering; never rewritten by a later request (a resume, a
    # ranged part). The stager reads it to decide what the chain means (a Kaggle model it
    # already holds); a source never acts on it itself.
    hops: tuple[str, ...] = ()
    # Set by the caller before ``open``: a redirect target for which this returns True is
    # not requested; ``open`` returns with ``stopped`` naming it, and the caller decides
    # whether to :meth:`follow_on` (a pure test of a URL, never a call into other layers).
    stop_at: Optional[Callable[[str], bool]] = None
    stopped: str = ""

    def open(self) -> None:
        raise NotImplementedError

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def follow_on(self) -> None:
        """After ``open`` stopped at a redirect (``stopped``): follow it and finish opening."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Called from another thread when the consumer gives up: unblock any read now,
        so nobody waits out a read timeout or a retry backoff after Ctrl-C."""

    def local_file(self) -> Optional[str]:
        """A seekable local path holding the whole archive, if there is one (zip needs it)."""
        return None


class FileSource(Source):
    """A source read from an open file object (``self._file``, set by ``open``)."""

    handle: str
    _file: Any = None

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                data = self._file.read(CHUNK)
            except Exception as exc:
                error = self.read_error(exc)
                if error is None:
                    raise
                raise error from exc
            if not data:
                return
            yield data

    def read_error(self, exc: Exception) -> Optional[Exception]:
        """Ours for what a read raised, or None to let it through unchanged."""
        if isinstance(exc, HubcacheError) or not isinstance(exc, OSError):
            return None
        return DownloadError(
            f"reading {self.display} failed: {exc or type(exc).__name__}", handle=self.handle
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class LocalFileSource(FileSource):
    def __init__(self, path: str, handle: str) -> None:
        self.path = path
        self.handle = handle
        self.display = path
        self._file: Any = None

    def open(self) -> None:
        try:
            # O_NONBLOCK: opening a FIFO named like an archive waited for a writer forever
            fd = os.open(self.path, _platform.READ | _platform.O_NONBLOCK)
        except FileNotFoundError:
            raise ModelNotFoundError(
                f"archive {self.path!r} does not exist", handle=self.handle
            ) from None
        except IsADirectoryError:
            raise self._not_a_file("a folder") from None
        except OSError as exc:
            raise DownloadError(f"cannot read {self.path!r}: {exc}", handle=self.handle) from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._not_a_file("a folder" if stat.S_ISDIR(st.st_mode) else "a pipe or a device")
        _platform.make_blocking(fd)
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.total = st.st_size

    def _not_a_file(self, what: str) -> InvalidHandleError:
        """A directory (named x.tar.gz) was "cannot read: Is a directory", exit 4 as if the
        network had failed; a FIFO or a device cannot be an archive either."""
        return InvalidHandleError(
            f"{self.path!r} is {what}, not an archive file; give the path of a .tar.gz, .tar "
            "or .zip file, or of a folder holding a model (without an archive suffix)",
            handle=self.handle,
        )

    def local_file(self) -> Optional[str]:
        return self.path


class FsspecSource(FileSource):
    """An archive on any fsspec filesystem (``gs://``, ``s3://``, ``memory://``...).

    Its client tries each request once (``filesystem``); a transient failure (silence past
    ``HUBCACHE_READ_TIMEOUT``, a broken connection, a 5xx) is a :class:`RestartDownloadError`,
    so the download loop retries it on the download's one retry budget."""

    def __init__(self, url: str, handle: str, timeout: Optional[float] = None) -> None:
        self.url = url
        self.handle = handle
        self.display = redact(url)
        self.timeout = Config._field_defaults["store_timeout"] if timeout is None else timeout
        self._file: Any = None
        self._fs: Any = None  # its own client, closed with the source

    def open(self) -> None:
        from .objectstore import first_contact

        if self._fs is not None:  # opened again: the earlier client first
            self.close()
        fs, path = filesystem(self.url, self.handle)
        self._fs = fs
        try:
            size = first_contact(self.url, self.timeout, lambda: fs.size(path))
            self._file = fs.open(path, "rb", block_size=8 * CHUNK)
            self.total = int(fs.size(path) if size is None else size)
        except FileNotFoundError:
            raise ModelNotFoundError(f"{self.display} does not exist", handle=self.handle) from None
        except HubcacheError as exc:
            exc.handle = exc.handle or self.handle
            raise
        except Exception as exc:
            raise self._ours(exc) from exc

    def read_error(self, exc: Exception) -> Optional[Exception]:
        return None if isinstance(exc, HubcacheError) else self._ours(exc)

    def close(self) -> None:
        super().close()
        fs, self._fs = self._fs, None
        if fs is not None:
            from .objectstore import close_client

            close_client(fs)

    def _ours(self, exc: Exception) -> Exception:
        """What the store's client raised (a timeout, a broken response) as one of our
        errors, or as a restart when another try may succeed."""
        from .objectstore import store_error, transient

        error = store_error(self.url, exc, self.handle)
        return RestartDownloadError(error.message) if transient(exc) else error


def filesystem(
    url: str, handle: Optional[str] = None, *, config: Optional[Config] = None, **options: Any
) -> tuple[Any, str]:
    """The fsspec filesystem and path of ``url``, with an install hint when missing.
    ``options`` go to the filesystem (e.g. ``use_listings_cache=False``). A ``gs://`` or
    ``s3://`` client gets hubcache's deadlines and tries each request once
    (``fetch.objectstore.client_options``); ``config`` gives the timeouts (read now if None)."""
    from .objectstore import client_options, one_try

    scheme = url.split("://", 1)[0]
    if scheme.lower() not in FSSPEC_SCHEMES:
        # A cache root or shared tier such as ftp:// or bogus:// would reach fsspec, which
        # connects in the constructor (no deadline of ours) or raises "Protocol not known":
        # both were tracebacks. Handles refuse the same schemes in _handles.
        raise ConfigurationError(
            f"{url!r} uses the unsupported storage scheme {scheme!r}; use gs://, s3:// or a "
            "local folder",
            handle=handle,
        )
    # The extra that brings everything this scheme needs, named at once (hubcache[gcs]
    # includes fsspec): one round of advice, not "install [remote]", then "install [gcs]".
    extra = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3"}.get(scheme)
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(
            f"{scheme}:// needs an extra: pip install 'hubcache[{extra or 'remote'}]'",
            handle=handle,
        ) from None
    if extra is not None:
        from .._config import load_config

        options = {**client_options(url, config or load_config()), **options}
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        hint = f"pip install 'hubcache[{extra}]'" if extra else str(exc)
        raise MissingDependencyError(f"{scheme}:// needs an extra: {hint}", handle=handle) from None
    one_try(fs)
    return fs, path


# -- HTTP --------------------------------------------------------------------------------
