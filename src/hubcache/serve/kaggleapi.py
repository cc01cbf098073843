"""The mirror's Kaggle model API: the calls kagglehub and hubcache make to download a model.

A mirror with a Kaggle upstream (``--upstream www.kaggle.com/models/=...``) also answers,
under kagglesdk's two layouts (``/api/v1/...`` as ``KAGGLE_API_ENVIRONMENT=LOCALHOST``
sends it, ``/v1/...`` as production's API host has it)::

    POST .../models.ModelApiService/GetModelInstance               Kaggle's answer, kept 60 s
    POST .../models.ModelApiService/ListModelInstanceVersionFiles  Kaggle's answer, kept for
                                                                   good (a version never changes)
    POST .../models.ModelApiService/DownloadModelInstanceVersion   302 to a path of the mirror:
    GET  /kaggle-models/O/M/FW/VAR/VER/archive                     the version's archive
    GET  /kaggle-models/O/M/FW/VAR/VER/file?path=P                 one file of it

Answers are asked of Kaggle with the mirror's own settings and credential
(``kaggle.upstream``); a cluster's burst of the same call waits for one upstream call.
Kaggle's refusals reach the client as Kaggle words them for kagglesdk (a JSON
``{"code", "message"}`` with the same status: 404, 403, 401), a failure to reach Kaggle as
a 502, a body that names no model as a 400; never a 500.

The download answer is a redirect to the mirror itself, never to a signed storage URL, so
storage URLs and the mirror's credential never reach a client. The path it names is filled
by the mirror's one fill machinery (``serve.fill``: single flight, store lock, verify,
eviction, ``--max-fills``) from a fresh signed URL, and kept under ``.hubcache-kaggle/``:
each version (and each file) crosses from Kaggle once. The redirect is relative, so it
works through a proxy that maps the mirror under a path of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import Optional, Union

from aiohttp import web

from .._config import Config
from .._errors import HubcacheError
from ..kaggle.upstream import (
    DOWNLOAD,
    FILES,
    INSTANCE,
    BadCallError,
    Call,
    KaggleUpstream,
    parse_call,
    refusal,
)
from ..serve.archives import KAGGLE
from ..serve.fill import Named
from ..serve.static import request_parts

log = logging.getLogger(__name__)

PREFIX = "kaggle-models"  # the first component of the paths downloads are redirected to
SERVICE = "models.ModelApiService"
INSTANCE_TTL = 60.0  # seconds a model's latest version is kept (a new version shows after)
ANSWERS_MAX = 10_000  # answers kept at most; the oldest go first


def json_error(status: int, message: str) -> web.Response:
    """An error as Kaggle's API words it: kagglesdk raises its HTTP error with ``message``
    when the JSON ``code`` is 400 or more; hubcache's client reads ``message`` too."""
    body = json.dumps({"code": status, "message": message}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def rpc_method(path: str) -> Optional[str]:
    """The RPC a POST path names (``/api/v1/models.ModelApiService/M`` or ``/v1/...``)."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"]:
        parts = parts[1:]
    if len(parts) == 3 and parts[0] == "v1" and parts[1] == SERVICE:
        return parts[2]
    return None


class KaggleFront:
    """The Kaggle API routes of one mirror (module docstring)."""

    def __init__(
        self,
        config: Config,
        negative_ttl: float,
        on_call: Callable[[str, str], None] = lambda method, source: None,
    ) -> None:
        self.upstream = KaggleUpstream(config)
        self.negative_ttl = negative_ttl
        self.on_call = on_call  # (method, "kaggle" | "kept" | "mirror"): the metrics
        self._answers: dict[str, tuple[float, int, bytes]] = {}  # key -> (until, status, body)
        self._asking: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        if self.upstream.source:
            log.info("Kaggle's API is asked with the credential from %s", self.upstream.source)

    async def rpc(self, request: web.BaseRequest, method: str, *, via: str = "") -> web.Response:
        """Answer one POSTed RPC (module docstring). ``via``: the ``Via`` its call to Kaggle
        (or to the next mirror) carries; a burst's one call carries the first request's."""
        try:
            call = parse_call(method, await request.read())
        except BadCallError as exc:
            status = 404 if method not in (INSTANCE, FILES, DOWNLOAD) else 400
            return json_error(status, str(exc))
        if call.method == DOWNLOAD:
            self.on_call(call.method, "mirror")
            ups = "../" * (len(request.path.strip("/").split("/")) - 1)
            return web.Response(
                status=302, headers={"Location": ups + self.target(call)}, content_type="text/plain"
            )
        status, body = await self._answer(call, via)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _answer(self, call: Call, via: str = "") -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        key = call.key
        kept = self._answers.get(key)
        if kept is not None and kept[0] > loop.time():
            self.on_call(call.method, "kept")
            return kept[1], kept[2]
        asking = self._asking.get(key)
        if asking is None:  # one upstream call for a burst; it ends even if its client goes
            asking = self._asking[key] = asyncio.ensure_future(self._ask(call, via))
            self.on_call(call.method, "kaggle")
        else:
            self.on_call(call.method, "kept")
        return await asyncio.shield(asking)

    async def _ask(self, call: Call, via: str) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        try:
            status, body = await loop.run_in_executor(None, self._call, call, via)
        finally:
            del self._asking[call.key]
        if status == 200:
            ttl = float("inf") if call.method == FILES else INSTANCE_TTL
        else:
            ttl = self.negative_ttl if status == 404 else 0.0
        if ttl > 0:
            self._answers.pop(call.key, None)  # re-inserted last: the dict stays in age order
            self._answers[call.key] = (loop.time() + ttl, status, body)
            while len(self._answers) > ANSWERS_MAX:
                del self._answers[next(iter(self._answers))]
        return status, body

    def _call(self, call: Call, via: str) -> tuple[int, bytes]:
        """Kaggle's answer as (status, JSON body); runs on a worker thread."""
        try:
            data = self.upstream.answer(call, via=via)
        except HubcacheError as exc:
            status, message = refusal(exc)
        except Exception as exc:  # any failure is this call's answer, never the server's
            status, message = 502, f"the mirror could not ask Kaggle: {type(exc).__name__}: {exc}"
        else:
            return 200, json.dumps(data).encode()
        log.info("Kaggle's %s for %s: %d %s", call.method, call.model.slug, status, message)
        return status, json.dumps({"code": status, "message": message}).encode()

    # -- downloads --------------------------------------------------------------------------
    @staticmethod
    def target(call: Call) -> str:
        """The mirror's own path of a download (no leading ``/``)."""
        quoted = urllib.parse.quote(f"{PREFIX}/{call.variation}/{call.model.version}")
        if call.path is None:
            return f"{quoted}/archive"
        return f"{quoted}/file?" + urllib.parse.urlencode({"path": call.path})

    def named(self, parts: list[str], query: str) -> Union[Named, tuple[int, str]]:
        """What a GET of a download path fills and keeps, or (status, why) to refuse it."""
        kind = parts[-1] if len(parts) == 7 else ""
        path = dict(urllib.parse.parse_qsl(query)).get("path") if kind == "file" else None
        if kind not in ("archive", "file") or (kind == "file" and not path):
            return 404, f"not a download of this mirror: /{PREFIX}/O/M/FW/VAR/VER/archive or file"
        owner, model, framework, variation, version = parts[1:6]
        body = {
            "ownerSlug": owner,
            "modelSlug": model,
            "framework": framework,
            "instanceSlug": variation,
            "versionNumber": int(version) if version.isdigit() else 0,
            "path": path,
        }
        try:
            call = parse_call(DOWNLOAD, json.dumps(body).encode())
        except BadCallError as exc:
            return 404, f"not a download of this mirror: {exc}"
        name = f"{KAGGLE}/{call.variation}/{call.model.version}/archive"
        if call.path is not None:
            plain = request_parts(call.path)
            if plain is not None and "/".join(plain) == call.path:
                name = f"{KAGGLE}/{call.variation}/{call.model.version}/files/{call.path}"
            else:  # a name the store would not keep as it is (a dot-name, ..): its digest
                digest = hashlib.sha256(call.path.encode()).hexdigest()[:40]
                name = f"{KAGGLE}/{call.variation}/{call.model.version}/hashed/{digest}"
        return Named(name, self.upstream.opener(call), archive=call.path is None)
