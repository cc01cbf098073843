"""A file server that answers like a far CDN: per-connection cap, shared link, slow answers.

The kernel of a small test machine often has no ``netem`` qdisc, and a loopback link is
far faster than what users have. What limits a download from a far CDN or a signed
object-store URL is (1) each TCP connection's own ceiling (window over round-trip time,
or the provider's per-connection shaping), (2) the user's link as a whole, and (3) the
time before each answer (a round trip plus the server's own time), paid again for every
request. This server emulates the three: every response is paced to ``--per-conn``
bytes/s, all responses together draw from one token bucket of ``--link`` bytes/s, and
each answer waits ``--delay`` seconds before its status line.

It serves the files under ROOT with ``Content-Length``, a strong ``ETag``,
``Accept-Ranges: bytes`` and single ``Range`` requests (206), keeps connections alive, and
sends bodies with ``sendfile`` so the server costs little CPU. A model handle works as a
path: ``/bench/weights-200mb?tf-hub-format=compressed`` serves
``ROOT/bench/weights-200mb.tar.gz``. The first stdout line is
``serving ROOT at http://127.0.0.1:PORT/`` (what ``resolve.procs.Server`` waits for).

Standalone::

    python benchmarks/_farlink.py benchmarks/out/archives --per-conn 20M --link 160M \
        --delay 0.1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

PIECE = 64 * 1024  # bytes per sendfile call: the pacing granularity
MIB = 1024 * 1024


class Link:
    """One token bucket for every response: the user's link. A sender reserves its bytes
    (the balance may go negative) and sleeps until the bucket has refilled past them, so
    connections share the link first come, first served, as a queue on a router does."""

    def __init__(self, rate: float, burst: int = 256 * 1024) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FarServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.count_request()
        path = self._file()
        if self.server.delay > 0:
            time.sleep(self.server.delay)  # the round trip and the server's own time
        if path is None:
            self._plain(404, b"not found\n")
            return
        size = os.path.getsize(path)
        etag = srv.etag(path)
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start = max(0, size - int(m.group(2)))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.flush()
        self._send(path, start, end + 1)

    def _file(self) -> Optional[str]:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if ".." in rel.split("/"):
            return None
        base = os.path.join(self.server.root, *rel.split("/"))
        for candidate in (base, base + ".tar.gz"):
            if os.path.isfile(candidate):
                return candidate
        return None

    def _send(self, path: str, start: int, stop: int) -> None:
        srv = self.server
        sock = self.connection.fileno()
        began, sent = time.monotonic(), 0
        with open(path, "rb") as f:
            pos = start
            while pos < stop:
                n = min(PIECE, stop - pos)
                srv.link.take(n)
                if srv.per_conn > 0:
                    ahead = began + (sent + n) / srv.per_conn - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                try:
                    done = os.sendfile(sock, f.fileno(), pos, n)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                if done == 0:
                    self.close_connection = True
                    return
                pos += done
                sent += done

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FarServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: str, per_conn: float, link: float, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = os.path.abspath(root)
        self.per_conn = per_conn
        self.link = Link(link)
        self.delay = delay
        self.requests = 0
        self._etags: dict[tuple[str, float, int], str] = {}
        self._lock = threading.Lock()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def etag(self, path: str) -> str:
        st = os.stat(path)
        key = (path, st.st_mtime, st.st_size)
        with self._lock:
            tag = self._etags.get(key)
        if tag is None:
            digest = hashlib.sha256(f"{key}".encode()).hexdigest()[:24]
            tag = f'"{digest}"'
            with self._lock:
                self._etags[key] = tag
        return tag


def parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 20M = 20 MiB/s)")
    mult = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[m.group(2).lower()]
    return float(m.group(1)) * mult


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("root")
    p.add_argument("--per-conn", type=parse_rate, default=20 * MIB, help="bytes/s (20M)")
    p.add_argument("--link", type=parse_rate, default=160 * MIB, help="bytes/s (160M)")
    p.add_argument("--delay", type=float, default=0.1, help="seconds before each answer")
    args = p.parse_args()
    server = FarServer(args.root, args.per_conn, args.link, args.delay)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving {args.root} at http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"requests: {server.requests}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
