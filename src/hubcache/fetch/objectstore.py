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
  each naming the store and the variables that fix it.

Exception types are recognised by name, so nothing here imports botocore or google-auth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .._errors import CacheDirError, DownloadError, HubcacheError, hide_credentials

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
