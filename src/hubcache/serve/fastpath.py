"""The fast path: a ``GET``/``HEAD`` of a stored local archive, answered without aiohttp.

Why: such a request is what a mirror answers most, and through aiohttp's request and
response objects, its task per request and ``loop.sendfile``'s futures it cost about five
times the CPU of the same bytes sent by this protocol (measured: docs/mirror.md). What
it does is small: read the request's head, look the archive up, write the status line
and headers with ``MSG_MORE`` and ``os.sendfile`` the body on the connection's socket,
the way asyncio's own sendfile does underneath; the rest of a body the socket cannot take
at once goes out by the server's one sender, ``Responder.sendfile`` (the one aiohttp's
responses use), on a task that a lost connection cancels.

Everything else goes to aiohttp, and for good: a request this module does not take whole
(another method, HTTP/1.0, a body, ``Range``/``If-Range``, an ``Expect`` or ``Upgrade``,
a header line it does not read plainly, bytes past ASCII, a path that is not a stored
archive, ``/healthz``, ``/metrics``, a token it cannot check) hands the connection and
every byte read so far to an aiohttp handler, which then answers it, and the rest of the
connection, as it answers any other. So the fast path takes a strict subset of requests,
answers them with the headers aiohttp would write, and never decides anything aiohttp
would decide differently: any doubt is aiohttp's.

The server's limits hold here too: ``--header-timeout`` (``waiting_since``, as
``app.TimedHandler``), ``--idle-timeout`` between requests and for a client that takes no
byte (``Front.sweep``), the drain at shutdown (``Front.drain``), tokens, metrics, the
access log, and eviction sparing what is being sent (``Responder.begin``/``end``).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Optional

from ..serve.accesslog import AccessLog
from ..serve.archives import ArchiveStore, Found
from ..serve.metrics import Metrics
from ..serve.responses import Responder, abort_transport, stored_head
from ..serve.static import is_archive_name, request_parts, wanted_format

CLOSE = "Connection: close\r\n"
MAX_HEAD = 8190  # a longer request head is aiohttp's to refuse
MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux: the headers wait for the body's bytes
log = logging.getLogger(__name__)
# headers whose presence means "not a plain GET of a whole archive": aiohttp's to answer
HANDED_OVER = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "range",
        "if-range",
        "expect",
        "upgrade",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
    }
)


class Front:
    """What fast connections share: the server's parts they use, and the connections."""

    def __init__(
        self,
        store: ArchiveStore,
        metrics: Metrics,
        responder: Responder,
        *,
        handler: Callable[[], asyncio.Protocol],
        authorized: Optional[Callable[[str], bool]],
        pseudonym: str,
        server_name: str,
        access: AccessLog,
        idle_timeout: float,
        on_busy: Callable[[int], None],
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.responder = responder
        self.handler = handler  # an aiohttp connection handler, for a hand-over
        self.authorized = authorized  # None: no tokens needed
        self.pseudonym = pseudonym
        self.server_name = server_name
        self.access = access  # serve.accesslog: the one writer of the line
        self.idle_timeout = idle_timeout
        self.on_busy = on_busy  # +1 / -1: the server's in-flight count (the drain's)
        self.connections: set[FastConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # bodies the socket did not take at once
        self.stopping = False
        self._date = (0, "")

    def date(self) -> str:
        """The ``Date`` header, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def sweep(self, header_timeout: float) -> int:
        """Close what overstayed (called every second or so by the server's watch): a
        request head not whole ``header_timeout`` after its first byte, a connection idle
        between requests ``--idle-timeout``. The count of the first kind."""
        now = time.monotonic()
        late = 0
        for conn in list(self.connections):
            if conn.busy:
                continue
            if conn.waiting_since is not None and now - conn.waiting_since > header_timeout:
                conn.waiting_since = None
                late += 1
                conn.transport_close()
            elif conn.waiting_since is None and now - conn.last_done > self.idle_timeout:
                conn.transport_close()
        return late

    def drain(self) -> None:
        """Shutdown: idle connections close now, busy ones once their response is out."""
        self.stopping = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.transport_close()

    def cut(self) -> None:
        """The drain's end: every connection still here is cut."""
        for conn in list(self.connections):
            if conn.transport is not None:
                abort_transport(conn.transport)


class FastConnection(asyncio.Protocol):
    """One client connection while its requests are fast-path ones (module docstring)."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.busy = False  # a response is being sent
        self.paused = False  # reading paused while a response is sent (pipelining)
        self.sending: Optional[asyncio.Task[None]] = None  # the rest of a body, if any
        self.waiting_since: Optional[float] = time.monotonic()  # its first request is owed
        self.last_done = time.monotonic()
        self.fd = -1
        # A socket object over the transport's descriptor, for send(MSG_MORE): made once per
        # connection (one per request cost ~5 us: 7% of a stored hit), never closing what
        # the transport owns: detached when the connection is lost or handed over (_unwrap).
        self.sock: Optional[socket.socket] = None
        self.peer = "-"

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a TCP server's always is
            transport.close()
            return
        self.transport = transport
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        if sock is None or self.front.stopping:
            transport.close()
            return
        self.fd = sock.fileno()
        self.sock = socket.socket(sock.family, socket.SOCK_STREAM, 0, fileno=self.fd)
        if self.sock.gettimeout() != 0.0 and socket.getdefaulttimeout() is not None:
            self.sock.settimeout(0.0)  # a process-wide default would make send() wait
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        self.front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.waiting_since is None and not self.busy:
            self.waiting_since = time.monotonic()
        self.buffer += data
        if not self.busy:
            self._next()
        elif len(self.buffer) > MAX_HEAD and self.transport is not None and not self.paused:
            self.paused = True  # requests pipelined past a response: read them after it
            self.transport.pause_reading()

    def eof_received(self) -> Optional[bool]:
        return None  # close: a client that stopped sending has no further request

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._unwrap()  # first: the transport has closed the descriptor
        self.front.connections.discard(self)
        self.transport = None
        if self.sending is not None:
            self.sending.cancel()  # a body being sent stops at once

    def _unwrap(self) -> None:
        """Let go of the socket object without closing the descriptor (the transport's)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.detach()

    def transport_close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- requests --------------------------------------------------------------------
    def _next(self) -> None:
        """Answer the request at the head of the buffer, if it is whole and ours."""
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._hand_over()
                return
            head = bytes(self.buffer[:end])
            request = self._parse(head)
            found = self._lookup(request) if request is not None else None
            if request is None or found is None:
                self._hand_over()
                return
            del self.buffer[: end + 4]
            self.waiting_since = None
            self._answer(request, found)

    def _parse(self, head: bytes) -> Optional[dict[str, Any]]:
        """The request if it is a plain one this path answers, else None (aiohttp's)."""
        if len(head) > MAX_HEAD or not head.isascii():
            return None
        lines = head.decode("ascii").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD") or parts[2] != "HTTP/1.1":
            return None
        target = parts[1]
        if not target.startswith("/") or "#" in target or not target.isprintable():
            return None
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or not name.isprintable():
                return None  # a folded or odd line: aiohttp says what it is
            key = name.lower()
            if key in HANDED_OVER or key in fields:
                return None
            fields[key] = value.strip(" \t")
        front = self.front
        if front.authorized is not None and not front.authorized(fields.get("authorization", "")):
            return None  # aiohttp answers the 401
        if front.pseudonym in fields.get("via", ""):
            return None  # a loop of mirrors: aiohttp answers the 508
        path, _, query = target.partition("?")
        return {"method": parts[0], "target": target, "path": path, "query": query, **fields}

    def _lookup(self, request: dict[str, Any]) -> Optional[Found]:
        parts = request_parts(request["path"])
        fmt = wanted_format(request["query"])
        if not parts or (fmt is None and not is_archive_name(parts[-1])):
            return None
        return self.front.store.open_found(parts, fmt)

    def _hand_over(self) -> None:
        """From here on, this connection is aiohttp's, with what it sent so far."""
        self._unwrap()
        transport = self.transport
        self.front.connections.discard(self)
        if transport is None:
            return
        handler = self.front.handler()
        since = self.waiting_since
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if since is not None and hasattr(handler, "waiting_since"):
            handler.waiting_since = since  # the header timeout runs from the first byte
        data, self.buffer = bytes(self.buffer), bytearray()
        self.transport = None
        if data:
            handler.data_received(data)

    def _answer(self, request: dict[str, Any], found: Found) -> None:
        front = self.front
        stored = found.stored
        close = request.get("connection", "").lower() == "close" or front.stopping
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"{stored_head(stored.name, stored.etag, stored.mtime, stored.size)}"
            f"Date: {front.date()}\r\n"
            f"Server: {front.server_name}\r\n"
            f"{CLOSE if close else ''}"
            "\r\n"
        ).encode("ascii")
        began = time.perf_counter()
        self.busy = True
        front.on_busy(1)
        front.responder.begin(stored)
        if request["method"] == "HEAD" and self.transport is not None:
            self.transport.write(head)
            self._done(request, found, close, began)
            return
        sent = self._send_now(head, found)
        if sent is None:  # broken: the connection is gone
            self._done(request, found, True, began, broken=True)
        elif sent == stored.size:
            self._done(request, found, close, began)
        else:
            task = self.sending = asyncio.get_running_loop().create_task(
                self._send_rest(found, sent)
            )
            front.tasks.add(task)  # held: the loop keeps only a weak reference
            task.add_done_callback(front.tasks.discard)
            task.add_done_callback(functools.partial(self._sent, request, found, close, began))

    def _send_now(self, head: bytes, found: Found) -> Optional[int]:
        """The headers and as much of the body as the socket takes now; body bytes sent,
        or None when the connection broke. Headers the socket did not take whole go to
        the transport (which sends them before ``_send_rest``'s sendfile)."""
        if self.transport is None or found.file is None:
            return None
        try:
            n = self.sock.send(head, MSG_MORE) if self.sock is not None else 0
        except BlockingIOError:
            n = 0
        except OSError:
            return None
        if n < len(head):
            self.transport.write(head[n:])
            return 0
        try:
            return self.front.responder.push(self.fd, found.file.fileno(), 0, found.stored.size)
        except OSError:
            return None

    async def _send_rest(self, found: Found, offset: int) -> None:
        """The rest of the body, by the server's one sender (``Responder.sendfile``)."""
        transport = self.transport
        if transport is None or found.file is None:
            raise ConnectionResetError("the client went away")
        await self.front.responder.sendfile(
            transport, found.file, offset, found.stored.size - offset
        )

    def _sent(
        self,
        request: dict[str, Any],
        found: Found,
        close: bool,
        began: float,
        task: asyncio.Task[None],
    ) -> None:
        """``_send_rest`` is over, sent whole or not: a done callback, so a task cancelled
        before its first step (the connection lost at once) is accounted for too."""
        self.sending = None
        error = None if task.cancelled() else task.exception()
        broken = task.cancelled() or error is not None
        if error is not None and not isinstance(error, (OSError, NotImplementedError)):
            log.error("sending %s failed: %r", found.stored.name, error)
        self._done(request, found, close or broken, began, broken=broken)

    def _done(
        self,
        request: dict[str, Any],
        found: Found,
        close: bool,
        began: float,
        *,
        broken: bool = False,
    ) -> None:
        front = self.front
        front.responder.end(found)
        front.on_busy(-1)
        front.metrics.tally(hit=True, ok=True)
        if front.access.enabled:
            front.access.line(
                self.peer,
                f"{request['method']} {request['target']} HTTP/1.1",
                200,
                str(found.stored.size),
                time.perf_counter() - began,
                request.get("user-agent", "-"),
            )
        self.busy = False
        self.last_done = time.monotonic()
        transport = self.transport
        if transport is None:
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if broken:
            abort_transport(transport)
        elif close or front.stopping:
            transport.close()
        elif self.buffer:
            self.waiting_since = time.monotonic()  # the next request began meanwhile
            self._next()
