"""``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED``: ask the host where the model's files live.

tensorflow_hub's protocol: GET the handle with ``tf-hub-format=uncompressed``, redirects NOT
followed; the server answers ``303 See Other`` whose body is a ``gs://`` location, and that
location is returned as it is (TensorFlow reads the SavedModel from GCS directly); nothing
is cached. Its error cases are kept: any answer other than 303 is an error ("Expected 303
for GCS location lookup but got HTTP ..."), and so is a body that is not a ``gs://``
location. One deliberate difference: a server that answers 200 with an archive (plain
file hosts, ``hubcache serve``) does not support the protocol, and rather than fail as
tensorflow_hub does we fall back to the compressed protocol (returning None here).

Layer: acquisition (docs/architecture.md), the miss half of a resolve, beside the stager;
called by ``_resolve`` only, it stands on ``fetch`` and ``archive`` and the core.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ._config import Config
from ._errors import DownloadError, HTTPStatusError, ModelNotFoundError
from ._handles import Handle, model_url
from .archive.decode import sniff
from .fetch.pool import manager, split_credentials
from .fetch.retry import RetryBudget, send_with_retries
from .fetch.source import redact

log = logging.getLogger(__name__)

_ARCHIVES = ("gzip", "bz2", "xz", "tar", "zip")


def uncompressed_location(handle: Handle, config: Config) -> Optional[str]:
    """The ``gs://`` location of ``handle``'s files, or None to use the compressed protocol."""
    import urllib3

    # redirects are not followed here, so the one host asked is the handle's own
    url, auth = split_credentials(model_url(handle.raw, "uncompressed"))
    if any(name.lower() == "authorization" for name, _ in config.headers):
        auth = {}  # the user's explicit header wins
    timeout = urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout)

    def send() -> Any:
        return manager(url, config).request(
            "GET",
            url,
            headers={"Accept-Encoding": "identity", **auth, **dict(config.headers)},
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=timeout,
        )

    response = send_with_retries(RetryBudget.of(config), send, url=lambda: url, handle=handle.shown)
    try:
        return _interpret(handle, url, response)
    finally:
        response.drain_conn()
        response.release_conn()


def _interpret(handle: Handle, url: str, response: Any) -> Optional[str]:
    status = response.status
    where = redact(url)
    if status == 303:
        body = response.read(65536).decode("utf-8", "replace").strip()
        location = body or str(response.headers.get("Location", "")).strip()
        if not location.startswith("gs://"):
            raise DownloadError(
                f"Expected server to return a GCS location but received {location[:200]!r} "
                f"(from {where})",
                handle=handle.shown,
            )
        return location
    if status == 200:
        head = response.read(512)
        if sniff(head) in _ARCHIVES:
            log.info(
                "%s answered the uncompressed request with an archive; using the "
                "compressed protocol instead",
                where,
            )
            return None
    if status in (404, 410):
        raise ModelNotFoundError(
            f"{where} answered {status}: no model at this handle",
            handle=handle.shown,
            status=status,
        )
    raise HTTPStatusError(
        f"Expected 303 for GCS location lookup but got HTTP {status} {response.reason or ''} "
        f"from {where}; unset TFHUB_MODEL_LOAD_FORMAT (or set it to COMPRESSED) to download "
        "the archive instead",
        handle=handle.shown,
        status=status,
    )
