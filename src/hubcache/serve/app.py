"""The production server of ``hubcache serve``: aiohttp's web server over our store.

Why aiohttp: one dependency (already pulled in by gcsfs, so the ``[gcs]`` extra costs
nothing more), a mature HTTP/1.1 server with keep-alive, an access logger and graceful
shutdown built in, and an event loop whose own non-blocking ``sendfile`` sends stored
archives (the kernel copies page cache to the socket; no Python in the hot path). The
pull-through fills fit its model well: hundreds of slow clients are coroutines, not
threads, each waiting on the same fill's "more bytes" event.

This module routes: it decides what answers a request. How the bytes then go out (stored
archive, fill in progress, ranges, resets) is ``responses``.

Routes (GET and HEAD): ``/healthz`` (always open), ``/metrics`` (Prometheus text),
everything else is a model or archive path (``static`` says which, ``pullthrough`` fills
what is missing). With ``--token-file`` every route but ``/healthz`` needs
``Authorization: Bearer <token>`` (or Basic with the token as password), else 401.

A miss joins the archive's fill by the fill object (``pullthrough`` keeps one per
archive); a path the mirror could not keep (too long, too deep, through a symbolic link) is
refused before anything is fetched. ``SIGTERM``/``SIGINT``: stop accepting, let in-flight responses
finish for up to ``drain`` seconds, then close the rest and exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import SERVER_SOFTWARE

from .. import _platform
from .._config import Config
from .._errors import ConfigurationError, HubcacheError, ModelNotFoundError, hide_credentials
from ..kaggle.upstream import api_mirror, is_kaggle_host
from ..serve.accesslog import ACCESS_FORMAT, AccessLog
from ..serve.archives import ArchiveStore, Stored
from ..serve.fastpath import FastConnection, Front
from ..serve.fill import Fill
from ..serve.kaggleapi import PREFIX, KaggleFront, json_error, rpc_method
from ..serve.metrics import MULTIPROC_ENV, Metrics
from ..serve.pullthrough import Mirror, Upstream
from ..serve.responses import Responder
from ..serve.static import content_type, is_archive_name, request_parts, wanted_format

log = logging.getLogger(__name__)

BACKLOG = 1024  # connections the kernel queues before one is accepted


class EscapedAccessLogger(AbstractAccessLogger):
    """aiohttp's requests in the access log (``serve.accesslog``; aiohttp hands us the
    ``AccessLog`` as its "logger"), every client-sent field escaped there."""

    @property
    def enabled(self) -> bool:
        """Off with ``-q``: no line is even formatted."""
        return bool(self.logger)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        line = (
            f"{request.method} {request.rel_url.raw_path_qs} HTTP/{version.major}.{version.minor}"
        )
        length = response.headers.get("Content-Length", "-")
        agent = request.headers.get("User-Agent", "-")
        access: AccessLog = self.logger  # type: ignore[assignment]
        access.line(request.remote, line, response.status, length, time, agent)


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
    negative_max: int = 10_000  # upstream 404s remembered at most (the oldest go first)
    max_fills: int = 64  # fills running at once; more misses get 503 + Retry-After
    drain: float = 30.0
    header_timeout: float = 10.0  # a new connection has this long to send its headers
    idle_timeout: float = 60.0  # a keep-alive connection with no request is closed after
    access_log: Optional[TextIO] = None  # where the access log goes (stderr), None: nowhere


class Server:
    def __init__(self, settings: Settings, config: Config) -> None:
        self.settings = settings
        self.config = config
        self.access = AccessLog(settings.access_log)
        self.store = ArchiveStore(settings.directory, mirror=bool(settings.upstreams))
        self.mirror: Optional[Mirror] = None
        self.metrics = Metrics(lambda: self.mirror.stored_bytes() if self.mirror else 0)
        if settings.upstreams:
            self.mirror = Mirror(
                self.store,
                settings.upstreams,
                config,
                negative_ttl=settings.negative_ttl,
                negative_max=settings.negative_max,
                max_fills=settings.max_fills,
                max_size=settings.max_size,
                on_upstream_bytes=self._upstream_bytes,
                on_event=self.metrics.event,
            )
        self.pseudonym = f"hubcache-{uuid.uuid4().hex[:12]}"  # this process, in Via headers
        self.kaggle: Optional[KaggleFront] = None  # Kaggle's model API (serve.kaggleapi)
        if self.mirror is not None and _kaggle_upstream(settings):
            self.kaggle = KaggleFront(config, settings.negative_ttl, self._kaggle_call)
        for name, value in (
            ("header_timeout_seconds", settings.header_timeout),
            ("idle_timeout_seconds", settings.idle_timeout),
            ("drain_timeout_seconds", settings.drain),
            ("max_fills", settings.max_fills),
            ("negative_ttl_seconds", settings.negative_ttl),
            ("negative_max", settings.negative_max),
        ):
            self.metrics.limits.labels(name).set(value)
        self.packers = ThreadPoolExecutor(2, thread_name_prefix="hubcache-pack")
        self.in_flight = 0  # requests being answered (the drain waits for these)
        self.responder = Responder(
            self.store, self.metrics, settings.rate_limit, self._served, settings.idle_timeout
        )
        if self.mirror is not None:
            self.mirror.serving = self.responder.serving  # eviction spares what is being sent

    def busy(self, change: int) -> None:
        """A fast-path response began (+1) or ended (-1): the drain waits for these too."""
        self.in_flight += change

    def _served(self, stored: Stored) -> None:
        if self.mirror is not None:
            self.mirror.noted(stored)

    def _kaggle_call(self, method: str, source: str) -> None:
        self.metrics.kaggle_calls.labels(method, source).inc()

    def _upstream_bytes(self, n: int) -> None:
        self.metrics.upstream_bytes.inc(n)  # thread-safe in prometheus_client

    # -- the request handler --------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: counted, watched by the drain and by ``--header-timeout``.

        aiohttp's low-level server calls this directly (no application, router or
        middleware chain: one catch-all route needs none of them, and each cost time on
        every request of the hot path, a stored archive)."""
        protocol = request.protocol
        if isinstance(protocol, TimedHandler):
            protocol.answering()
        self.in_flight += 1
        status = 500
        try:
            if request.method == "POST":  # Kaggle's model API
                response: web.StreamResponse = await self.handle_post(request)
            elif request.method not in ("GET", "HEAD"):
                response = web.Response(
                    status=405,
                    text="only GET and HEAD are served (and POST for Kaggle's model API)\n",
                    headers={"Allow": "GET, HEAD, POST"},
                )
            else:
                response = await self.route(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.in_flight -= 1
            self.metrics.answered(status)
            if isinstance(protocol, TimedHandler):
                protocol.answered()

    def _authorized(self, request: web.BaseRequest) -> bool:
        """A known token in ``Authorization`` or, from a client that uses the mirror as
        its HTTP proxy (kagglehub: ``http_proxy=http://user:TOKEN@mirror:8000``), in
        ``Proxy-Authorization``; its ``Authorization`` is then its Kaggle credential."""
        return any(
            self.authorized(request.headers.get(name, ""))
            for name in ("Authorization", "Proxy-Authorization")
        )

    def authorized(self, header: str) -> bool:
        """Whether an ``Authorization`` header's value carries one of the tokens."""
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

    def _gate(self, request: web.BaseRequest) -> Optional[web.Response]:
        """The refusal of a request without a token (``--token-file``), or of one that
        came through this server already (a loop of mirrors); None to go on."""
        if self.settings.tokens and not self._authorized(request):
            return web.Response(
                status=401,
                text="a bearer token is needed: Authorization: Bearer <token>\n",
                headers={"WWW-Authenticate": 'Bearer realm="hubcache"'},
            )
        via = request.headers.get("Via", "")
        if self.pseudonym in via:  # our own fill came back to us: a loop of mirrors
            return _text(
                508,
                f"mirror loop: this request passed through this server already (Via: {via}); "
                "check the --upstream of the mirrors on the way\n",
            )
        return None

    async def handle_post(self, request: web.BaseRequest) -> web.StreamResponse:
        """A POST is a call of Kaggle's model API (``serve.kaggleapi``), or a 404."""
        blocked = self._gate(request)
        if blocked is not None and blocked.status == 401:  # in words a Kaggle client shows
            return json_error(
                401,
                "this hubcache mirror needs a token: give it in the mirror's URL "
                "(HUBCACHE_KAGGLE_API=http://hubcache:TOKEN@mirror:8000, or http_proxy's)",
            )
        if blocked is not None:
            return blocked
        method = rpc_method(request.path)
        if method is None:
            return _text(404, "no such route\n")
        if self.kaggle is None:  # in JSON: a Kaggle client shows it, and tries no other route
            return json_error(
                404,
                "this hubcache server has no Kaggle upstream, so it does not answer Kaggle's "
                "API; start it with --upstream www.kaggle.com/models/=https://www.kaggle.com/models/",
            )
        # the calls it makes carry the Via chain with us in it, so a loop of mirrors through
        # HUBCACHE_KAGGLE_API is a 508 where it closes, not a call waiting on itself
        via = _via(request.headers.get("Via", ""), self.pseudonym)
        return await self.kaggle.rpc(request, method, via=via)

    async def route(self, request: web.BaseRequest) -> web.StreamResponse:
        """What answers a GET or HEAD (module docstring)."""
        path = request.path
        if path == "/healthz":
            return web.Response(text="ok\n")
        blocked = self._gate(request)
        if blocked is not None:
            return blocked
        via = request.headers.get("Via", "")
        if path == "/metrics":
            body, ctype = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": ctype})
        parts = request_parts(request.rel_url.raw_path)
        if self.kaggle is not None and parts and parts[0] == PREFIX:
            return await self._kaggle_download(request, parts, _via(via, self.pseudonym))
        fmt = wanted_format(request.query_string)
        if not parts or (fmt is None and not is_archive_name(parts[-1])):
            return _text(404, "no model or archive at this path\n")
        loop = asyncio.get_running_loop()
        for _ in range(3):  # a kept archive removed before it could be opened: look again
            if self.store.local:  # a few cached metadata calls: cheaper than a thread hop
                found = self.store.open_found(parts, fmt)
            else:
                found = await loop.run_in_executor(None, self.store.open_found, parts, fmt)
            if found is None and self.mirror is None and fmt is not None:
                # a model folder to pack: on the packers' own threads, so a long pack
                # never holds up the lookups of other requests
                pack = functools.partial(self.store.open_found, parts, fmt, pack=True)
                found = await loop.run_in_executor(self.packers, pack)
            if found is not None:
                self.metrics.hits.inc()
                return await self.responder.stored(request, found)
            mirror = self.mirror
            url = mirror.url_for(parts) if mirror is not None else None
            if mirror is None or url is None or mirror.known_missing(parts):
                return _text(404, "no model or archive at this path\n")
            refused = await loop.run_in_executor(
                None, self.store.unstorable, "/".join(parts), self.config.limits.max_depth
            )
            if refused is not None:
                status, reason = refused
                return _text(status, f"this path cannot be stored by the mirror: {reason}\n")
            if request.method == "HEAD" and "/".join(parts) not in mirror.fills:
                return await self._probe(mirror, parts, url, _via(via, self.pseudonym))
            fill = mirror.fill(parts, fmt, url, via=_via(via, self.pseudonym))
            if fill is None:
                self.metrics.fills_refused.inc()
                return web.Response(
                    status=503,
                    text=f"the mirror is already filling {self.settings.max_fills} archives "
                    "(--max-fills); try again shortly\n",
                    headers={"Retry-After": "1"},
                )
            self.metrics.misses.inc()
            response = await self.send_fill(request, fill)
            if response is not None:
                return response
        return web.Response(
            status=503,
            text="the archive was removed as it was being sent; try again\n",
            headers={"Retry-After": "1"},
        )

    async def _probe(
        self, mirror: Mirror, parts: list[str], url: str, via: str
    ) -> web.StreamResponse:
        """``HEAD`` of an archive not stored: the upstream's answer, no fill (F19)."""
        loop = asyncio.get_running_loop()
        try:
            length = await loop.run_in_executor(None, mirror.probe, parts, url, via)
        except ModelNotFoundError:
            mirror.remember_missing("/".join(parts))
            return _text(404, "the upstream has no model or archive at this path\n")
        except HubcacheError as exc:
            return _text(502, f"asking the upstream failed: {exc}\n")
        name = parts[-1] if is_archive_name(parts[-1]) else ".tar.gz"
        response = web.StreamResponse(status=200)
        response.content_type = content_type(name)
        response.content_length = length
        return response

    async def _kaggle_download(
        self, request: web.BaseRequest, parts: list[str], via: str
    ) -> web.StreamResponse:
        """A download a Kaggle API call was redirected to: the kept object, or its fill
        (from a fresh signed URL; ``serve.kaggleapi``). Errors in Kaggle's JSON words."""
        if self.kaggle is None or self.mirror is None:
            return _text(404, "no model or archive at this path\n")
        named = self.kaggle.named(parts, request.query_string)
        if isinstance(named, tuple):
            return json_error(*named)
        loop = asyncio.get_running_loop()
        for _ in range(3):  # a kept object removed before it could be opened: look again
            if self.store.local:
                found = self.store.open_named(named.name)
            else:
                found = await loop.run_in_executor(None, self.store.open_named, named.name)
            if found is not None:
                self.metrics.hits.inc()
                return await self.responder.stored(request, found)
            if self.mirror.missing_key(named.name):
                return json_error(404, "Kaggle has no such model version or file (remembered)")
            refused = await loop.run_in_executor(
                None,
                functools.partial(
                    self.store.unstorable, named.name, self.config.limits.max_depth, named=True
                ),
            )
            if refused is not None:
                return json_error(refused[0], f"the mirror cannot keep this file: {refused[1]}")
            shown = "/" + "/".join(parts)
            fill = self.mirror.fill_named(named, shown, via=via)
            if fill is None:
                self.metrics.fills_refused.inc()
                busy = json_error(503, "the mirror is filling too many objects; try again")
                busy.headers["Retry-After"] = "1"
                return busy
            self.metrics.misses.inc()
            response = await self.send_fill(request, fill, refuse=_kaggle_refusal)
            if response is not None:
                return response
        return json_error(503, "the file was removed as it was being sent; try again")

    async def send_fill(
        self,
        request: web.BaseRequest,
        fill: Fill,
        refuse: Optional[Callable[[Fill], web.Response]] = None,
    ) -> Optional[web.StreamResponse]:
        """Join a fill by the fill object; None when it found the archive already kept
        (by another replica) and the caller should open it as a stored one. ``refuse``:
        the answer to a fill that ended missing or failed."""
        fill.readers += 1
        try:
            while fill.state == "pending":
                await fill.tick().wait()
            if fill.state in ("missing", "failed"):
                return (refuse or _fill_refusal)(fill)
            if fill.fd is None:
                return None  # stored without streaming: it is a stored archive now
            return await self.responder.fill(request, fill)
        finally:
            if self.mirror is not None:  # always: only a mirror makes fills
                self.mirror.reader_done(fill)


def _fill_refusal(fill: Fill) -> web.Response:
    if fill.state == "missing":
        return _text(404, "the upstream has no model or archive at this path\n")
    return _text(502, f"fetching from the upstream failed: {fill.error}\n")


def _kaggle_refusal(fill: Fill) -> web.Response:
    """Kaggle's refusal as Kaggle words it (its 404, 401, 403), anything else a 502."""
    if fill.state == "missing":
        return json_error(404, f"Kaggle has no such model version or file: {fill.error}")
    status = fill.status if fill.status in (401, 403, 429) else 502
    return json_error(status, f"fetching from Kaggle failed: {fill.error}")


def _via(incoming: str, pseudonym: str) -> str:
    """The ``Via`` a fill sends upstream: the chain its first request came through, plus
    us, so a mirror that finds itself in it answers 508 instead of waiting on itself."""
    ours = f"1.1 {pseudonym}"
    return f"{incoming}, {ours}" if incoming.strip() else ours


def _self_upstream(urls: list[str], host: str, port: int) -> Optional[str]:
    """The URL that is this very server (same port, a loopback or our own address), or
    None. Other loops are found at run time by ``Via`` (508)."""
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        up_port = parts.port or (443 if parts.scheme == "https" else 80)
        name = (parts.hostname or "").lower()
        if up_port != port:
            continue
        if name in ("localhost", host.lower()):
            return url
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(name)
            if address.is_loopback or address.is_unspecified:
                return url
    return None


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


# -- running ----------------------------------------------------------------------------------
def raise_fd_limit() -> Optional[int]:
    """The open-file limit raised to its hard limit (``_platform``), for the start-up log."""
    return _platform.raise_fd_limit()


class TimedHandler(web.RequestHandler):
    """aiohttp's connection handler, noting when the request it waits for began to arrive,
    so ``--header-timeout`` covers every request of a keep-alive connection, not only its
    first: ``waiting_since`` is set when the connection opens and when a byte comes while
    no request is being answered, cleared once a request's headers are whole (the server
    calls ``answering``). A connection quiet between requests is ``--idle-timeout``'s."""

    waiting_since: Optional[float] = None
    busy = False  # a request is being answered: bytes now belong to a pipelined next one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.waiting_since = time.monotonic()  # a new connection owes its first request
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if data and self.waiting_since is None and not self.busy:
            self.waiting_since = time.monotonic()
        super().data_received(data)

    def answering(self) -> None:
        self.waiting_since = None
        self.busy = True

    def answered(self) -> None:
        self.busy = False


class TimedServer(web.Server):
    """aiohttp's low-level server making ``TimedHandler`` connections, or fast-path ones
    (``fastpath``) that hand over to a ``TimedHandler`` what they do not answer."""

    front: Optional[Front] = None

    def __call__(self) -> Any:
        if self.front is not None:
            return FastConnection(self.front)
        return self.handler()

    def handler(self) -> web.RequestHandler:
        return TimedHandler(self, loop=self._loop, **self._kwargs)


async def _header_watch(server: Server, web_server: web.Server, limit: float) -> None:
    """Close connections whose next request has not sent its whole headers within
    ``limit`` seconds of its first byte (of the connection's opening, for the first): one
    byte every few seconds would otherwise hold a connection, and a descriptor, forever."""
    while True:
        await asyncio.sleep(min(1.0, limit / 4))
        now = time.monotonic()
        for handler in web_server.connections:
            if not isinstance(handler, TimedHandler) or handler.transport is None:
                continue
            since = handler.waiting_since
            if since is not None and now - since > limit:
                handler.waiting_since = None
                server.metrics.header_timeouts.inc()
                handler.transport.close()
        front = getattr(web_server, "front", None)
        if front is not None:
            late = front.sweep(limit)
            if late:
                server.metrics.header_timeouts.inc(late)


async def _drain(server: Server, web_server: web.Server, drain: float) -> None:
    """Give in-flight responses exactly ``drain`` seconds, then cut what is left."""
    web_server.pre_shutdown()  # idle keep-alive connections close now, busy ones after
    front = getattr(web_server, "front", None)
    if front is not None:
        front.drain()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain
    while server.in_flight and loop.time() < deadline:
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    if server.in_flight:
        log.warning("cutting %d responses still in flight after %gs", server.in_flight, drain)
    for handler in web_server.connections:
        if handler.transport is not None:
            handler.transport.abort()
    if front is not None:
        front.cut()


async def serve(
    server: Server,
    on_ready: Callable[[str], None],
    stopping: Optional[asyncio.Event] = None,
    sock: Optional[socket.socket] = None,
) -> None:
    """Listen (or accept on ``sock``, a worker's share of a listening socket), announce,
    serve until SIGTERM/SIGINT, drain, stop."""
    settings = server.settings
    fd_limit = raise_fd_limit()
    if fd_limit is not None:
        server.metrics.fd_limit.set(fd_limit)
        log.info("open-file limit: %d descriptors", fd_limit)
    web_server = TimedServer(
        server.handle,
        access_log=server.access,  # EscapedAccessLogger writes it
        access_log_class=EscapedAccessLogger,
        access_log_format=ACCESS_FORMAT,
        keepalive_timeout=settings.idle_timeout,
        # a client that leaves ends its handler: it no longer counts as in flight (the drain
        # waited its whole timeout for a client gone from a fill that had not begun), and
        # the one sender stops at once. Nothing a handler does needs finishing without its
        # client: fills and Kaggle calls run on their own, readers are counted in finally
        handler_cancellation=True,
    )
    if server.store.local and not settings.rate_limit and _platform.CAN_SENDFILE:
        web_server.front = Front(
            server.store,
            server.metrics,
            server.responder,
            handler=web_server.handler,
            authorized=server.authorized if settings.tokens else None,
            pseudonym=server.pseudonym,
            server_name=SERVER_SOFTWARE,
            access=server.access,
            idle_timeout=settings.idle_timeout,
            on_busy=server.busy,
        )
    runner = web.ServerRunner(
        web_server,
        handle_signals=False,
        shutdown_timeout=0.05,  # _drain has already waited and cut every connection
    )
    await runner.setup()
    watch: Optional[asyncio.Task[None]] = None
    try:
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, settings.host, settings.port, backlog=BACKLOG)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        refuse_itself(settings, port)
        if server.mirror is not None and settings.max_size is not None:
            server.store.claim_eviction()
        stop = stopping or asyncio.Event()
        loop = asyncio.get_running_loop()
        _platform.on_termination(loop, stop.set)
        if server.mirror is not None:
            removed = await loop.run_in_executor(None, server.store.clean_partials)
            for path in removed:
                log.info("removed the partial download %s of a process that is gone", path)
            server.mirror.evict()
        watch = asyncio.create_task(_header_watch(server, web_server, settings.header_timeout))
        on_ready(f"http://{shown}:{port}/")
        await stop.wait()
        log.info("stopping: finishing in-flight responses (up to %gs)", settings.drain)
        await site.stop()  # accept no more
        await _drain(server, web_server, settings.drain)
    finally:
        if watch is not None:
            watch.cancel()
        await runner.cleanup()
        server.access.flush()
        if server.mirror is not None:
            await asyncio.get_running_loop().run_in_executor(None, server.mirror.shutdown)
        server.packers.shutdown(wait=False, cancel_futures=True)
        server.store.close()  # and gives up the claim on eviction


