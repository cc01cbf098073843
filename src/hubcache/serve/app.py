"""The production server of ``hubcache serve``: aiohttp's web server over our store.

Why aiohttp: one dependency (already pulled in by gcsfs, so the ``[gcs]`` extra costs
nothing more), a mature HTTP/1.1 server with keep-alive, an access logger and graceful
shutdown built in, and ``FileResponse``, which sends stored archives with ``sendfile``
(the kernel copies page cache to the socket; no Python in the hot path). The pull-through
fills fit its model well: hundreds of slow clients are coroutines, not threads, each
waiting on the same fill's "more bytes" event.

Routes (GET and HEAD): ``/healthz`` (always open), ``/metrics`` (Prometheus text),
everything else is a model or archive path (``static`` says which, ``pullthrough`` fills
what is missing). With ``--token-file`` every route but ``/healthz`` needs
``Authorization: Bearer <token>`` (or Basic with the token as password), else 401.

Range decisions come from ``ranges`` (the one place they are made); stored local archives
then go out through ``sendfile.DecidedFileResponse`` with the decided range, so the kernel
copies the bytes and we keep the ``If-Range`` rule (aiohttp alone applies a range whatever
ETag the client names). ``SIGTERM``/``SIGINT``: stop accepting, let in-flight responses
finish for up to ``drain`` seconds, then close the rest and exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from aiohttp import web

from .. import _platform
from .._config import Config
from ..serve.archives import ArchiveStore, Stored
from ..serve.fill import Fill
from ..serve.metrics import Metrics
from ..serve.pullthrough import Mirror, Upstream
from ..serve.ranges import choose_range
from ..serve.sendfile import CHUNK, DecidedFileResponse
from ..serve.static import content_type, is_archive_name, request_parts, wanted_format

log = logging.getLogger(__name__)
access_log = logging.getLogger("hubcache.serve.access")

ACCESS_FORMAT = '%a "%r" %s %{Content-Length}o %Tfs "%{User-Agent}i"'


@dataclass(frozen=True)
class Settings:
    directory: str
    host: str = "127.0.0.1"
    port: int = 8000
    upstreams: tuple[Upstream, ...] = ()
    tokens: frozenset[str] = field(default_factory=frozenset)
    max_size: Optional[int] = None
    rate_limit: Optional[float] = None  # bytes per second per response
    negative_ttl: float = 30.0
    drain: float = 30.0


class Server:
    def __init__(self, settings: Settings, config: Config) -> None:
        self.settings = settings
        self.store = ArchiveStore(settings.directory)
        self.mirror: Optional[Mirror] = None
        self.metrics = Metrics(lambda: self.mirror.stored_bytes() if self.mirror else 0)
        if settings.upstreams:
            self.mirror = Mirror(
                self.store,
                settings.upstreams,
                config,
                negative_ttl=settings.negative_ttl,
                max_size=settings.max_size,
                on_upstream_bytes=self._upstream_bytes,
                on_event=self.metrics.event,
            )
        self.serving: dict[str, int] = self.mirror.serving if self.mirror else {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def _upstream_bytes(self, n: int) -> None:
        self.metrics.upstream_bytes.inc(n)  # thread-safe in prometheus_client

    # -- the application ------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/{tail:.*}", self.handle)  # and HEAD
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.metrics.requests.labels(str(exc.status)).inc()
            raise
        self.metrics.requests.labels(str(response.status)).inc()
        return response

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = ""
        if scheme.lower() == "bearer":
            token = value.strip()
        elif scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                token = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        return bool(token) and any(
            hmac.compare_digest(token.encode(), known.encode()) for known in self.settings.tokens
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/healthz":
            return web.Response(text="ok\n")
        if self.settings.tokens and not self._authorized(request):
            return web.Response(
                status=401,
                text="a bearer token is needed: Authorization: Bearer <token>\n",
                headers={"WWW-Authenticate": 'Bearer realm="hubcache"'},
            )
        if path == "/metrics":
            body, ctype = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": ctype})
        parts = request_parts(request.rel_url.raw_path)
        fmt = wanted_format(request.query_string)
        if not parts or (fmt is None and not is_archive_name(parts[-1])):
            return _text(404, "no model or archive at this path\n")
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(None, self.store.find, parts, fmt)
        if stored is not None:
            self.metrics.hits.inc()
            return await self.send_stored(request, stored)
        mirror = self.mirror
        url = mirror.url_for(parts) if mirror is not None else None
        if mirror is None or url is None or mirror.known_missing(parts):
            return _text(404, "no model or archive at this path\n")
        self.metrics.misses.inc()
        return await self.send_fill(request, mirror.fill(parts, fmt, url))

    # -- stored archives ----------------------------------------------------------------
    async def send_stored(self, request: web.Request, stored: Stored) -> web.StreamResponse:
        modified = email.utils.formatdate(stored.mtime, usegmt=True)
        chosen = choose_range(
            request.headers.get("Range"),
            request.headers.get("If-Range"),
            stored.size,
            stored.etag,
            modified,
        )
        if chosen == "416":
            return web.Response(status=416, headers={"Content-Range": f"bytes */{stored.size}"})
        self.serving[stored.name] = self.serving.get(stored.name, 0) + 1
        try:
            if stored.path is not None and not self.settings.rate_limit:
                headers = {
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() not in ("range", "if-range", "accept-encoding")
                }
                if isinstance(chosen, tuple):
                    headers["Range"] = f"bytes={chosen[0]}-{chosen[1]}"
                response = DecidedFileResponse(
                    stored.path,
                    request.clone(headers=headers),
                    headers={"Content-Type": content_type(stored.name)},
                )
                with contextlib.suppress(ConnectionError):
                    await response.prepare(request)
                    if request.method == "GET":
                        self.metrics.served_bytes.inc(response.content_length or 0)
                return response
            return await self._stream_stored(request, stored, chosen, modified)
        finally:
            self.serving[stored.name] -= 1
            if self.mirror is not None:
                self.mirror.noted(stored)

    async def _stream_stored(
        self, request: web.Request, stored: Stored, chosen: Any, modified: str
    ) -> web.StreamResponse:
        """A bucket's archive, or any archive under --rate-limit: read and write."""
        start, end = chosen if isinstance(chosen, tuple) else (0, stored.size - 1)
        response = web.StreamResponse(status=206 if isinstance(chosen, tuple) else 200)
        _headers(
            response,
            name=stored.name,
            etag=stored.etag,
            modified=modified,
            size=stored.size,
            chosen=chosen,
        )
        response.content_length = end - start + 1
        loop = asyncio.get_running_loop()
        source: IO[bytes] = await loop.run_in_executor(None, self.store.open, stored)
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            await loop.run_in_executor(None, source.seek, start)
            pos, began = start, time.monotonic()
            while pos <= end:
                data = await loop.run_in_executor(None, source.read, min(CHUNK, end + 1 - pos))
                if not data:
                    _abort(request)  # the store's object shrank under us
                    return response
                await response.write(data)
                pos += len(data)
                self.metrics.served_bytes.inc(len(data))
                await self._pace(pos - start, began)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            await loop.run_in_executor(None, source.close)
        return response

    async def _pace(self, sent: int, began: float) -> None:
        rate = self.settings.rate_limit
        if rate:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)

    # -- fills --------------------------------------------------------------------------
    async def send_fill(self, request: web.Request, fill: Fill) -> web.StreamResponse:
        fill.readers += 1
        try:
            while fill.state == "pending":
                await fill.tick().wait()
            if fill.state == "missing":
                return _text(404, "the upstream has no model or archive at this path\n")
            if fill.state == "failed":
                return _text(502, f"fetching from the upstream failed: {fill.error}\n")
            if fill.state == "stored" and fill.stored is not None:
                return await self.send_stored(request, fill.stored)
            return await self._stream_fill(request, fill)
        finally:
            if self.mirror is not None:  # always: only a mirror makes fills
                self.mirror.reader_done(fill)

    async def _stream_fill(self, request: web.Request, fill: Fill) -> web.StreamResponse:
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
        name = fill.name or fill.base
        _headers(
            response,
            name=name,
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
        else:
            response.enable_chunked_encoding()
        fd = os.open(fill.part, _platform.READ)  # this response's own descriptor
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            pos, began = start, time.monotonic()
            while limit is None or pos < limit:
                tick = fill.tick()
                avail = fill.available() if limit is None else min(fill.available(), limit)
                if pos < avail:
                    data = _platform.pread(fd, min(avail - pos, CHUNK), pos)
                    if not data:
                        _abort(request)
                        return response
                    await response.write(data)
                    pos += len(data)
                    self.metrics.served_bytes.inc(len(data))
                    await self._pace(pos - start, began)
                    continue
                if fill.state == "stored" and limit is None:
                    break  # the whole body (length unknown until now) is out
                if fill.state in ("failed", "missing"):
                    _abort(request)  # never end a body that is not whole
                    return response
                await tick.wait()
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            os.close(fd)
        return response


def _headers(
    response: web.StreamResponse,
    *,
    name: str,
    etag: Optional[str],
    modified: str,
    size: Optional[int],
    chosen: Any,
) -> None:
    response.headers["Content-Type"] = content_type(name)
    if etag:
        response.headers["ETag"] = etag
    if modified:
        response.headers["Last-Modified"] = modified
    if size is not None and etag:
        response.headers["Accept-Ranges"] = "bytes"
    if isinstance(chosen, tuple):
        response.headers["Content-Range"] = f"bytes {chosen[0]}-{chosen[1]}/{size}"


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _abort(request: web.Request) -> None:
    """Close the connection at once (RST): the client sees a broken body, not an end."""
    transport = request.transport
    if transport is not None:
        transport.abort()


# -- running ----------------------------------------------------------------------------------
async def serve(
    server: Server, on_ready: Callable[[str], None], stopping: Optional[asyncio.Event] = None
) -> None:
    """Listen, announce, serve until SIGTERM/SIGINT, drain, stop."""
    settings = server.settings
    runner = web.AppRunner(
        server.app(),
        access_log=access_log,
        access_log_format=ACCESS_FORMAT,
        handle_signals=False,
        shutdown_timeout=settings.drain,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        stop = stopping or asyncio.Event()
        loop = asyncio.get_running_loop()
        _platform.on_termination(loop, stop.set)
        if server.mirror is not None:
            removed = await loop.run_in_executor(None, server.store.clean_partials)
            for path in removed:
                log.info("removed the partial download %s of a process that is gone", path)
            server.mirror.evict()
        on_ready(f"http://{shown}:{port}/")
        await stop.wait()
        log.info("stopping: finishing in-flight responses (up to %gs)", settings.drain)
    finally:
        await runner.cleanup()
        if server.mirror is not None:
            server.mirror.shutdown()
        server.store.close()
