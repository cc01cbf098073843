"""The fsspec backend of the storage seam: ``gs://`` (gcsfs), ``s3://`` (s3fs), ``memory://``
and any other fsspec URL. Imported only when such a root is used, so ``import hubcache``
never pays for fsspec; a missing extra raises an install hint (``fetch.source.filesystem``).

Credentials come the usual way of each library (gcsfs and s3fs defaults, ``AWS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``STORAGE_EMULATOR_HOST``, ``AWS_ENDPOINT_URL``,
``FSSPEC_<PROTOCOL>_<OPTION>``): nothing of ours to configure. A store that cannot be used
(unreachable, no credentials) gives one of our errors after at most
``HUBCACHE_STORE_TIMEOUT`` seconds, never the library's traceback (``fetch.objectstore``).

Deadlines (docs/configuration.md, "Deadlines"): the client tries each request once, each
bounded by ``HUBCACHE_CONNECT_TIMEOUT`` and ``HUBCACHE_READ_TIMEOUT`` of silence; each call
on a small object (a read, a listing, a write of a marker) also has a deadline of its own,
set outside the client's wrappers, of those two timeouts added. A transient failure
(silence, a broken connection, throttling, 5xx) is retried here and nowhere else, on ONE
:class:`RetryBudget` per storage object (``HUBCACHE_RETRIES`` retries with backoff); the
shared tier gets none, since its fallback, the origin, is better than a second wait.
Creating an object only if absent is never retried: a create that timed out may have
succeeded, and the retry would then take our own object for another process's.

Create-if-absent: ``pipe_file(mode="create")`` is a real precondition on GCS
(``ifGenerationMatch=0``), S3 (``If-None-Match: *``), memory and local files. Note that
``open(path, "xb")`` is NOT exclusive on gcsfs (it silently overwrites), so we never use it.
Other filesystems get a documented best-effort fallback: write only when the object is
absent, then read it back; whoever finds their own bytes believes it holds the object.
Two writers can both believe it within one round trip. That is acceptable because the lock
only saves duplicate downloads: a manifest is written last and describes the files that
are there, and a reader checks every file against it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import shutil
from collections.abc import Callable
from typing import IO, Any, Optional, TypeVar

from .._config import Config, load_config
from ..fetch.objectstore import close_client, first_contact, store_error, transient
from ..fetch.retry import RetryBudget
from ..fetch.source import filesystem
from .storage import CHUNK, Storage

_PART = 8 * 1024 * 1024  # upload part / read-ahead block: bounds memory per transfer
_EXCLUSIVE = {"gs", "gcs", "s3", "s3a", "memory", "file", "local"}


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Bound the first contact with the store, retry transient failures on the storage's
    budget, and turn the library's exceptions into ours (missing objects and lost create
    races keep their meaning)."""
    retried = method.__name__ != "create"  # module docstring: a create may have succeeded

    @functools.wraps(method)
    def call(self: FsspecStorage, *args: Any, **kwargs: Any) -> Any:
        first_contact(self.url, self.timeout, self._probe)
        tries = 0
        while True:
            tries += 1
            try:
                return method(self, *args, **kwargs)
            except (FileNotFoundError, FileExistsError):
                raise
            except Exception as exc:
                error = store_error(self.url, exc)
                if not (retried and transient(exc)):
                    raise error from exc
                cause = f"{type(exc).__name__}: {exc}"[:200]
                if not self.budget.pause(f"{self.url} ({method.__name__})", cause):
                    if tries > 1:
                        error.message += f" [{tries} tries]"
                        error.args = (error.message,)
                    raise error from exc

    return call  # type: ignore[return-value]


def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return {proto} if isinstance(proto, str) else set(proto)


