"""Handles: what the user typed, what it means, and which bytes to fetch for it.

A handle is classified once into a :class:`Handle`; the rest of the pipeline never parses
the string again. Pure functions only: no I/O, so every rule here is cheap to test.

==============================================  ==========  ===============================
handle                                          kind        fetched from
==============================================  ==========  ===============================
``https://tfhub.dev/google/x/1``                ``model``   the URL + ``tf-hub-format=compressed``
``https://hub.tensorflow.google.cn/google/x/1`` ``model``   ``https://gcs.tensorflow.google.cn/tfhub-modules/google/x/1.tar.gz``
``https://host/m.tar.gz``, ``gs://b/m.tgz``     ``archive`` the URL as given
``/data/m.tar``, ``./m.zip``                    ``archive`` the local file
``/data/model``, ``gs://b/model``               ``directory`` nothing: returned as it is
``kaggle:google/nnlm/tensorFlow2/en-dim128/2``  ``kaggle``  Kaggle's API (``kaggle/``)
==============================================  ==========  ===============================

Kaggle model URLs (``https://www.kaggle.com/models/...``) are classified ``model`` here and
recognised as Kaggle models on the miss path (``kaggle.identity``), which knows the hosts
of the selected Kaggle environment.

Layer: core (docs/architecture.md), beside ``_config`` and ``_platform``; it stands on
``_errors`` alone, so ``fetch``, ``archive`` and everything above may parse handles.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import NamedTuple

from ._errors import InvalidHandleError, hide_credentials

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
HTTP_SCHEMES = ("http", "https")
# Remote filesystems we reach through fsspec. Anything else with "://" is refused early.
FSSPEC_SCHEMES = ("gs", "gcs", "s3", "s3a", "memory", "file", "az", "abfs", "hdfs")
_CHINA_HOST = "hub.tensorflow.google.cn"
_CHINA_STORAGE = "https://gcs.tensorflow.google.cn/tfhub-modules/"


class Handle(NamedTuple):
    """A classified handle. ``raw`` is exactly what the user gave; it alone makes the key."""

    raw: str
    kind: str  # "model" | "archive" | "directory" | "kaggle"
    scheme: str  # "http", "https", "gs", ..., or "" for a local path
    location: str  # the URL or path the bytes come from (for "directory": the directory)

    @property
    def key(self) -> str:
        return cache_key(self.raw)

    @property
    def shown(self) -> str:
        """The handle as messages, logs, manifests and descriptors show it: a password or
        token in the URL replaced by ``***``. Only the key and the request use ``raw``."""
        return hide_credentials(self.raw)


def cache_key(handle: str) -> str:
    """The name of ``handle``'s folder in a cache root: the hex sha1 of the handle exactly
    as given, as tensorflow_hub names it (so both find each other's downloads). Spelling
    matters: a trailing ``/`` or a different query is a different entry."""
    return hashlib.sha1(handle.encode("utf-8")).hexdigest()  # noqa: S324 - a name, not security


def append_format_query(url: str, value: str = "compressed") -> str:
    """Append ``tf-hub-format=<value>`` the way tensorflow_hub does, quirks included.

    tensorflow_hub parses the query with ``parse_qsl`` (dropping blank values), appends the
    pair (even when one is already there) and re-encodes with ``urlencode``. Servers that
    speak the protocol see the same request from both clients.
    """
    parsed = urllib.parse.urlparse(url)
    pairs = urllib.parse.parse_qsl(parsed.query)
    pairs.append(("tf-hub-format", value))
    return urllib.parse.urlunparse(parsed._replace(query=urllib.parse.urlencode(pairs)))


def is_archive_name(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def parse_handle(handle: str) -> Handle:
    """Classify ``handle``; raise :class:`InvalidHandleError` with a remedy when we cannot.

    Everything that can be known without the network is checked here, so a handle that
    could never work fails at once with exit 2 instead of after a round of retries."""
    if not isinstance(handle, str):
        raise InvalidHandleError(
            f"a handle must be a string (a URL or a path), got {type(handle).__name__}",
            handle=repr(handle),
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in handle):
        raise InvalidHandleError(f"handle {handle!r} contains a control character", handle=handle)
    if not handle.strip() or handle != handle.strip():
        raise InvalidHandleError(
            f"handle {handle!r} is empty or has surrounding white space; pass the URL or "
            "path exactly",
            handle=handle,
        )
    if handle.startswith("kaggle:") and "://" not in handle:
        # kagglehub's handle with a prefix, so it never collides with a relative path;
        # checked in full (parts, framework, version) by kaggle.identity on the miss path.
        return Handle(handle, "kaggle", "kaggle", handle[len("kaggle:") :])
    if "://" not in handle:
        return _without_slashes(handle)
    scheme = handle.split("://", 1)[0].lower()
    if scheme in HTTP_SCHEMES:
        return _http_handle(handle, scheme)
    if scheme in FSSPEC_SCHEMES:
        rest = handle.split("://", 1)[1]
        if not rest.strip("/"):
            raise InvalidHandleError(f"handle {handle!r} names no bucket or path", handle=handle)
        if scheme == "file":
            return _file_handle(handle)
        kind = "archive" if is_archive_name(rest) else "directory"
        return Handle(handle, kind, scheme, handle)
    raise InvalidHandleError(
        f"handle {handle!r} uses the unsupported scheme {scheme!r}; use https://, gs://, "
        "s3://, a .tar.gz URL or a local path",
        handle=handle,
    )


def _without_slashes(handle: str) -> Handle:
    """A local path, or ``file:/path`` (RFC 8089's short form). ``https:/host`` and
    ``gs:bucket`` are typos of a URL: as paths they would only be "not found" later."""
    scheme, colon, _rest = handle.partition(":")
    if colon and scheme.lower() == "file":
        return _file_handle(handle)
    if colon and scheme.lower() in HTTP_SCHEMES + FSSPEC_SCHEMES:
        raise InvalidHandleError(
            f"handle {handle!r} lacks the // after {scheme}:; write {scheme}://...",
            handle=handle,
        )
    kind = "archive" if is_archive_name(handle) else "directory"
    return Handle(handle, kind, "", handle)


def _file_handle(handle: str) -> Handle:
    parsed = urllib.parse.urlsplit(handle)
    if parsed.netloc not in ("", "localhost"):
        raise InvalidHandleError(
            f"handle {handle!r} names a file on another host ({parsed.netloc}); use a local "
            "path, or mount the share and give its path",
            handle=handle,
        )
    local = urllib.parse.unquote(parsed.path)
    kind = "archive" if is_archive_name(local) else "directory"
    return Handle(handle, kind, "", local)


def _http_handle(handle: str, scheme: str) -> Handle:
    if any(c.isspace() for c in handle):
        raise InvalidHandleError(
            f"handle {handle!r} contains white space; URLs cannot hold it (write a space "
            "in a path as %20)",
            handle=handle,
        )
    try:
        parsed = urllib.parse.urlsplit(handle)
        hostname = parsed.hostname
    except ValueError as exc:  # "Invalid IPv6 URL": an unbalanced [
        raise InvalidHandleError(
            f"handle {handle!r} is not a valid URL ({exc})", handle=handle
        ) from None
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise InvalidHandleError(
            f"handle {handle!r} has an invalid port ({parsed.netloc.rpartition(':')[2]!r}); "
            "a port is a number from 1 to 65535",
            handle=handle,
        )
    if not hostname:
        raise InvalidHandleError(
            f"handle {handle!r} has no host name; expected e.g. "
            "https://tfhub.dev/google/nnlm-en-dim128/1",
            handle=handle,
        )
    if is_archive_name(parsed.path):
        return Handle(handle, "archive", scheme, handle)
    if not parsed.path.strip("/"):
        raise InvalidHandleError(
            f"handle {handle!r} names a host but no model on it; add the model's path, e.g. "
            f"{scheme}://{parsed.netloc}/google/nnlm-en-dim128/1",
            handle=handle,
        )
    formats = [v for k, v in urllib.parse.parse_qsl(parsed.query) if k == "tf-hub-format"]
    if any(value != "compressed" for value in formats):
        raise InvalidHandleError(
            f"handle {handle!r} asks for tf-hub-format={formats[-1]}; hubcache adds the format "
            "itself: remove it from the handle (TFHUB_MODEL_LOAD_FORMAT picks the protocol)",
            handle=handle,
        )
    return Handle(handle, "model", scheme, model_url(handle))


def model_url(handle: str, load_format: str = "compressed") -> str:
    """The URL that serves the archive of a model handle under the hosting protocol."""
    parsed = urllib.parse.urlsplit(handle)
    if parsed.hostname == _CHINA_HOST and load_format == "compressed":
        # tensorflow_hub's rule for the China mirror: the archive sits in a bucket named
        # after the model path, served without the query protocol.
        return _CHINA_STORAGE + parsed.path.strip("/") + ".tar.gz"
    pairs = urllib.parse.parse_qsl(parsed.query)
    if ("tf-hub-format", load_format) in pairs:
        return handle  # already asks for it: tensorflow_hub would send the pair twice
    if any(name == "tf-hub-format" for name, _ in pairs):  # the other format: ask for ours
        query = urllib.parse.urlencode([p for p in pairs if p[0] != "tf-hub-format"])
        handle = urllib.parse.urlunsplit(parsed._replace(query=query))
    return append_format_query(handle, load_format)
