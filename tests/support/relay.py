"""A TCP relay that goes silent on chosen requests: a store that stalls mid-download.

Put in front of an emulator, it forwards every byte both ways, except the answers to the
requests whose request line holds ``marker`` (for GCS, ``alt=media``: the object's data),
or, with ``spare`` instead, of every request whose line does NOT hold ``spare`` (a store
that answers its first contact, e.g. ``.hubcache-probe``, then goes silent): those are
read from the target and dropped, so the client sees an open connection that never says
anything again. With ``drip=S`` they are passed on one byte every S seconds instead: a
server never silent for long enough to trip a read timeout, yet hopeless. One request at a
time per connection, as HTTP/1.1 clients send them. Only loopback; stopped by ``stop()``
(or ``with``), which closes every socket it opened.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Optional

_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ")


class SilentRelay:
    def __init__(
        self,
        target_port: int,
        marker: Optional[bytes] = None,
        *,
        spare: Optional[bytes] = None,
        drip: Optional[float] = None,
    ) -> None:
        if (marker is None) == (spare is None):
            raise ValueError("give either marker (what goes silent) or spare (what does not)")
        self.target = ("127.0.0.1", target_port)
        self.marker = marker
        self.spare = spare
        self.drip = drip
        self.silenced = 0  # requests whose answer was dropped (or dripped)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            silent = [False]  # does the current request's answer go nowhere?
            self._spawn(self._requests, client, upstream, silent)
            self._spawn(self._answers, upstream, client, silent)

    def _requests(self, client: socket.socket, upstream: socket.socket, silent: list[bool]) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if data.startswith(_METHODS):
                    line = data.split(b"\r\n", 1)[0]
                    if self.marker is not None:
                        silent[0] = self.marker in line
                    else:
                        silent[0] = self.spare not in line  # type: ignore[operator]
                    with self._lock:
                        self.silenced += silent[0]
                upstream.sendall(data)

    def _answers(self, upstream: socket.socket, client: socket.socket, silent: list[bool]) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not silent[0]:
                    client.sendall(data)
                elif self.drip is not None:
                    for byte in data:
                        if self._stopping.wait(self.drip):
                            return
                        client.sendall(bytes([byte]))

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> SilentRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
