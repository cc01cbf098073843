"""Stored archives out through ``sendfile``, on worker threads, with a Range decided by us.

aiohttp's ``FileResponse`` would apply a request's Range whatever ETag its ``If-Range``
names, so the app decides the range first (``serve.ranges``) and hands the decided request
to :class:`DecidedFileResponse`. Its body goes out with ``os.sendfile`` (the kernel copies
page cache to the socket) from a pool of threads rather than from the event loop, so several
large responses are pushed at once on several cores; where the platform has no sendfile,
aiohttp's own loop is used.
"""

from __future__ import annotations

import asyncio
import select
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from aiohttp import web

from .. import _platform

CHUNK = 256 * 1024


class DecidedFileResponse(web.FileResponse):
    """FileResponse applied to a request whose Range we already decided (module docstring);
    preparing twice (by us, then by aiohttp) sends the file once."""

    def __init__(self, path: str, decided: web.BaseRequest, **kwargs: Any) -> None:
        super().__init__(path, chunk_size=CHUNK, **kwargs)
        self._decided = decided

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return None
        return await super().prepare(self._decided)

    async def _sendfile(self, request: web.BaseRequest, fobj: Any, offset: int, count: int) -> Any:
        """The body with ``os.sendfile`` on a worker thread rather than on the event loop:
        the kernel does the copying either way, but from threads several responses are
        pushed at once on several cores (measured: benchmarks/bench_mirror.py)."""
        if not _platform.CAN_SENDFILE:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)  # headers, in the transport
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None:
            raise ConnectionResetError("connection lost")
        while transport.get_write_buffer_size():  # the headers must leave first
            await asyncio.sleep(0.0005)
        transport.pause_reading()
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(_senders(), _send_file, sock.fileno(), fobj, offset, count)
        finally:
            if not transport.is_closing():
                transport.resume_reading()
        await web.StreamResponse.write_eof(self)
        return writer


_SENDERS: Optional[ThreadPoolExecutor] = None


def _senders() -> ThreadPoolExecutor:
    global _SENDERS  # noqa: PLW0603 - one pool per process, made on first use
    if _SENDERS is None:
        _SENDERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="hubcache-sendfile")
    return _SENDERS


def _send_file(sockfd: int, fobj: Any, offset: int, count: int) -> None:
    """Blocking sendfile over the (non-blocking) socket; waits when its buffer is full."""
    filefd = fobj.fileno()
    while count > 0:
        try:
            sent = _platform.sendfile(sockfd, filefd, offset, min(count, 1 << 24))
        except BlockingIOError:
            _, writable, _ = select.select([], [sockfd], [], 60)
            if not writable:
                raise ConnectionResetError("the client stopped reading for 60 s") from None
            continue
        if sent == 0:
            raise ConnectionResetError("the client went away")
        offset += sent
        count -= sent
