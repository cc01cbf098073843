"""A tiny forwarding HTTP proxy for tests of proxy support (HTTP(S)_PROXY, ``proxy=``).

It understands the two things clients send to a proxy: ``CONNECT host:port`` (an opaque
tunnel, used for https) and ``GET http://host:port/path`` (absolute-URI forwarding, used
for plain http). It only ever connects to loopback addresses, so a test that leaks a real
host name through it gets a 403 instead of a hang. Every request is recorded.
"""

from __future__ import annotations

import http.client
import select
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple, Optional
from urllib.parse import urlsplit

from ._serving import BackgroundServer, TrackedHTTPServer

CHUNK = 64 * 1024
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class ProxyRequest(NamedTuple):
    method: str  # "CONNECT", "GET", "HEAD"
    target: str  # "host:port" for CONNECT, the absolute URL otherwise
    headers: dict[str, str]


class ProxyServer(BackgroundServer):
    """``with ProxyServer() as proxy:`` then point the client at ``proxy.url()``."""

    def __init__(self) -> None:
        super().__init__()
        self.handler = _ProxyHandler
        self._log: list[ProxyRequest] = []

    @property
    def requests(self) -> list[ProxyRequest]:
        with self._lock:
            return list(self._log)

    def count(self, method: Optional[str] = None) -> int:
        return sum(1 for r in self.requests if method in (None, r.method))

    def _record(self, request: ProxyRequest) -> None:
        with self._lock:
            self._log.append(request)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: TrackedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def _owner(self) -> ProxyServer:
        owner = self.server.owner
        assert isinstance(owner, ProxyServer)
        return owner

    def do_CONNECT(self) -> None:
        self._owner._record(ProxyRequest("CONNECT", self.path, dict(self.headers.items())))
        self.close_connection = True
        host, _, port = self.path.rpartition(":")
        if host.strip("[]") not in _LOOPBACK:
            self.send_error(403, "this test proxy only reaches loopback")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            self.send_error(502)
            return
        with upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            self._pipe(self.connection, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until one side closes or the proxy stops."""
        stopping = self._owner._stopping
        while not stopping.is_set():
            readable, _, _ = select.select([client, upstream], [], [], 0.1)
            for sock in readable:
                try:
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
                except OSError:
                    return

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self._owner._record(ProxyRequest(self.command, self.path, dict(self.headers.items())))
        self.close_connection = True
        url = urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in _LOOPBACK:
            self.send_error(403 if url.scheme == "http" else 400)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        answered = False
        try:
            conn.request(
                self.command, url.path + (f"?{url.query}" if url.query else ""), headers=headers
            )
            resp = conn.getresponse()
            self.send_response(resp.status, resp.reason)
            answered = True
            for name, value in resp.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            while chunk := resp.read1(CHUNK):  # pass faults (drops, stalls) straight through
                self.wfile.write(chunk)
        except (OSError, http.client.HTTPException):
            if not answered:  # else the upstream broke mid-body: closing our side relays that
                self.send_error(502)
        finally:
            conn.close()