# -- several worker processes ------------------------------------------------------------------
def listen(host: str, port: int) -> socket.socket:
    """The listening socket the workers share (each accepts on it)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address[:2], family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def check_listening(settings: Settings, sock: socket.socket) -> None:
    """What ``serve`` checks once listening, done in the parent before the workers start."""
    refuse_itself(settings, sock.getsockname()[1])


def refuse_itself(settings: Settings, port: int) -> None:
    """Refuse an upstream, or a Kaggle API mirror (``HUBCACHE_KAGGLE_API``), that is this
    very server: every miss, or every Kaggle call, would wait on itself."""
    itself = _self_upstream([up.url for up in settings.upstreams], settings.host, port)
    if itself is not None:
        raise ConfigurationError(
            f"--upstream {itself} is this server itself (port {port}); every miss would "
            "wait on itself. Point --upstream at another host"
        )
    if _kaggle_upstream(settings):
        api = api_mirror()
        if api and _self_upstream([api], settings.host, port) is not None:
            raise ConfigurationError(
                f"HUBCACHE_KAGGLE_API={hide_credentials(api)} is this server itself (port "
                f"{port}); every Kaggle call would wait on itself. Unset it for the mirror, "
                "or point it at another mirror"
            )


def _kaggle_upstream(settings: Settings) -> bool:
    """Whether an upstream is Kaggle (the mirror then answers Kaggle's model API)."""
    return any(
        is_kaggle_host((urllib.parse.urlsplit(up.url).hostname or "").lower())
        for up in settings.upstreams
    )


def run_workers(
    settings: Settings, config: Config, workers: int, on_ready: Callable[[str], None]
) -> int:
    """``--workers N``: N processes accepting on one listening socket, each a whole server
    (its own event loop and store view) over the same DIR, counting into one ``/metrics``
    (``_shared_metrics``). The parent only watches: SIGTERM/SIGINT is passed to every worker
    (each drains as one server does) and the parent exits 0 once all have. A worker that
    dies on its own (a crash, the OOM killer) is replaced at once, the parent keeping the
    listening socket for that; a mirror whose workers keep dying (``RESPAWN_LIMIT`` deaths
    within ``RESPAWN_WINDOW`` seconds: a DIR gone, a broken install) is stopped instead and
    the parent exits 1, for the service manager to see. POSIX only (fork); ``--max-size`` is
    refused with it by the command line: eviction's index of sizes and uses lives in one
    process's memory (docs/mirror.md)."""
    if not _platform.CAN_FORK:  # the command line refuses it first
        raise ConfigurationError("--workers needs fork(), which Windows lacks")
    sock = listen(settings.host, settings.port)
    shared: Optional[str] = None
    try:
        check_listening(settings, sock)
        shared = _shared_metrics()
        host, port = sock.getsockname()[:2]
        children = {_fork_worker(settings, config, sock) for _ in range(workers)}
        shown = f"[{host}]" if ":" in str(host) else host
        stopping: list[bool] = []

        def stop(*_: Any) -> None:
            stopping.append(True)
            for child in children:
                _platform.ask_to_stop(child)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        on_ready(f"http://{shown}:{port}/")
        code = 0
        deaths: list[float] = []
        while children:
            try:
                pid, failed = _platform.wait_child()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.discard(pid)
            if shared is not None:
                _worker_gone(pid, shared)
            if stopping:
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESPAWN_WINDOW] + [now]
            if len(deaths) >= RESPAWN_LIMIT:
                print(
                    f"hubcache: workers stopped {len(deaths)} times within "
                    f"{RESPAWN_WINDOW:g}s; stopping the mirror (see the lines above)",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                stop()
                continue
            how = "failed" if failed else "exited"
            print(f"hubcache: worker {pid} {how}; starting another", file=sys.stderr, flush=True)
            child = _fork_worker(settings, config, sock)
            children.add(child)
            if stopping:  # a stop signal came while it was being made
                _platform.ask_to_stop(child)
        return code
    finally:
        sock.close()
        if shared is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(shared, ignore_errors=True)


RESPAWN_LIMIT = 5  # worker deaths within RESPAWN_WINDOW that stop the mirror instead
RESPAWN_WINDOW = 30.0


def _fork_worker(settings: Settings, config: Config, sock: socket.socket) -> int:
    """One worker: a server of its own accepting on the shared socket. Its PID."""
    pid = _platform.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        asyncio.run(serve(Server(settings, config), lambda _url: None, sock=sock))
        code = 0
    except BaseException as exc:  # one line, as the command line would say it
        print(f"hubcache: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


def _shared_metrics() -> Optional[str]:
    """A private folder where the workers keep their counts, so that ``/metrics`` is the
    whole server's (``serve.metrics``), named to prometheus_client by its environment
    variable before any worker imports it. None, and each worker counts alone (with a
    warning), when prometheus_client was imported already: it has chosen its value store."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before the workers: /metrics is per worker")
        return None
    shared = tempfile.mkdtemp(prefix="hubcache-metrics-")
    os.environ[MULTIPROC_ENV] = shared
    return shared


def _worker_gone(pid: int, shared: str) -> None:
    """A worker stopped: its live gauges (fills in flight) stop counting; its counters stay."""
    from prometheus_client.multiprocess import mark_process_dead

    with contextlib.suppress(OSError):
        mark_process_dead(pid, shared)  # type: ignore[no-untyped-call]
