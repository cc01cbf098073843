"""A tiny HTTP server that generates a SavedModel-shaped ``.tar.gz`` on the fly.

Used by ``bench_resolve.py --streamed-gb N``: the archive is never stored anywhere, so a
multi-GB cold resolve can be measured without a multi-GB file on the serving side. Only
``GET /gen/model?tf-hub-format=compressed`` is answered (anything else: 404), with
``Transfer-Encoding: chunked`` and no ``Content-Length``, ``ETag`` or ``Accept-Ranges``:
the client must take it as one plain stream.

The tar stream holds ``saved_model.pb`` (small), ``variables/variables.data-00000-of-00001``
(``data_bytes`` of incompressible-looking bytes: one 64 MiB block of ``os.urandom`` repeated,
each 1 MiB slice prefixed with an 8-byte counter, so it costs a copy, not a random number
generator) and a small, compressible ``assets/vocab.txt``. It is compressed with
``zlib.compressobj(level, DEFLATED, 31)`` (gzip wrapper); level 0 keeps the generator far
faster than any client.

Standalone (what :class:`GenServerProcess` runs; also handy with curl)::

    python benchmarks/_genserver.py --gb 1 --port 8123
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

PATH = "/gen/model"
BLOCK = 64 * 1024 * 1024  # the random block that is repeated
SLICE = 1024 * 1024  # each slice gets its own 8-byte counter prefix
TAR_BLOCK = 512
MTIME = 1_700_000_000
DATA_NAME = "variables/variables.data-00000-of-00001"


def small_files() -> dict[str, bytes]:
    """The small members, same bytes every time (the big one is generated)."""
    pb = b"".join(
        b"\n\x12model/layer_%03d/MatMul\x12\x06MatMul*\x0b\n\x05dtype\x12\x020\x01" % i
        for i in range(1500)
    )
    vocab = b"".join(b"tok%05d ##%s\t%d\n" % (i, b"abcdefgh"[i % 8 :], i) for i in range(50_000))
    return {"saved_model.pb": pb, "assets/vocab.txt": vocab}


def manifest(data_bytes: int) -> dict[str, int]:
    """Member path -> size of every regular file the archive holds."""
    files = small_files()
    return {
        "saved_model.pb": len(files["saved_model.pb"]),
        DATA_NAME: data_bytes,
        "assets/vocab.txt": len(files["assets/vocab.txt"]),
    }


def _header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    # PAX: sizes of 8 GiB and more get a pax "size" record instead of overflowing ustar.
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % TAR_BLOCK)


def tar_pieces(data_bytes: int, block: bytes) -> Iterator[bytes]:
    """The uncompressed tar stream, in pieces of at most about 1 MiB."""
    files = small_files()
    yield _header("variables", 0, directory=True)
    yield _header("assets", 0, directory=True)
    pb = files["saved_model.pb"]
    yield _header("saved_model.pb", len(pb)) + pb + _pad(len(pb))
    yield _header(DATA_NAME, data_bytes)
    view = memoryview(block)
    left, counter = data_bytes, 0
    while left > 0:
        off = (counter * SLICE) % len(block)
        n = min(SLICE, left)
        piece = b"".join((counter.to_bytes(8, "little"), view[off + 8 : off + SLICE]))
        yield piece[:n] if n < len(piece) else piece
        left -= n
        counter += 1
    yield _pad(data_bytes)
    vocab = files["assets/vocab.txt"]
    yield _header("assets/vocab.txt", len(vocab)) + vocab + _pad(len(vocab))
    yield b"\0" * (2 * TAR_BLOCK)  # end-of-archive


def gzip_pieces(data_bytes: int, level: int, block: bytes) -> Iterator[bytes]:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    for piece in tar_pieces(data_bytes, block):
        out = comp.compress(piece)
        if out:
            yield out
    yield comp.flush()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench-genserver"
    gen: GenServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        gen = self.gen
        if self.path.split("?", 1)[0] != PATH:
            body = b"only " + PATH.encode() + b" is served here\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with gen.lock:
            gen.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            for out in gzip_pieces(gen.data_bytes, gen.level, gen.block):
                if not out:
                    continue
                self.wfile.write(b"%x\r\n" % len(out))
                self.wfile.write(out)
                self.wfile.write(b"\r\n")
                sent += len(out)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            with gen.lock:
                gen.aborted += 1
            return
        with gen.lock:
            gen.sent_bytes = sent


class GenServer:
    """``with GenServer(data_bytes) as g: g.url`` serves the generated archive from a thread
    on 127.0.0.1, port chosen by the OS; it is shut down when the block exits."""

    def __init__(self, data_bytes: int, level: int = 0, port: int = 0) -> None:
        self.data_bytes = data_bytes
        self.level = level
        self.port = port
        self.block = b""
        self.lock = threading.Lock()
        self.requests = 0  # GETs of the archive (more than one: the client restarted)
        self.aborted = 0  # responses cut by the client
        self.sent_bytes = 0  # compressed bytes of the last complete response
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def handle(self) -> str:
        """The model handle (clients append ``?tf-hub-format=compressed``)."""
        return self.base + PATH

    def start(self) -> None:
        self.block = os.urandom(BLOCK)
        handler = type("Handler", (_Handler,), {"gen": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="genserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.block = b""

    def __enter__(self) -> GenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GenServerProcess:
    """The same server in a child process (``python _genserver.py``), so the 64 MiB block
    and the generator's buffers stay out of the caller: on Linux a child's ``ru_maxrss``
    starts at the peak RSS of the process that spawned it. Counters arrive on stop."""

    def __init__(self, python: str, data_bytes: int, level: int = 0) -> None:
        self.argv = [python, os.path.abspath(__file__), "--bytes", str(data_bytes)]
        self.argv += ["--level", str(level)]
        self.proc: Optional[subprocess.Popen[str]] = None
        self.handle = ""
        self.stats: dict[str, int] = {}

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("HANDLE "):
            self.stop()
            raise RuntimeError(f"the generator server did not start: {line!r}")
        self.handle = line.split()[1]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            if line.startswith("STATS "):
                self.stats = json.loads(line[len("STATS ") :])

    def __enter__(self) -> GenServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--gb", type=float, default=1.0, help="size of the variables file, GB")
    size.add_argument("--bytes", type=int, default=None, help="... or exactly, in bytes")
    p.add_argument("--level", type=int, default=0, help="zlib level (default 0)")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    data_bytes = a.bytes if a.bytes is not None else int(a.gb * 1e9)
    with GenServer(data_bytes, a.level, a.port) as g:
        try:
            print(f"HANDLE {g.handle} (append ?tf-hub-format=compressed)", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            with g.lock:
                stats = {"requests": g.requests, "aborted": g.aborted, "sent_bytes": g.sent_bytes}
            print("STATS " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
