"""An in-process HTTP(S) model host that can misbehave on purpose.

Tests of the download path need a server that answers like a CDN (ETag, ranges, If-Range)
and, on demand, like a broken one (5xx, dropped sockets, stalls, lying headers). Everything
runs on daemon threads bound to 127.0.0.1; counters live on the server object so tests whose
downloader runs in a child process can still assert how many requests arrived.

``stop()`` must be prompt and leave nothing behind (pytest runs with warnings as errors, so a
leaked socket's ResourceWarning fails the suite): every wait uses the stop event, and every
open connection is shut down before the handler threads are joined.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple, Optional, Union
from urllib.parse import parse_qsl, urlsplit

from urllib3 import HTTPHeaderDict

from hubcache.serve.ranges import if_range_fresh, parse_range

from ._serving import BackgroundServer, TrackedHTTPServer

CHUNK = 64 * 1024


class Request(NamedTuple):
    """One request as the server saw it; unpacks as ``(method, path, headers)``."""

    method: str
    path: str  # with the query string
    headers: HTTPHeaderDict  # case-insensitive


@dataclass
class Fault:
    """One misbehaviour for one path. Only the first ``times`` requests (all when None) whose
    method is in ``methods`` get it; several faults on a path are used up in order, so
    ``Fault(status=503, times=1), Fault(drop_after=10, times=1)`` fails twice, then serves."""

    status: Optional[int] = None  # answer this status instead of the resource
    retry_after: Optional[str] = None
    body_override: Optional[bytes] = None  # with status (default 200): e.g. an HTML login page
    content_type: Optional[str] = None  # for status / body_override answers
    headers: dict[str, str] = field(default_factory=dict)  # extra headers on any answer
    drop_after: Optional[int] = None  # full Content-Length, N body bytes, then close
    reset: bool = False  # with drop_after: close with a TCP RST instead of a FIN
    stall_after: Optional[int] = None  # send N bytes, then go silent ...
    stall_seconds: Optional[float] = None  # ... for this long (None: until stop()), then finish
    never_answer: bool = False  # read the request, never respond
    drip: Optional[int] = None  # bytes per second, sent in tiny pieces
    rate_limit: Optional[int] = None  # bytes per second for this connection
    wrong_length: int = 0  # declared Content-Length = real length + this
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length (a streaming origin)
    ignore_range: bool = False  # 200 + full body even to a Range request
    change_etag_after: Optional[int] = None  # after N requests to the path, a new ETag/date
    wrong_content_range: bool = False  # 206 whose Content-Range start is off
    delay: Optional[float] = None  # seconds before answering (a far server's round trip)
    times: Optional[int] = None
    methods: tuple[str, ...] = ("GET", "HEAD")


@dataclass
class _Resource:
    body: Optional[bytes]
    file: Optional[str]
    size: int
    content_type: str
    etag: Optional[str]
    last_modified: Optional[str]
    accept_ranges: bool
    query_required: Optional[str]


@dataclass
class _Slot:
    fault: Fault
    left: Optional[int]


class ModelServer(BackgroundServer):
    """Serves registered bodies with CDN-like headers and injected faults (module docstring).

    ``ModelServer(tls=ca.issue_cert("127.0.0.1"))`` serves HTTPS with a trustme certificate.
    """

    def __init__(self, tls: Any = None) -> None:
        super().__init__(tls)
        self.handler = _ModelHandler
        self._resources: dict[str, _Resource] = {}
        self._redirects: dict[str, tuple[str, int, bool]] = {}
        self._faults: dict[str, list[_Slot]] = {}
        self._log: list[Request] = []
        self._hits: dict[str, int] = {}

    def add(self, path: str, body: bytes, *, etag: Optional[str] = None, **options: Any) -> str:
        """Serve ``body`` at ``path`` and return its URL. ``etag=None`` means a strong ETag from
        the body's sha1, ``""`` no ETag. Options: ``content_type``, ``last_modified`` (an HTTP
        date or a POSIX time), ``accept_ranges=True``, ``query_required="k=v"`` (404 unless
        the query has that pair) and ``faults=(Fault(...), ...)``."""
        if etag is None:
            etag = f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()}"'
        return self._put(path, body=body, file=None, size=len(body), etag=etag, **options)

    def add_file(
        self,
        path: str,
        filename: Union[str, os.PathLike[str]],
        *,
        etag: Optional[str] = None,
        **options: Any,
    ) -> str:
        """Like :meth:`add`, streaming the file from disk; the default ETag comes from size
        and mtime, so multi-GB files are not hashed."""
        st = os.stat(filename)
        if etag is None:
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return self._put(
            path, body=None, file=os.fspath(filename), size=st.st_size, etag=etag, **options
        )

    def _put(
        self,
        path: str,
        *,
        body: Optional[bytes],
        file: Optional[str],
        size: int,
        etag: str,
        content_type: str = "application/octet-stream",
        last_modified: Union[str, float, None] = None,
        accept_ranges: bool = True,
        query_required: Optional[str] = None,
        faults: tuple[Fault, ...] = (),
    ) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if isinstance(last_modified, (int, float)):
            last_modified = email.utils.formatdate(last_modified, usegmt=True)
        res = _Resource(
            body,
            file,
            size,
            content_type,
            etag or None,
            last_modified,
            accept_ranges,
            query_required,
        )
        with self._lock:
            self._resources[path] = res
        if faults:
            self.faults(path, *faults)
        return self.url(path) if self._httpd else path

    def redirect(self, path: str, target: str, status: int = 302, keep_query: bool = False) -> str:
        """Answer ``path`` with a redirect to ``target`` (a path or an absolute URL); the
        request's query is appended only with ``keep_query`` (CDN redirects drop it)."""
        with self._lock:
            self._redirects[path] = (target, status, keep_query)
        return self.url(path) if self._httpd else path

    def faults(self, path: str, *faults: Fault) -> None:
        """Replace the faults of ``path`` (none given: clear them)."""
        with self._lock:
            self._faults[path] = [_Slot(f, f.times) for f in faults]

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def count(self, path: str, method: Optional[str] = "GET") -> int:
        """Requests for ``path`` (query ignored) with ``method`` (None: any)."""
        return sum(
            1 for r in self.requests if urlsplit(r.path).path == path and method in (None, r.method)
        )

    def _begin(self, method: str, raw_path: str, headers: HTTPHeaderDict) -> tuple[Fault, int]:
        """Log the request; return the fault it gets and its 1-based number for its path."""
        path = urlsplit(raw_path).path
        with self._lock:
            self._log.append(Request(method, raw_path, headers))
            self._hits[path] = hits = self._hits.get(path, 0) + 1
            for slot in self._faults.get(path, ()):
                if method in slot.fault.methods and (slot.left is None or slot.left > 0):
                    if slot.left is not None:
                        slot.left -= 1
                    return slot.fault, hits
        return Fault(), hits


