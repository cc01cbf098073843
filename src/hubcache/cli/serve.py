"""``hubcache serve DIR``: host models over HTTP with the TF Hub hosting protocol.

What it answers, for a request path ``/P``:

* ``/P?tf-hub-format=compressed`` -> the archive ``DIR/P.tar.gz``, or ``DIR/P/`` packed as
  a ``.tar.gz`` once per process (kept in a temporary folder);
* ``/P`` where ``DIR/P`` is an archive file (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) -> it;
* anything else -> 404.

Responses carry ``Content-Length``, a strong ``ETag``, ``Last-Modified`` and
``Accept-Ranges: bytes``; single ``Range`` requests get 206 (``If-Range`` honoured), so
resumed and parallel downloads can be exercised against it. ``rate_limit`` throttles each
connection, to model a far-away server on loopback. Files are sent with ``socket.sendfile``,
which falls back to plain sends where ``os.sendfile`` is missing (Windows).
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from .. import _platform
from .._handles import ARCHIVE_SUFFIXES

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_TYPES = {".zip": "application/zip", ".tar": "application/x-tar"}


class ModelHost:
    """A threaded HTTP server for one directory; ``start()``/``stop()`` or a context."""

    def __init__(
        self,
        directory: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: Optional[float] = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self.rate_limit = rate_limit
        self.requests = 0
        self._packed: dict[str, str] = {}
        self._pack_lock = threading.Lock()
        self._tmp: Optional[str] = None
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

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ModelHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- mapping a request to a file -----------------------------------------------------
    def lookup(self, path: str, query: str) -> Optional[str]:
        rel = urllib.parse.unquote(path).lstrip("/")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts or any(_platform.name_problem(p) for p in parts):
            return None  # on Windows "C:", "\\" or "NUL" would leave DIR or name a device
        local = os.path.join(self.directory, *parts) if parts else self.directory
        wants_archive = ("tf-hub-format", "compressed") in urllib.parse.parse_qsl(query)
        if local.lower().endswith(ARCHIVE_SUFFIXES) and os.path.isfile(local):
            return local
        if not wants_archive:
            return None
        for suffix in (".tar.gz", ".tgz", ".tar"):
            if os.path.isfile(local + suffix):
                return local + suffix
        if os.path.isdir(local) and parts:
            return self._pack(local)
        return None

    def _pack(self, folder: str) -> str:
        with self._pack_lock:
            packed = self._packed.get(folder)
            if packed is None:
                if self._tmp is None:
                    self._tmp = tempfile.mkdtemp(prefix="hubcache-serve-")
                packed = os.path.join(self._tmp, f"{len(self._packed)}.tar.gz")
                with tarfile.open(packed, "w:gz") as archive:
                    for name in sorted(os.listdir(folder)):
                        archive.add(os.path.join(folder, name), arcname=name)
                self._packed[folder] = packed
            return packed


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
        self.host.requests += 1
        parts = urllib.parse.urlsplit(self.path)
        path = self.host.lookup(parts.path, parts.query)
        if path is None:
            self._plain(404, "no model or archive at this path\n", body)
            return
        st = os.stat(path)
        size = st.st_size
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range in (etag, modified)):
            match = _RANGE.match(wanted.strip())
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    start = int(match.group(1))
                    end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                else:
                    start, end = max(0, size - int(match.group(2))), size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        suffix = os.path.splitext(path)[1].lower()
        self.send_header("Content-Type", _CONTENT_TYPES.get(suffix, "application/gzip"))
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                self._send(f, start, length)

    def _send(self, f: Any, offset: int, length: int) -> None:
        rate = self.host.rate_limit
        try:
            if not rate:
                self.connection.sendfile(f, offset, length)
                return
            f.seek(offset)
            began = time.monotonic()
            sent = 0
            step = max(1024, int(rate / 20))
            while sent < length:
                data = f.read(min(step, length - sent))
                if not data:
                    return
                self.wfile.write(data)
                sent += len(data)
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _plain(self, status: int, text: str, body: bool) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)
