"""Object stores that cannot be used: a bounded first contact and one clear error.

Left to themselves, the client libraries behind ``gs://`` and ``s3://`` (gcsfs, s3fs with
botocore, google-auth) retry an unreachable endpoint for half a minute or more, look for
credentials on a metadata server, and fail with a traceback of their own exception types
(``NoCredentialsError``, ``ClientConnectorError``...). hubcache instead:

* makes its first request to a store (per process and URL) in a helper thread and waits at
  most ``HUBCACHE_STORE_TIMEOUT`` seconds for it (:func:`first_contact`); a store that has
  not answered by then is reported as unreachable. That request only reads, so giving up
  on it can leave nothing behind on the store;
* turns whatever the library raised into ONE of our errors (:func:`store_error`):
  missing or refused credentials are :class:`CacheDirError` (exit 6: the store cannot be
  used as it is configured), anything on the way there is :class:`DownloadError` (exit 4),
  each naming the store and the variables that fix it;
* gives every request a deadline and takes the retrying away from the libraries
  (:func:`client_options`, :func:`one_try`): each request waits at most
  ``HUBCACHE_CONNECT_TIMEOUT`` to connect and ``HUBCACHE_READ_TIMEOUT`` for each read, and
  is tried once. Left alone, s3fs retries around botocore, which retries too (5 x 5 x 5 =
  125 tries of one silent read, about half an hour), and gcsfs tries 6 times with half a
  minute of backoff. The one layer that retries is ours, on hubcache's one retry budget
  (``store.fsspec`` for roots and the shared tier, the download loop for archive handles),
  so the worst case of a silent store is the number docs/configuration.md states.

Exception types are recognised by name, so nothing here imports botocore or google-auth.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .._config import Config
from .._errors import CacheDirError, DownloadError, HubcacheError, hide_credentials

log = logging.getLogger(__name__)

T = TypeVar("T")

_REACHED: set[str] = set()  # stores that answered once in this process
_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "DefaultCredentialsError",
    "RefreshError",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
}
_FIXES = {
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS (or run `gcloud auth application-default login`)"
    ", or STORAGE_EMULATOR_HOST for an emulator",
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
    "AWS_ENDPOINT_URL for a store that is not AWS",
}
_ENDPOINTS = {"gs": "STORAGE_EMULATOR_HOST", "s3": "AWS_ENDPOINT_URL"}


_TRANSIENT = {  # class names (or S3 error codes) of failures worth another try
    "TimeoutError",
    "FSTimeoutError",
    "ServerTimeoutError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ConnectionError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ClientConnectorError",
    "ClientOSError",
    "ServerDisconnectedError",
    "ClientPayloadError",
    "ResponseStreamingError",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


_HNS = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


def _import_gcsfs_without_probe() -> None:
    """Import gcsfs with its bucket-layout probe off. gcsfs reads the variable once, when
    it is imported, so it is set for that import only and then removed: the user's process
    environment is left as it was (a value the user set is never touched)."""
    os.environ[_HNS] = "false"
    try:
        import gcsfs  # noqa: F401 - imported for its import-time reading of the variable
    except ImportError:  # fsspec will name the missing extra
        pass
    finally:
        os.environ.pop(_HNS, None)


def client_options(url: str, config: Config) -> dict[str, Any]:
    """fsspec options that bound every request of a ``gs://`` or ``s3://`` client and try
    it once (module docstring); {} for other filesystems. The client is made for us alone
    (``skip_instance_cache``), as :func:`one_try` changes it after it is made."""
    store = _family(url)
    if store == "s3":
        return {
            "skip_instance_cache": True,
            "config_kwargs": {
                "connect_timeout": config.connect_timeout,
                "read_timeout": config.read_timeout,
                "retries": {"total_max_attempts": 1, "mode": "standard"},
            },
        }
    if store == "gs":
        # Since gcsfs 2026.3 its first request may probe the bucket's layout for up to 60 s
        # unless this is off when gcsfs is imported; a user who set it keeps their choice.
        if "gcsfs" not in sys.modules and _HNS not in os.environ:
            _import_gcsfs_without_probe()
        try:
            import aiohttp
        except ImportError:  # gcsfs itself will say what is missing
            return {"skip_instance_cache": True}
        # Per request, no total: a long transfer that keeps moving is never cut.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
        )
        return {"skip_instance_cache": True, "requests_timeout": timeout}
    return {}


def one_try(fs: Any) -> None:
    """Make the client ``fs`` (built with :func:`client_options`) try each request once.
    s3fs: its retry count is a class attribute, read per call, so set on this instance it
    holds for both of its wrappers (requests and ranged reads). gcsfs: its 6 tries are a
    decorator on ``_request``, fixed when the class is made; this instance calls the
    undecorated function instead. A gcsfs without that shape keeps its own tries (still
    bounded by the per-request timeouts), rather than failing."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"s3", "s3a"}:
        fs.retries = 1
    elif protocols & {"gs", "gcs"}:
        raw = getattr(getattr(type(fs), "_request", None), "__wrapped__", None)
        if callable(raw):
            fs._request = types.MethodType(raw, fs)


