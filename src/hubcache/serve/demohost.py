"""A minimal static host on the standard library, for ``hubcache demo`` only.

The demo must run on a plain ``pip install hubcache`` (no ``[server]`` extra), on loopback,
for one client. This host serves one directory by the rules of ``static`` and the range
rules of ``ranges`` (the same ones the production server uses); it has no pull-through,
auth, metrics or graceful drain: ``hubcache serve`` runs the aiohttp server (``app``).
A client that drops its connection ends that request quietly.
"""

from __future__ import annotations

import email.utils
import logging
import os
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from ..serve.ranges import choose_range, file_etag
from ..serve.static import StaticTree, content_type, request_parts, wanted_format

log = logging.getLogger(__name__)


class ModelHost:
    """A threaded HTTP server for one directory; ``start()``/``stop()`` or a context."""

    def __init__(self, directory: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tree = StaticTree(directory)
        self.directory = self.tree.directory
        self.requests = 0
        self._thread: Optional[threading.Thread] = None
        handler = type("Handler", (_Handler,), {"host": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> ModelHost:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="hubcache-serve", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()
        self.tree.close()

    def __enter__(self) -> ModelHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    host: ModelHost
    protocol_version = "HTTP/1.1"
    server_version = "hubcache-serve"

    def setup(self) -> None:
        super().setup()
        # Headers and a small body go out as two writes; without this, Nagle's algorithm
        # holds the body until the client's delayed ACK (~40 ms per small model).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        try:
            self._answer(body)
        except OSError:  # the client went away: nothing to tell anyone
            self.close_connection = True

    def _answer(self, body: bool) -> None:
        self.host.requests += 1
        split = urllib.parse.urlsplit(self.path)
        parts = request_parts(split.path)
        path = None if parts is None else self.host.tree.lookup(parts, wanted_format(split.query))
        if path is None:
            self._plain(404, "no model or archive at this path\n", body)
            return
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = file_etag(size, st.st_mtime_ns)
            modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            chosen = choose_range(
                self.headers.get("Range"), self.headers.get("If-Range"), size, etag, modified
            )
            if chosen == "416":
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = chosen if isinstance(chosen, tuple) else (0, size - 1)
            self.send_response(206 if isinstance(chosen, tuple) else 200)
            self.send_header("Content-Type", content_type(path))
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            self.send_header("Accept-Ranges", "bytes")
            if isinstance(chosen, tuple):
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body and end >= start:
                self.connection.sendfile(f, start, end - start + 1)

    def _plain(self, status: int, text: str, body: bool) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)
