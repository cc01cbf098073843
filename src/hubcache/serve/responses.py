"""How the server's bodies go out: stored archives, and fills while their bytes arrive.

Routing (``app``) decides *what* answers a request; this module decides *how* its bytes
are sent, so the two change for different reasons and are read apart.

Stored local archives go out with one sender (``Responder.sendfile``): non-blocking
``os.sendfile`` on the connection's socket (the kernel copies page cache to the socket),
the event loop waiting for a writable socket with epoll/kqueue like for any other write;
aiohttp's responses and the fast path (``fastpath``) both send through it. No thread is
held per response, so slow or stopped readers cost one connection each and can never starve a
fixed pool, and there is no ``select()`` with its 1024-descriptor ceiling. The file is
already open when the response starts (``archives.Found``), so an eviction meanwhile
changes nothing for it. Where sendfile cannot be used (a bucket's object, ``--rate-limit``,
a platform without it), the bytes are read and written in chunks.

A fill's readers send from the fill's own descriptor (``fill.fd``) with ``pread``; the
last byte waits until the archive is verified and kept, and a fill that fails resets the
connection (RST), so no client ever takes a short body for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import IO, Any, Optional

from aiohttp import web

from .. import _platform
from ..serve.archives import ArchiveStore, Found, Stored
from ..serve.fill import Fill
from ..serve.metrics import Metrics
from ..serve.ranges import choose_range
from ..serve.static import content_type

CHUNK = 256 * 1024
SLICE = 1024 * 1024  # sendfile slices: each must leave within the stall limit


class Responder:
    """Sends bodies for the server (module docstring)."""

    def __init__(
        self,
        store: ArchiveStore,
        metrics: Metrics,
        rate_limit: Optional[float],
        on_served: Callable[[Stored], None],
        stall: float = 60.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.rate_limit = rate_limit
        self.stall = stall  # a client that takes no byte for this long is cut
        self.on_served = on_served
        self.serving: dict[str, int] = {}  # name -> responses sending it now

    # -- stored archives ----------------------------------------------------------------
    async def stored(self, request: web.BaseRequest, found: Found) -> web.StreamResponse:
        """Send a stored archive (its file already open, when local), with our Range."""
        stored = found.stored
        self.begin(stored)
        try:
            modified = http_date(stored.mtime)
            chosen = choose_range(
                request.headers.get("Range"),
                request.headers.get("If-Range"),
                stored.size,
                stored.etag,
                modified,
            )
            if chosen == "416":
                return web.Response(status=416, headers={"Content-Range": f"bytes */{stored.size}"})
            return await self._send_stored(request, found, chosen, modified)
        finally:
            self.end(found)

    def begin(self, stored: Stored) -> None:
        """A response starts sending ``stored``: eviction spares it meanwhile."""
        self.serving[stored.name] = self.serving.get(stored.name, 0) + 1

    def end(self, found: Found) -> None:
        """The response that ``begin`` counted is over: noted as a use, its file closed."""
        stored = found.stored
        self.serving[stored.name] -= 1
        if not self.serving[stored.name]:
            del self.serving[stored.name]
        self.on_served(stored)
        if found.file is not None:
            found.file.close()

    async def _send_stored(
        self, request: web.BaseRequest, found: Found, chosen: Any, modified: str
    ) -> web.StreamResponse:
        stored = found.stored
        start, end = chosen if isinstance(chosen, tuple) else (0, stored.size - 1)
        response = web.StreamResponse(status=206 if isinstance(chosen, tuple) else 200)
        headers(
            response,
            name=stored.name,
            etag=stored.etag,
            modified=modified,
            size=stored.size,
            chosen=chosen,
        )
        response.content_length = end - start + 1
        loop = asyncio.get_running_loop()
        source: IO[bytes]
        if found.file is not None:
            source = found.file
        else:
            source = await loop.run_in_executor(None, self.store.open, stored)
        direct = found.file is not None and not self.rate_limit and _platform.CAN_SENDFILE
        corked = None
        try:
            if direct and request.method != "HEAD" and end >= start:
                corked = _cork(request, True)  # headers leave with the body's first bytes
            await response.prepare(request)
            if request.method == "HEAD" or end < start:
                await response.write_eof()
                return response
            transport = request.transport
            if transport is None:
                return response
            if direct:
                try:
                    await self.sendfile(transport, source, start, end + 1 - start)
                except NotImplementedError:
                    pass  # a transport that cannot (TLS): chunks below
                else:
                    await response.write_eof()
                    return response
            await self._copy(request, response, source, start, end)
        except ConnectionError:
            pass  # the client went away
        finally:
            if corked is not None:
                _cork(request, False)
            if found.file is None:
                await loop.run_in_executor(None, source.close)
        return response

    async def sendfile(
        self, transport: asyncio.Transport, source: IO[bytes], offset: int, count: int
    ) -> None:
        """The one sender of stored bytes, for aiohttp's responses and the fast path alike:
        ``os.sendfile`` on the connection's socket each time it can take more, from the
        file opened at lookup (the kernel copies page cache to the socket; no thread, no
        buffer, no ``select()`` ceiling). A client that has not taken ``SLICE`` (1 MB) more
        within ``stall`` seconds is cut (RST) instead of holding its connection forever,
        while any client taking at least ``SLICE / stall`` bytes a second (17 KB/s by
        default) is served in full; "any byte" would not do, as the kernel keeps taking a
        trickle into a stopped reader's buffer as it compacts it.

        The writes go through a duplicate of the socket's descriptor, which the event loop
        watches for writability on our behalf (the transport owns the original and is
        watched for reading): one registration per body and one future per wait, where
        ``loop.sendfile`` set up its own for every slice (measured 14% more CPU on 50 MB).
        Bytes still queued in the transport (headers a full socket did not take) go first:
        the sender waits until the transport has none. A connection that is lost cancels
        the task sending on it (aiohttp's handler; the fast path's ``connection_lost``),
        so a cut or a drain takes effect at once; the duplicate is closed last, so an
        abort still ends in RST. NotImplementedError where the socket cannot be written
        directly (TLS, a platform without sendfile): the caller copies in chunks."""
        sock = transport.get_extra_info("socket")
        if (
            sock is None
            or not _platform.CAN_SENDFILE
            or transport.get_extra_info("sslcontext") is not None
        ):
            raise NotImplementedError("this connection takes no sendfile")
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []

        def wake() -> None:
            if waiting and not waiting[0].done():
                waiting[0].set_result(None)

        fd = os.dup(sock.fileno())
        loop.add_writer(fd, wake)
        try:
            end, src = offset + count, source.fileno()
            mark, since = offset, loop.time()  # SLICE bytes must pass within each stall
            while offset < end:
                if transport.is_closing():
                    raise ConnectionResetError("the client went away")
                if not transport.get_write_buffer_size():
                    offset = self.push(fd, src, offset, end)
                    if offset - mark >= SLICE:
                        mark, since = offset, loop.time()
                    if offset >= end:
                        break
                left = since + self.stall - loop.time()
                if left <= 0:
                    abort_transport(transport)
                    raise ConnectionResetError(f"the client took no bytes for {self.stall:g}s")
                waiting[:] = [loop.create_future()]
                timer = loop.call_later(left, wake)
                try:
                    await waiting[0]
                finally:
                    timer.cancel()
        finally:
            loop.remove_writer(fd)
            os.close(fd)

    def push(self, fd: int, source: int, offset: int, end: int) -> int:
        """``os.sendfile`` from ``offset`` towards ``end`` as long as the socket takes bytes
        without waiting; the new offset, each piece counted as sent. The fast path's first
        try at a body and every wake-up of ``sendfile``. ConnectionResetError when the file
        shrank under us; any other OSError as raised (the connection is broken)."""
        while offset < end:
            try:
                sent = _platform.sendfile(fd, source, offset, end - offset)
            except BlockingIOError:
                break
            if sent == 0:
                raise ConnectionResetError("the stored file shrank while being sent")
            offset += sent
            self.metrics.tally(sent=sent)
        return offset

    async def _write(
        self, request: web.BaseRequest, response: web.StreamResponse, data: bytes
    ) -> None:
        """``response.write`` that cuts a client taking no byte for ``stall`` seconds."""
        try:
            await asyncio.wait_for(response.write(data), self.stall)
        except asyncio.TimeoutError:
            abort(request)
            raise ConnectionResetError(f"the client took no bytes for {self.stall:g}s") from None

    async def _copy(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        source: IO[bytes],
        start: int,
        end: int,
    ) -> None:
        """A bucket's archive, or any archive under --rate-limit: read and write."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, source.seek, start)
        pos, began = start, time.monotonic()
        while pos <= end:
            data = await loop.run_in_executor(None, source.read, min(CHUNK, end + 1 - pos))
            if not data:
                abort(request)  # the store's object shrank under us
                return
            await self._write(request, response, data)
            pos += len(data)
            self.metrics.served_bytes.inc(len(data))
            await self._pace(pos - start, began)
        await response.write_eof()

    async def _pace(self, sent: int, began: float) -> None:
        rate = self.rate_limit
        if rate:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)

    # -- fills --------------------------------------------------------------------------
    async def fill(self, request: web.BaseRequest, fill: Fill) -> web.StreamResponse:
        """Send the fill's bytes as they arrive; break the connection if it fails."""
        total = fill.total
        chosen = None
        if total is not None:
            chosen = choose_range(
                request.headers.get("Range"),
                request.headers.get("If-Range"),
                total,
                fill.etag,
                fill.last_modified,
            )
            if chosen == "416":
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        response = web.StreamResponse(status=206 if isinstance(chosen, tuple) else 200)
        headers(
            response,
            name=fill.name or fill.base,
            etag=fill.etag,
            modified=fill.last_modified,
            size=total,
            chosen=chosen,
        )
        start, limit = 0, None
        if total is not None:
            start, end = chosen if isinstance(chosen, tuple) else (0, total - 1)
            limit = end + 1
            response.content_length = limit - start
        elif request.version >= (1, 1):
            response.enable_chunked_encoding()
        else:  # HTTP/1.0 has no chunks: the body ends when the connection closes
            response.force_close()
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            pos, began = start, time.monotonic()
            while limit is None or pos < limit:
                tick = fill.tick()
                avail = fill.available() if limit is None else min(fill.available(), limit)
                if pos < avail and fill.fd is not None:
                    data = _platform.pread(fill.fd, min(avail - pos, CHUNK), pos)
                    if not data:
                        abort(request)
                        return response
                    await self._write(request, response, data)
                    pos += len(data)
                    self.metrics.served_bytes.inc(len(data))
                    await self._pace(pos - start, began)
                    continue
                if fill.state == "stored" and limit is None:
                    break  # the whole body (length unknown until now) is out
                if fill.state in ("failed", "missing"):
                    abort(request)  # never end a body that is not whole
                    return response
                await tick.wait()
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response