def close_client(fs: Any) -> None:
    """Close the connections of a client made by ``source.filesystem`` when its use ends.

    Each client is our own (``skip_instance_cache``), so nobody else will close it: left to
    the garbage collector, the libraries' finalizers close its aiohttp session late (gcsfs's
    only schedules the close on fsspec's loop from the collecting thread), one socket per
    use piles up meanwhile, and an unclosed session or socket is warned about. Here, with
    the libraries' own calls, at once and waited for: s3fs's ``close_session`` with the
    client's loop (it exits the aiobotocore client on that loop, else closes its connector),
    gcsfs's ``close_session`` with no loop of its own (it closes the aiohttp session on
    fsspec's loop, where every synchronous client runs, and waits). The finalizers that run
    later find them closed. Never raises: closing is tidying, not part of the answer."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    try:
        if protocols & {"s3", "s3a"}:
            creator = getattr(fs, "_s3creator", None)  # made on first use, with the session
            if creator is not None and getattr(fs, "_s3", None) is not None:
                type(fs).close_session(fs.loop, creator)
        elif protocols & {"gs", "gcs"}:
            session = getattr(fs, "_session", None)
            if session is not None:
                type(fs).close_session(None, session)
    except Exception as exc:
        log.debug("closing the %s client failed: %s", "/".join(sorted(protocols)), exc)


def transient(exc: BaseException) -> bool:
    """Whether another try of the failed store request may succeed: silence, a broken
    connection, throttling or a 5xx. Credentials, missing objects and bad requests are not."""
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError)):
        return False
    names = _names(exc)
    if names & _CREDENTIALS:
        return False
    seen: Optional[BaseException] = exc
    for _ in range(5):
        if seen is None:
            break
        status = getattr(seen, "code", None) or getattr(seen, "status", None)
        response = getattr(seen, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", status)
        if status in _TRANSIENT_STATUS:
            return True
        seen = seen.__cause__ or seen.__context__
    return bool(names & _TRANSIENT)


def _family(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    return {"gcs": "gs", "s3a": "s3"}.get(scheme, scheme)


def _names(exc: BaseException) -> set[str]:
    """The class names of ``exc`` and its causes (libraries wrap each other's errors)."""
    names: set[str] = set()
    seen: Optional[BaseException] = exc
    for _ in range(5):
        if seen is None:
            break
        names.update(cls.__name__ for cls in type(seen).__mro__)
        code = getattr(seen, "response", None)
        if isinstance(code, dict):  # botocore ClientError: {"Error": {"Code": ...}}
            names.add(str(code.get("Error", {}).get("Code", "")))
        seen = seen.__cause__ or seen.__context__
    return names


def _summary(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return hide_credentials(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def store_error(url: str, exc: BaseException, handle: Optional[str] = None) -> HubcacheError:
    """One line for a store operation that failed with a library's exception."""
    if isinstance(exc, HubcacheError):
        return exc
    family = _family(url)
    names = _names(exc)
    status = getattr(exc, "code", None) or getattr(exc, "status", None)
    if names & _CREDENTIALS or isinstance(exc, PermissionError) or status in (401, 403):
        fix = _FIXES.get(family, "check the store's credentials and permissions")
        return CacheDirError(
            f"cannot use the object store {url}: missing or refused credentials "
            f"({_summary(exc)}); {fix}",
            handle=handle,
            url=url,
        )
    where = _ENDPOINTS.get(family)
    hint = f"check the endpoint ({where}) and network access" if where else "check the URL"
    if names & {"TimeoutError", "FSTimeoutError", "ServerTimeoutError", "ReadTimeoutError"}:
        return DownloadError(
            f"the object store {url} stopped answering ({_summary(exc)}; each request may "
            "wait HUBCACHE_READ_TIMEOUT seconds for data, HUBCACHE_CONNECT_TIMEOUT to "
            f"connect); {hint}, then try again",
            handle=handle,
            url=url,
        )
    return DownloadError(
        f"cannot reach the object store {url} ({_summary(exc)}); {hint}, then try again",
        handle=handle,
        url=url,
    )


def first_contact(url: str, timeout: float, probe: Callable[[], T]) -> Optional[T]:
    """Run ``probe`` (a read) the first time this process talks to ``url``, waiting at most
    ``timeout`` seconds; later calls return None at once. Errors come back as ours."""
    bucket = "/".join(url.split("/", 3)[:3])  # scheme://bucket: one contact per bucket
    if bucket in _REACHED:
        return None
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, probe()))
        except BaseException as exc:  # handed to the caller below
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="hubcache-store-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        where = _ENDPOINTS.get(_family(url))
        hint = f"check the endpoint ({where}), the network and the credentials" if where else ""
        raise DownloadError(
            f"the object store {url} did not answer within {timeout:g}s "
            f"(HUBCACHE_STORE_TIMEOUT){'; ' + hint if hint else ''}",
            url=url,
        )
    ok, value = outcome[0]
    if not ok:
        if isinstance(value, FileNotFoundError):
            _REACHED.add(bucket)  # it answered: "no such object" is an answer
            return None
        raise store_error(url, value) from None
    _REACHED.add(bucket)
    return value  # type: ignore[no-any-return]
