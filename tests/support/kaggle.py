"""A local stand-in for Kaggle Models: the API kagglehub 1.x speaks, signed storage, and a
tfhub.dev-like redirector in front.

Three servers on 127.0.0.1, each started and stopped by the test:

* :class:`KaggleServer` -- Kaggle's API and web pages. Clients reach it the way they would
  reach ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (``http://localhost``, port 80): through
  ``http_proxy`` pointing at this server, which accepts absolute-form request lines
  (``POST http://localhost/api/v1/...``). It serves ``GetModelInstance``,
  ``ListModelInstanceVersionFiles`` (pages of ``pageSize``) and
  ``DownloadModelInstanceVersion`` (302 to a signed URL; with ``direct`` set, 200 with the
  bytes and their md5, as kagglehub's own test stub answers), the legacy
  ``GET /api/v1/models/O/M/FW/VAR/VER/download``, and ``/models/...`` pages (302 to the
  archive with ``tf-hub-format=compressed``, else an HTML page). Bearer and Basic auth.
  As a proxy it also answers for ``http://www.kaggle.com`` (how a mirror knows Kaggle).
* :class:`StorageServer` -- signed URLs: a query signature (HMAC) and an expiry; answers
  400 ``ExpiredToken`` past the expiry, 403 ``SignatureDoesNotMatch`` for a bad signature
  or when told to refuse the next N requests; declares the md5 in ``x-goog-hash``. Records
  every request's headers. On demand it answers like far storage (:meth:`StorageServer.far`:
  an answer delay, a per-connection cap, a shared link, single ranges with an ETag).
* :class:`Redirector` -- ``/<publisher>/<model>/<version>`` -> 302 to a Kaggle model URL
  (query kept, ``tfhub-redirect=true`` added), or to the HTML catalogue for unmigrated ones.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import io
import json
import re
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

from hubcache.serve.ranges import if_range_fresh, parse_range

from ._serving import BackgroundServer, TrackedHTTPServer

SECRET = b"storage-signing-secret"
HTML = b"<!DOCTYPE html><html><head><title>Kaggle Models</title></head><body>x</body></html>"


class Seen(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes


def fw_id(name: str) -> str:
    return re.sub(r"[_-]", "", name.lower())


def enum_id(enum: str) -> str:
    return enum.removeprefix("MODEL_FRAMEWORK_").replace("_", "").lower()


@dataclass
class KaggleModel:
    """One model variation with its versions: {version: {relative path: bytes}}."""

    owner: str
    model: str
    framework: str  # as Kaggle spells it in URLs, e.g. "tensorFlow2"
    variation: str
    versions: dict[int, dict[str, bytes]]
    gated: bool = False
    _archives: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def latest(self) -> int:
        return max(self.versions)

    def matches(self, owner: str, model: str, framework: str, variation: str) -> bool:
        return (owner.lower(), model.lower(), fw_id(framework), variation.lower()) == (
            self.owner.lower(),
            self.model.lower(),
            fw_id(self.framework),
            self.variation.lower(),
        )

    def archive(self, version: int) -> bytes:
        """The version's ``.tar.gz``, made once (storage holds archives ready, as Kaggle's
        does: a benchmark must not time the test server's own compression), and the same
        bytes on every call (the gzip header's time is fixed), so a test can compare what it
        got with a fresh copy."""
        made = self._archives.get(version)
        if made is None:
            made = self._archives[version] = self._make_archive(version)
        return made

    def _make_archive(self, version: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in sorted(self.versions[version].items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1700000000
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(buf.getvalue(), mtime=0)


def saved_model_files(seed: str, extra: int = 0) -> dict[str, bytes]:
    """A small SavedModel-shaped file set (``saved_model.pb`` + variables), plus ``extra``
    asset files."""
    files = {
        "saved_model.pb": f"pb {seed}".encode() * 50,
        "variables/variables.index": f"index {seed}".encode(),
        "variables/variables.data-00000-of-00001": hashlib.sha256(seed.encode()).digest() * 4000,
    }
    for i in range(extra):
        files[f"assets/file{i:03d}.txt"] = f"asset {i} of {seed}\n".encode()
    return files


# -- storage ---------------------------------------------------------------------------
class StorageServer(BackgroundServer):
    def __init__(self, lifetime: float = 3600.0) -> None:
        super().__init__()
        self.handler = _StorageHandler
        self.blobs: dict[str, bytes] = {}
        self.digests: dict[str, tuple[str, str]] = {}  # blob -> (base64 md5, ETag)
        self.lifetime = lifetime
        self.refuse = 0  # answer 403 to this many next requests
        self.corrupt = 0  # flip a byte in this many next bodies (md5 still the real one's)
        self.drop = 0  # cut this many next bodies in half and close the connection
        # URLs signed from now on expire after answering this many GETs (a signature that
        # runs out in the middle of a download), until one has refused a request: then None
        self.expire_after: Optional[int] = None
        self._uses: dict[str, int] = {}  # signature -> GETs it may still answer
        self.seen: list[Seen] = []
        self.delay = 0.0  # seconds before each answer (a far host's round trip)
        self.per_conn = 0  # bytes/s each response is paced to (0: as fast as it goes)
        self.ranges = False  # single ranges (206), a strong ETag and Accept-Ranges
        self._link = Link(0)

    def far(self, delay: float, per_conn: int, link: int) -> None:
        """Answer like storage far away: ``delay`` s before each answer, each body paced to
        ``per_conn`` bytes/s, all of them sharing ``link`` bytes/s; ranges served."""
        self.delay, self.per_conn, self.ranges, self._link = delay, per_conn, True, Link(link)

    def sign(self, blob_id: str, data: bytes, lifetime: Optional[float] = None) -> str:
        if self.blobs.get(blob_id) is not data:  # digests once per blob, not per request
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's
            self.digests[blob_id] = (md5, f'"{hashlib.sha256(data).hexdigest()[:32]}"')
        self.blobs[blob_id] = data
        expires = int(time.time() + (self.lifetime if lifetime is None else lifetime))
        sig = hmac.new(SECRET, f"{blob_id}:{expires}".encode(), "sha256").hexdigest()
        with self._lock:
            if self.expire_after is not None:
                # a fresh signature even within the same second as another
                expires += len(self._uses) + 1
                sig = hmac.new(SECRET, f"{blob_id}:{expires}".encode(), "sha256").hexdigest()
                self._uses[sig] = self.expire_after
        query = urlencode({"X-Goog-Expires": expires, "X-Goog-Signature": sig})
        return f"http://127.0.0.1:{self.port}/blob/{blob_id}?{query}"


class _StorageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TrackedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: StorageServer = self.server.owner  # type: ignore[assignment]
        with owner._lock:
            owner.seen.append(
                Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
            )
        refuse, corrupt, drop = (_use(owner, name) for name in ("refuse", "corrupt", "drop"))
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        blob_id = url.path.removeprefix("/blob/")
        data = owner.blobs.get(blob_id)
        try:
            expires = int(query.get("X-Goog-Expires", "0"))
        except ValueError:
            expires = 0
        good = hmac.new(SECRET, f"{blob_id}:{expires}".encode(), "sha256").hexdigest()
        expired = expires < time.time()
        with owner._lock:
            uses = owner._uses.get(query.get("X-Goog-Signature", ""))
            if uses is not None:
                expired = expired or uses <= 0
                owner._uses[query.get("X-Goog-Signature", "")] = uses - 1
                if uses <= 0:
                    owner.expire_after = None  # one URL ran out: fresh ones last
        if (
            refuse
            or data is None
            or expired
            or not hmac.compare_digest(good, query.get("X-Goog-Signature", ""))
        ):
            code = "ExpiredToken" if expired and not refuse else "SignatureDoesNotMatch"
            body = f"<?xml version='1.0'?><Error><Code>{code}</Code></Error>".encode()
            self.send_response(400 if code == "ExpiredToken" else 403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        md5, etag = owner.digests[blob_id]
        if corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if owner.delay and owner._stopping.wait(owner.delay):
            return
        asked = self.headers.get("Range", "") if owner.ranges else ""
        if asked and if_range_fresh(self.headers.get("If-Range", etag), etag, None):
            span = parse_range(asked, len(data))
        else:
            span = None
        first, last = span if isinstance(span, tuple) else (0, len(data) - 1)
        self.send_response(206 if isinstance(span, tuple) else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last + 1 - first))
        self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={md5}")
        if owner.ranges:
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
        if isinstance(span, tuple):
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.end_headers()
        if drop:
            _half_and_close(self, data)
            return
        self._paced(owner, memoryview(data)[first : last + 1])

    def _paced(self, owner: StorageServer, body: memoryview) -> None:
        if not owner.per_conn:
            self.wfile.write(body)
            return
        piece = max(1024, owner.per_conn // 50)
        began = time.monotonic()
        for sent in range(0, len(body), piece):
            owner._link.take(len(body[sent : sent + piece]))
            self.wfile.write(body[sent : sent + piece])
            wait = began + (sent + piece) / owner.per_conn - time.monotonic()
            if wait > 0 and owner._stopping.wait(wait):
                return


def _use(owner: BackgroundServer, counter: str) -> bool:
    """Whether a fault counter (``corrupt``, ``drop``...) applies to this answer; used up."""
    with owner._lock:
        left = int(getattr(owner, counter))
        setattr(owner, counter, max(0, left - 1))
    return left > 0


def _half_and_close(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Half the promised body, then the connection closed: a transfer cut short."""
    handler.wfile.write(body[: len(body) // 2])
    handler.wfile.flush()
    handler.close_connection = True


class Link:
    """One budget of bytes/s for every response together (the user's link); 0: none."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.free_at = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            self.free_at = max(self.free_at, now) + n / self.rate
            wait = self.free_at - now - 0.05  # a little burst, as a router's queue allows
        if wait > 0:
            time.sleep(wait)


# -- Kaggle's API and web pages ----------------------------------------------------------
@dataclass
class Accounts:
    tokens: set[str] = field(default_factory=set)  # Bearer tokens
    keys: dict[str, str] = field(default_factory=dict)  # username -> key (Basic)
    accepted_terms: set[str] = field(default_factory=set)  # tokens / usernames


class KaggleServer(BackgroundServer):
    def __init__(self, storage: StorageServer) -> None:
        super().__init__()
        self.handler = _KaggleHandler
        self.storage = storage
        self.models: list[KaggleModel] = []
        self.accounts = Accounts()
        self.seen: list[Seen] = []
        self.rpc_missing = False  # listing and download routes answer a bare 404 (older API)
        self.direct = False  # downloads answer 200 with the bytes, not a redirect to storage
        self.delay = 0.0  # seconds before each API answer (a far host's round trip)
        self.page_cap = 0  # list at most this many files a page (0: as asked), as for big versions
        self.corrupt = 0  # direct: flip a byte in this many next bodies (md5 the real one's)
        self.drop = 0  # direct: cut this many next bodies in half and close the connection

    def add(self, model: KaggleModel) -> KaggleModel:
        self.models.append(model)
        return model

    def find(self, owner: str, model: str, framework: str, variation: str) -> Optional[KaggleModel]:
        return next((m for m in self.models if m.matches(owner, model, framework, variation)), None)

    def calls(self, name: str) -> int:
        return sum(1 for s in self.seen if s.path.endswith("/" + name) or name in s.path)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _KaggleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TrackedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> KaggleServer:
        return self.server.owner  # type: ignore[return-value]

    def _path(self) -> str:
        """Absolute-form (through a proxy) or origin-form request target -> path + query."""
        target = self.path
        if target.startswith("http://"):
            parts = urlsplit(target)
            return parts.path + (f"?{parts.query}" if parts.query else "")
        return target

    def _forwarded(self) -> bool:
        """As a proxy, relay requests for other loopback hosts (requests keeps using the
        proxy after a redirect to the storage server); True when this request was one.
        Requests for ``www.kaggle.com`` are answered here too: code that recognises Kaggle
        by its production host name (a mirror's Kaggle upstream) reaches these pages."""
        parts = urlsplit(self.path)
        mine = ("localhost", "www.kaggle.com", None)
        if not self.path.startswith("http://") or parts.hostname in mine:
            return False
        if parts.hostname != "127.0.0.1":
            self._send(403, b"this test proxy only reaches loopback", "text/plain")
            return True
        conn = http.client.HTTPConnection("127.0.0.1", parts.port or 80, timeout=30)
        try:
            skip = {"proxy-connection", "connection", "keep-alive", "proxy-authorization"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            conn.request(self.command, self._path(), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            relay = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")
            }
            ctype = relay.pop("Content-Type", "application/octet-stream")
            self._send(resp.status, body, ctype, relay)
        finally:
            conn.close()
        return True

    def _record(self, body: bytes) -> None:
        with self.owner._lock:
            self.owner.seen.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )

    def _send(
        self, status: int, body: bytes, ctype: str, headers: Optional[dict[str, str]] = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _who(self) -> tuple[bool, Optional[str]]:
        """(credentials valid or absent, identity); (False, None) for wrong credentials."""
        auth = self.headers.get("Authorization", "")
        accounts = self.owner.accounts
        if not auth:
            return True, None
        if auth.startswith("Bearer "):
            token = auth[7:]
            return (True, token) if token in accounts.tokens else (False, None)
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False, None
            return (True, user) if accounts.keys.get(user) == key else (False, None)
        return False, None

    def _allowed(self, model: KaggleModel) -> bool:
        valid, who = self._who()
        if not valid:
            self._error(401, "Unauthenticated: the credentials are not valid")
            return False
        if model.gated and who not in self.owner.accounts.accepted_terms:
            self._error(403, "Permission 'models.get' was denied: accept the model's terms")
            return False
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._record(body)
        if self.owner.delay and self.owner._stopping.wait(self.owner.delay):
            return
        path = self._path()
        match = re.fullmatch(r"(?:/api)?/v1/models\.ModelApiService/(\w+)", path)
        if match is None:
            self._send(404, b"no such route", "text/plain")
            return
        try:
            req = json.loads(body)
        except ValueError:
            self._error(400, "bad JSON")
            return
        method = match.group(1)
        missing = ("DownloadModelInstanceVersion", "ListModelInstanceVersionFiles")
        if method in missing and self.owner.rpc_missing:
            self._send(404, b"Not Found", "text/html")
            return
        model = self.owner.find(
            req.get("ownerSlug", ""),
            req.get("modelSlug", ""),
            enum_id(req.get("framework", "")),
            req.get("instanceSlug", ""),
        )
        if model is None:
            self._error(404, "Model instance not found")
            return
        if not self._allowed(model):
            return
        if method == "GetModelInstance":
            self._json(
                200,
                {
                    "id": 7,
                    "slug": model.variation,
                    "versionNumber": model.latest,
                    "framework": req.get("framework"),
                },
            )
            return
        version = req.get("versionNumber") or 0
        if version not in model.versions:
            self._error(404, f"Version {version} not found")
            return
        files = model.versions[version]
        if method == "ListModelInstanceVersionFiles":
            size = int(req.get("pageSize") or 20)
            size = min(size, self.owner.page_cap or size)
            start = int(req.get("pageToken") or 0)
            names = sorted(files)[start : start + size]
            token = str(start + size) if start + size < len(files) else ""
            self._json(
                200,
                {
                    "files": [{"name": n, "size": len(files[n])} for n in names],
                    "nextPageToken": token,
                },
            )
            return
        if method == "DownloadModelInstanceVersion":
            self._redirect_to_blob(model, version, req.get("path"))
            return
        self._error(404, f"unknown method {method}")

    def _redirect_to_blob(self, model: KaggleModel, version: int, path: Optional[str]) -> None:
        files = model.versions[version]
        key = f"{model.owner}-{model.model}-{fw_id(model.framework)}-{model.variation}-{version}"
        if path and path not in files:
            self._error(404, f"no file {path}")
            return
        data = files[path] if path else model.archive(version)
        if self.owner.direct:
            self._send_bytes(data)
            return
        url = self.owner.storage.sign(f"{key}/{path}" if path else f"{key}.tar.gz", data)
        self._send(302, b"", "text/plain", {"Location": url})

    def _send_bytes(self, data: bytes) -> None:
        """The download call answered with the bytes themselves (200), md5 declared."""
        corrupt, drop = _use(self.owner, "corrupt"), _use(self.owner, "drop")
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's own
        body = bytes([data[0] ^ 0xFF]) + data[1:] if corrupt else data
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={md5}")
        self.end_headers()
        if drop:
            _half_and_close(self, body)
            return
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self._forwarded():
            return
        self._record(b"")
        path = self._path()
        url = urlsplit(path)
        legacy = re.fullmatch(
            r"/api/v1/models/([^/]+)/([^/]+)/([^/]+)/([^/]+)/(\d+)/download", url.path
        )
        if legacy:
            model = self.owner.find(*legacy.groups()[:4])
            if model is None or int(legacy.group(5)) not in model.versions:
                self._error(404, "not found")
                return
            if self._allowed(model):
                self._redirect_to_blob(model, int(legacy.group(5)), None)
            return
        parts = url.path.strip("/").split("/")
        query = dict(parse_qsl(url.query))
        if parts[0] == "models" and len(parts) == 6 and query.get("tf-hub-format") == "compressed":
            model = self.owner.find(*parts[1:5])
            if model is not None and parts[5].isdigit() and int(parts[5]) in model.versions:
                if self._allowed(model):
                    self._redirect_to_blob(model, int(parts[5]), None)
                return
            self._send(404, HTML, "text/html; charset=utf-8")
            return
        if parts[0] == "models":  # a catalogue or model page: HTML, status 200
            self._send(200, HTML, "text/html; charset=utf-8")
            return
        self._send(404, b"not found", "text/plain")


# -- tfhub.dev-like redirector ------------------------------------------------------------
class Redirector(BackgroundServer):
    """``routes``: tfhub path (``google/nnlm-en-dim128/2``) -> Kaggle model URL, or None
    for a handle that was never migrated (sent to the catalogue page)."""

    def __init__(self, kaggle_web: str = "http://localhost") -> None:
        super().__init__()
        self.handler = _RedirectHandler
        self.routes: dict[str, Optional[str]] = {}
        self.web = kaggle_web
        self.hits = 0


class _RedirectHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TrackedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: Redirector = self.server.owner  # type: ignore[assignment]
        with owner._lock:
            owner.hits += 1
        url = urlsplit(self.path)
        key = url.path.strip("/")
        if key not in owner.routes:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = owner.routes[key]
        query = [*parse_qsl(url.query), ("tfhub-redirect", "true")]
        location = (target or f"{owner.web}/models") + "?" + urlencode(query)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class KaggleWorld:
    """The three servers together, plus the environment that points clients at them."""

    def __init__(self) -> None:
        self.storage = StorageServer()
        self.kaggle = KaggleServer(self.storage)
        self.tfhub = Redirector()

    def __enter__(self) -> KaggleWorld:
        self.storage.start()
        self.kaggle.start()
        self.tfhub.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.tfhub.stop()
        self.kaggle.stop()
        self.storage.stop()

    def use(self, monkeypatch: Any, tmp_path: Any) -> None:
        """Point this test's process (and the children it starts) at the started servers:
        a home of its own (no real credentials), kagglehub's cache under ``tmp_path``,
        short retry pauses, and :meth:`env`."""
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
        monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    def env(self) -> dict[str, str]:
        """kagglesdk's LOCALHOST hosts, reached through the API server acting as the proxy;
        loopback addresses (storage, redirector) go direct."""
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "http_proxy": self.kaggle.proxy,
            "HTTP_PROXY": self.kaggle.proxy,
            "no_proxy": "127.0.0.1",
            "NO_PROXY": "127.0.0.1",
        }

    def tfhub_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.tfhub.port}/{path}"