class FsspecStorage(Storage):
    """A cache root on an fsspec filesystem. Listings are never cached: other processes
    change the store behind our back, and a stale listing could hide a lock or a manifest."""

    def __init__(
        self, url: str, handle: Optional[str] = None, timeout: Optional[float] = None
    ) -> None:
        config = load_config()
        self.url = url.rstrip("/")
        self.timeout = Config._field_defaults["store_timeout"] if timeout is None else timeout
        self.fs, path = filesystem(self.url, handle, config=config, use_listings_cache=False)
        self.base = path.rstrip("/")
        self.exclusive_create = bool(_protocols(self.fs) & _EXCLUSIVE)
        tier = self.url == config.shared_cache.rstrip("/")  # the origin is its fallback
        self.budget = RetryBudget(0 if tier else config.retries, config.backoff)
        # One call on a small object: one try of one request (module docstring).
        self.deadline = config.connect_timeout + config.read_timeout

    def close(self) -> None:
        """Close the client's connections (``fetch.objectstore.close_client``)."""
        close_client(self.fs)

    def _small(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``self.fs.<name>(*args)`` on small objects, given up after ``self.deadline``
        seconds. The deadline is set around the client's coroutine, outside any retry
        wrapper of the client (one inside would be retried); filesystems that are not
        asynchronous are called as they are."""
        coroutine = getattr(self.fs, f"_{name}", None)
        if not getattr(self.fs, "async_impl", False) or coroutine is None:
            return getattr(self.fs, name)(*args, **kwargs)
        from fsspec.asyn import sync

        return sync(self.fs.loop, coroutine, *args, timeout=self.deadline, **kwargs)

    def _probe(self) -> bool:
        """The first request: one read of an object that need not exist."""
        return bool(self._small("exists", self._p(".hubcache-probe")))

    def _p(self, name: str) -> str:
        return f"{self.base}/{name}"

    def join(self, name: str) -> str:
        return f"{self.url}/{name}"

    @_guarded
    def read(self, name: str) -> Optional[bytes]:
        try:
            return bytes(self._small("cat_file", self._p(name)))
        except FileNotFoundError:
            return None

    @_guarded
    def write(self, name: str, data: bytes) -> None:
        self._small("pipe_file", self._p(name), data)

    @_guarded
    def create(self, name: str, data: bytes) -> bool:
        path = self._p(name)
        if self.exclusive_create:
            try:
                self._small("pipe_file", path, data, mode="create")
            except FileExistsError:
                return False
            return True
        # Best effort (module docstring): absent -> write -> read back our own bytes.
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return self.read(name) == data

    @_guarded
    def put_file(self, local: str, name: str) -> None:
        with open(local, "rb") as src, self.fs.open(self._p(name), "wb", block_size=_PART) as dst:
            shutil.copyfileobj(src, dst, CHUNK)

    @_guarded
    def open_read(self, name: str) -> IO[bytes]:
        return self.fs.open(self._p(name), "rb", block_size=_PART)  # type: ignore[no-any-return]

    @_guarded
    def listing(self, prefix: str) -> dict[str, int]:
        root = self._p(prefix).rstrip("/") + "/"
        try:
            found = self._small("find", root, detail=True)
        except FileNotFoundError:
            return {}
        out: dict[str, int] = {}
        for found_path, info in found.items():
            path = found_path if root.startswith("/") else found_path.lstrip("/")
            if path.startswith(root) and info.get("type", "file") == "file":
                out[path[len(root) :]] = int(info.get("size") or 0)
        return out

    @_guarded
    def modified(self, name: str) -> Optional[float]:
        try:
            when = self._small("modified", self._p(name))
        except FileNotFoundError:
            return None
        if isinstance(when, (int, float)):
            return float(when)
        if when.tzinfo is None:  # fsspec documents UTC
            when = when.replace(tzinfo=datetime.timezone.utc)
        return float(when.timestamp())

    @_guarded
    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._small("rm_file", self._p(name))

    @_guarded
    def remove_tree(self, prefix: str) -> None:
        root = self._p(prefix).rstrip("/") + "/"
        with contextlib.suppress(FileNotFoundError):
            paths = list(self.fs.find(root))
            if paths:
                self.fs.rm(paths)
