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
==============================================  ==========  ===============================
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse

from ._errors import InvalidHandleError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
HTTP_SCHEMES = ("http", "https")
# Remote filesystems we reach through fsspec. Anything else with "://" is refused early.
FSSPEC_SCHEMES = ("gs", "gcs", "s3", "s3a", "memory", "file", "az", "abfs", "hdfs")
_CHINA_HOST = "hub.tensorflow.google.cn"
_CHINA_STORAGE = "https://gcs.tensorflow.google.cn/tfhub-modules/"


@dataclasses.dataclass(frozen=True)
class Handle:
    """A classified handle. ``raw`` is exactly what the user gave; it alone makes the key."""

    raw: str
    kind: str  # "model" | "archive" | "directory"
    scheme: str  # "http", "https", "gs", ..., or "" for a local path
    location: str  # the URL or path the bytes come from (for "directory": the directory)

    @property
    def key(self) -> str:
        return cache_key(self.raw)


def cache_key(handle: str) -> str:
    """tensorflow_hub's cache key: sha1 of the handle exactly as given."""
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
    """Classify ``handle``; raise :class:`InvalidHandleError` with a remedy when we cannot."""
    if not isinstance(handle, str):
        raise InvalidHandleError(
            f"a handle must be a string (a URL or a path), got {type(handle).__name__}",
            handle=repr(handle),
        )
    if not handle.strip() or handle != handle.strip():
        raise InvalidHandleError(
            f"handle {handle!r} is empty or has surrounding white space; pass the URL or "
            "path exactly",
            handle=handle,
        )
    if "\x00" in handle or "\n" in handle:
        raise InvalidHandleError(f"handle {handle!r} contains a control character", handle=handle)
    if "://" not in handle:
        path = handle
        if is_archive_name(path):
            return Handle(handle, "archive", "", path)
        return Handle(handle, "directory", "", path)

    scheme = handle.split("://", 1)[0].lower()
    if scheme in HTTP_SCHEMES:
        parsed = urllib.parse.urlsplit(handle)
        if not parsed.hostname:
            raise InvalidHandleError(
                f"handle {handle!r} has no host name; expected e.g. "
                "https://tfhub.dev/google/nnlm-en-dim128/1",
                handle=handle,
            )
        if is_archive_name(parsed.path):
            return Handle(handle, "archive", scheme, handle)
        return Handle(handle, "model", scheme, model_url(handle))
    if scheme in FSSPEC_SCHEMES:
        rest = handle.split("://", 1)[1]
        if not rest.strip("/"):
            raise InvalidHandleError(f"handle {handle!r} names no bucket or path", handle=handle)
        if scheme == "file":
            local = urllib.parse.unquote(urllib.parse.urlsplit(handle).path)
            kind = "archive" if is_archive_name(local) else "directory"
            return Handle(handle, kind, "", local)
        kind = "archive" if is_archive_name(rest) else "directory"
        return Handle(handle, kind, scheme, handle)
    raise InvalidHandleError(
        f"handle {handle!r} uses the unsupported scheme {scheme!r}; use https://, gs://, "
        "s3://, a .tar.gz URL or a local path",
        handle=handle,
    )


def model_url(handle: str, load_format: str = "compressed") -> str:
    """The URL that serves the archive of a model handle under the hosting protocol."""
    parsed = urllib.parse.urlsplit(handle)
    if parsed.hostname == _CHINA_HOST and load_format == "compressed":
        # tensorflow_hub's rule for the China mirror: the archive sits in a bucket named
        # after the model path, served without the query protocol.
        return _CHINA_STORAGE + parsed.path.strip("/") + ".tar.gz"
    return append_format_query(handle, load_format)
