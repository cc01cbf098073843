"""Start/stop plumbing shared by the test servers (model host and proxy).

The point of this module is a *clean* stop: pytest runs with warnings as errors, so a socket
left open (ResourceWarning) or a handler thread still blocked in a read fails the suite.
Handler threads are therefore tracked here, every open connection is shut down on stop(),
and long waits in handlers use :attr:`BackgroundServer._stopping` instead of time.sleep.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, TypeVar

_S = TypeVar("_S", bound="BackgroundServer")


class TrackedHTTPServer(ThreadingHTTPServer):
    """Threads are tracked by the owner (not by ThreadingMixIn) so stop() can join them."""

    daemon_threads = True

    def __init__(self, owner: BackgroundServer, handler: type, tls: Optional[ssl.SSLContext]):
        self.owner = owner
        self.tls = tls
        super().__init__(("127.0.0.1", 0), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.owner._track(thread)
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        if self.tls is not None:  # the TLS handshake happens on this thread, not in accept(),
            conn = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:  # so a client that never speaks cannot block the accept loop
            if self.owner._register(conn):
                if conn is not request:
                    conn.do_handshake()
                self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            self.owner._unregister(conn)
            if conn is not request:
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # OSError: the client left or failed TLS; expected
            self.owner.errors.append(repr(exc))


class BackgroundServer:
    """Start/stop plumbing shared with :class:`tests.support.proxy.ProxyServer`."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, tls: Any = None) -> None:
        if tls is not None and not isinstance(tls, ssl.SSLContext):  # a trustme.LeafCert
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.configure_cert(ctx)
            tls = ctx
        self._tls: Optional[ssl.SSLContext] = tls
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[Any] = set()
        self._httpd: Optional[TrackedHTTPServer] = None
        self._loop: Optional[threading.Thread] = None
        self.errors: list[str] = []  # unexpected handler exceptions: a bug in this module

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    def url(self, path: str = "") -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}{path}"

    def start(self: _S) -> _S:
        self._stopping.clear()
        self._httpd = TrackedHTTPServer(self, self.handler, self._tls)
        self._loop = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._loop.start()
        return self

    def stop(self) -> None:
        if self._httpd is None or self._loop is None:
            return
        self._stopping.set()  # wakes stalls, drips and never_answer waits
        self._httpd.shutdown()  # no accept()s after this
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:  # unblocks handlers waiting for the next keep-alive request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)
        self._httpd.server_close()
        self._loop.join()
        self._httpd = self._loop = None

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _register(self, conn: Any) -> bool:
        """False once stop() began, so a late connection is closed, not served."""
        with self._lock:
            self._conns.add(conn)
            return not self._stopping.is_set()

    def _unregister(self, conn: Any) -> None:
        with self._lock:
            self._conns.discard(conn)