@functools.lru_cache(maxsize=1024)
def http_date(mtime: float) -> str:
    """``Last-Modified`` of a stored file (memoised: formatting is on every request)."""
    return email.utils.formatdate(mtime, usegmt=True)


def archive_headers(
    name: str, etag: Optional[str], modified: str, size: Optional[int], chosen: Any = None
) -> list[tuple[str, str]]:
    """The headers every archive answer carries, in order: the one list, for aiohttp's
    responses (``headers``) and the fast path's own header block (``stored_head``)."""
    out = [("Content-Type", content_type(name))]
    if etag:
        out.append(("ETag", etag))
    if modified:
        out.append(("Last-Modified", modified))
    if size is not None and etag:
        out.append(("Accept-Ranges", "bytes"))
    if isinstance(chosen, tuple):
        out.append(("Content-Range", f"bytes {chosen[0]}-{chosen[1]}/{size}"))
    return out


def headers(
    response: web.StreamResponse,
    *,
    name: str,
    etag: Optional[str],
    modified: str,
    size: Optional[int],
    chosen: Any,
) -> None:
    """``archive_headers`` set on an aiohttp response."""
    for key, value in archive_headers(name, etag, modified, size, chosen):
        response.headers[key] = value


@functools.lru_cache(maxsize=1024)
def stored_head(name: str, etag: str, mtime: float, size: int) -> str:
    """A whole stored archive's ``archive_headers`` and length as header lines, for the
    fast path (memoised: the same few archives are asked for again and again)."""
    fields = archive_headers(name, etag, http_date(mtime), size)
    fields.append(("Content-Length", str(size)))
    return "".join(f"{key}: {value}\r\n" for key, value in fields)


TCP_CORK = getattr(socket, "TCP_CORK", None)  # Linux; elsewhere headers leave on their own


def _cork(request: web.BaseRequest, on: bool) -> Optional[bool]:
    """Hold (or release) the socket's partial segments, so a response's headers and the
    start of its body leave as one segment, as nginx's ``tcp_nopush`` does: one send
    fewer through the network stack on every stored response. None where it cannot."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if TCP_CORK is None or sock is None:
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1 if on else 0)
    except OSError:
        return None
    return on


def abort(request: web.BaseRequest) -> None:
    """Close the connection at once (RST): the client sees a broken body, not an end."""
    if request.transport is not None:
        abort_transport(request.transport)


def abort_transport(transport: asyncio.Transport) -> None:
    """``abort`` for a connection known by its transport."""
    with contextlib.suppress(OSError):
        sock = transport.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close() sends RST, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