class _ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real CDN
    timeout = 30  # an idle keep-alive connection gives up eventually
    server: TrackedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, ModelServer)
        fault, hits = owner._begin(self.command, self.path, HTTPHeaderDict(self.headers.items()))
        try:
            self._answer(owner, fault, hits)
        except OSError:  # the client hung up, timed out or broke TLS: just drop it
            self.close_connection = True

    def do_HEAD(self) -> None:  # _reply and _send_resource leave the body out
        self.do_GET()

    def _reply(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, owner: ModelServer, f: Fault, hits: int) -> None:
        split = urlsplit(self.path)
        extra = dict(f.headers)
        if f.retry_after is not None:
            extra["Retry-After"] = f.retry_after
        if f.never_answer:
            owner._stopping.wait()
            self.close_connection = True
            return
        if f.delay and owner._stopping.wait(f.delay):
            self.close_connection = True
            return
        if f.status is not None or f.body_override is not None:
            status = f.status or 200
            body = f.body_override
            if body is None:
                body = f"{status} injected fault\n".encode()
            self._reply(status, body, f.content_type or "text/plain; charset=utf-8", extra)
            return
        with owner._lock:
            redirect = owner._redirects.get(split.path)
            res = owner._resources.get(split.path)
        if redirect is not None:
            target, status, keep_query = redirect
            if keep_query and split.query:
                target += ("&" if "?" in target else "?") + split.query
            self._reply(status, b"", "text/plain", {"Location": target, **extra})
            return
        if res is None or (
            res.query_required is not None
            and tuple(res.query_required.split("=", 1)) not in parse_qsl(split.query)
        ):
            self._reply(404, b"not found\n", "text/plain", extra)
            return
        self._send_resource(owner, res, f, hits, extra)

    def _send_resource(
        self,
        owner: ModelServer,
        res: _Resource,
        f: Fault,
        hits: int,
        extra: dict[str, str],
    ) -> None:
        etag, last_modified = res.etag, res.last_modified
        if f.change_etag_after is not None and hits > f.change_etag_after:
            etag = f'"changed-{hits}"'
            last_modified = email.utils.formatdate(time.time() + 3600, usegmt=True)
        size, start, end, status = res.size, 0, res.size - 1, 200
        value = self.headers.get("Range")
        if value and res.accept_ranges and not f.ignore_range:
            parsed = parse_range(value, size)
            if parsed == "416":
                self._reply(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            cond = self.headers.get("If-Range")
            if cond is not None and not if_range_fresh(cond, etag, last_modified):
                parsed = None
            if isinstance(parsed, tuple):
                (start, end), status = parsed, 206
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", res.content_type)
        if f.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length + f.wrong_length))
        if etag:
            self.send_header("ETag", etag)
        if last_modified:
            self.send_header("Last-Modified", last_modified)
        if res.accept_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            shown = (1 if start == 0 else 0) if f.wrong_content_range else start
            self.send_header("Content-Range", f"bytes {shown}-{shown + length - 1}/{size}")
        for name, val in extra.items():
            self.send_header(name, val)
        if f.wrong_length or f.drop_after is not None:  # the stream is unusable afterwards
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self._send_body(owner, res, start, length, f)

    def _send_body(
        self, owner: ModelServer, res: _Resource, start: int, length: int, f: Fault
    ) -> None:
        src = open(res.file, "rb") if res.file else None  # noqa: SIM115 - closed below
        try:
            if src:
                src.seek(start)
            view = memoryview(res.body or b"")
            pace = min(x for x in (f.drip, f.rate_limit, 1 << 62) if x)
            stop_at = length if f.drop_after is None else min(length, f.drop_after)
            sent, stalled, began = 0, f.stall_after is None, time.monotonic()
            while sent < stop_at:
                n = min(CHUNK, stop_at - sent)
                if f.drip:
                    n = min(n, max(1, f.drip // 20))
                if f.rate_limit:
                    n = min(n, max(1, f.rate_limit // 10))
                if not stalled:
                    n = min(n, max(0, f.stall_after - sent))  # type: ignore[operator]
                if n:
                    data = src.read(n) if src else view[start + sent : start + sent + n]
                    if f.chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (n, bytes(data)))
                    else:
                        self.wfile.write(data)
                    sent += n
                if not stalled and sent >= f.stall_after:  # type: ignore[operator]
                    stalled = True
                    if owner._stopping.wait(f.stall_seconds):
                        break
                    began = time.monotonic() - sent / pace
                delay = began + sent / pace - time.monotonic()
                if delay > 0 and owner._stopping.wait(delay):
                    break
            if f.chunked and sent == length and not owner._stopping.is_set():
                self.wfile.write(b"0\r\n\r\n")  # the last chunk: only now is the body whole
            if f.drop_after is not None or owner._stopping.is_set():
                self.close_connection = True
                if f.reset:  # linger 0: the kernel answers with RST when the fd closes
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
        finally:
            if src:
                src.close()


def serve(server: ModelServer, path: str, body: bytes, **options: Any) -> str:
    """Host ``body`` at ``path`` as a TF Hub server does (the archive only for
    ``?tf-hub-format=compressed``, 404 otherwise) and return the handle, the URL without that
    query. ``options`` as for :meth:`ModelServer.add` (``faults=``, ``etag=``...). The one
    helper the tests publish a model with."""
    server.add(path, body, query_required="tf-hub-format=compressed", **options)
    return server.url(path)
