"""The mirror under an operator's load and mistakes (issue rows F1-F23), as real processes.

Each test reproduces one way a mirror in front of a cluster used to fail (concurrent misses
answered 500, eviction racing a send, a fill writing through a symlink, two kinds of request
sharing one stored name, unstorable names fetched anyway...) and checks it cannot happen
again. Servers run on loopback and are stopped by their own process handles.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3

from tests.support.archives import M, make_tar
from tests.support.httpserver import Fault, ModelServer
from tests.support.mirror import SRC, ServeProcess
from tests.support.procs import run_cli


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "mirror"
    path.mkdir()
    return path


def mirror(store: Path, upstream: ModelServer, *args: str) -> ServeProcess:
    env = dict(os.environ, HUBCACHE_RETRIES="1", HUBCACHE_RETRY_BACKOFF="0.05")
    return ServeProcess(str(store), "--upstream", upstream.url("/"), *args, env=env)


def fetch_all(url: str, paths: list[str], workers: int) -> list[tuple[str, int, bytes]]:
    """GET every path at once (one connection each): (path, status, body)."""
    go = threading.Barrier(min(workers, len(paths)))

    def one(path: str) -> tuple[str, int, bytes]:
        with urllib3.PoolManager(retries=False, timeout=60) as http:
            try:
                go.wait(10)
            except threading.BrokenBarrierError:
                pass
            r = http.request("GET", url.rstrip("/") + path)
            return path, r.status, r.data

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


def add_models(upstream: ModelServer, count: int, size: int) -> dict[int, bytes]:
    """``/m<i>/1`` for i < count on the upstream, each a tar of ``size`` random bytes."""
    bodies = {i: make_tar([M("x", os.urandom(size))], compression=None) for i in range(count)}
    for i, body in bodies.items():
        upstream.add(f"/m{i}/1", body)
    return bodies


def test_f3_concurrent_misses_of_different_models_never_500(
    model_server: ModelServer, store: Path
) -> None:
    bodies = add_models(model_server, 10, 300_000)
    with mirror(store, model_server) as server:
        paths = [f"/m{i}/1?tf-hub-format=compressed" for i in range(10) for _ in range(5)]
        results = fetch_all(server.url, paths, workers=50)
        bad = [(p, s) for p, s, _ in results if s != 200]
        assert not bad, (bad, server.stderr[-2000:])
        for path, _, body in results:
            assert body == bodies[int(path[2 : path.index("/", 1)])]
        for i in range(10):
            assert model_server.count(f"/m{i}/1") == 1


def test_f9_eviction_never_404s_or_500s_an_archive_being_sent(
    model_server: ModelServer, store: Path
) -> None:
    bodies = add_models(model_server, 40, 100_000)
    size = len(bodies[0])
    bad: list[tuple[str, int]] = []
    stop = time.monotonic() + 6
    filled = [0]

    def filler(url: str) -> None:
        with urllib3.PoolManager(retries=False, timeout=30) as http:
            for i in range(40):
                if time.monotonic() > stop:
                    return
                r = http.request("GET", f"{url}m{i}/1?tf-hub-format=compressed")
                if r.status != 200 or r.data != bodies[i]:
                    bad.append((f"fill m{i}", r.status))
                filled[0] = i

    def reader(url: str) -> None:
        with urllib3.PoolManager(retries=False, timeout=30) as http:
            while time.monotonic() < stop:
                i = max(0, filled[0] - 1)
                r = http.request("GET", f"{url}m{i}/1?tf-hub-format=compressed")
                if r.status != 200 or r.data != bodies[i]:
                    bad.append((f"read m{i}", r.status))

    with mirror(store, model_server, "--max-size", str(2 * size)) as server:
        threads = [threading.Thread(target=filler, args=(server.url,))]
        threads += [threading.Thread(target=reader, args=(server.url,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not bad, (bad[:20], len(bad), server.stderr[-2000:])


def test_f10_a_fill_never_writes_through_a_symlink_in_dir(
    model_server: ModelServer, store: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1.tar").write_bytes(b"precious")
    os.symlink(outside, store / "evil")  # a folder link: /evil/1 would be kept through it
    (store / "m").mkdir()
    os.symlink(outside / "1.tar", store / "m" / "1.tar")  # the name /m/1 is kept under
    os.symlink(outside, store / ".hubcache-archives")  # where archive paths are kept
    body = make_tar([M("x", b"y" * 1000)], compression=None)
    for path in ("/evil/1", "/m/1", "/a.tar"):
        model_server.add(path, body)
    with mirror(store, model_server) as server:
        for path in ("/evil/1?tf-hub-format=compressed", "/m/1?tf-hub-format=compressed"):
            r = server.get(path)
            assert r.status == 403, (path, r.status, r.data[:300])
            assert b"symbolic link" in r.data
        assert server.get("/a.tar").status == 403
    assert sorted(os.listdir(outside)) == ["1.tar"]
    assert (outside / "1.tar").read_bytes() == b"precious"
    for path in ("/evil/1", "/m/1", "/a.tar"):
        assert model_server.count(path) == 0


def test_f12_archive_paths_and_model_paths_keep_separate_stored_names(
    model_server: ModelServer, store: Path
) -> None:
    model = make_tar([M("model", b"m" * 1000)], compression=None)
    other = make_tar([M("file", b"f" * 1000)], compression=None)
    model_server.add("/m/f/1", model)
    model_server.add("/m/f/1.tar", other)
    with mirror(store, model_server) as server:
        assert server.get("/m/f/1?tf-hub-format=compressed").data == model
        assert server.get("/m/f/1.tar").data == other
        assert server.get("/m/f/1?tf-hub-format=compressed").data == model
        assert server.get("/m/f/1.tar").data == other
    assert model_server.count("/m/f/1") == 1 and model_server.count("/m/f/1.tar") == 1


def test_f18_names_that_cannot_be_stored_are_refused_before_any_upstream_fetch(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", b"y" * 1000)], compression=None)
    long_name = "n" * 247
    deep = "/".join(["d"] * 70)
    model_server.add(f"/{long_name}", body)
    model_server.add(f"/{deep}", body)
    with mirror(store, model_server) as server:
        for path in (long_name, deep):
            for _ in range(2):
                r = server.get(f"/{path}?tf-hub-format=compressed")
                assert r.status == 414, (r.status, r.data[:200])
                assert b"cannot be stored" in r.data
    assert model_server.count(f"/{long_name}") == 0
    assert model_server.count(f"/{deep}") == 0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- serving that no client can starve; limits; shutdown ---------------------------------------
BIG = make_tar([M("x", os.urandom(8_000_000))], compression=None)
SMALL = make_tar([M("x", os.urandom(200_000))], compression=None)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / "big.tar").write_bytes(BIG)
    (root / "small.tar").write_bytes(SMALL)
    return root


def stalled_reader(port: int, path: str, ranged: bool = False) -> socket.socket:
    """A client that asks for ``path`` with a tiny receive buffer and never reads. With
    ``ranged``, it asks for ``Range: bytes=0-`` (the whole body as a 206), which the fast
    path hands to aiohttp: both answer through the one sender, and both must be cut."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    extra = "Range: bytes=0-\r\n" if ranged else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    return s


def ends_with(sock: socket.socket, timeout: float) -> str:
    """Read until the connection ends: "fin", "rst", or "open" if it did not end in time."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return "rst"
    except TimeoutError:
        return "open"
    return "fin"


def test_f1_slow_readers_never_starve_a_normal_download(served: Path) -> None:
    with ServeProcess(str(served)) as server:
        slow = [stalled_reader(server.port, "/big.tar") for _ in range(80)]
        try:
            time.sleep(1)
            began = time.monotonic()
            r = server.get("/small.tar", timeout=10)
            took = time.monotonic() - began
            assert r.status == 200 and r.data == SMALL
            assert took < 3, took
        finally:
            for s in slow:
                s.close()


def test_f2_sockets_with_fd_numbers_over_1024_get_whole_bodies(served: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    idle: list[socket.socket] = []
    try:
        with ServeProcess(str(served)) as server:
            for _ in range(1100):  # the server's descriptors for these pass 1024
                idle.append(socket.create_connection(("127.0.0.1", server.port)))
            for _ in range(3):
                r = server.get("/big.tar", timeout=20)
                assert r.status == 200 and len(r.data) == len(BIG)
                assert r.data == BIG
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def dribble(s: socket.socket, give_up: float) -> str:
    """Send a request's headers a byte at a time (never their end) until the server ends
    the connection: "fin", "rst", or "" if it had not after ``give_up`` seconds."""
    began = time.monotonic()
    try:
        for byte in b"GET /small.tar HTTP/1.1\r\nHost: x\r\n":
            s.sendall(bytes([byte]))
            s.settimeout(0.4)
            try:
                if not s.recv(100):
                    return "fin"
            except TimeoutError:
                pass
            if time.monotonic() - began > give_up:
                break
    except (BrokenPipeError, ConnectionResetError):
        return "rst"
    return ""


def test_f7_a_connection_that_sends_its_headers_slowly_is_closed(served: Path) -> None:
    with ServeProcess(str(served), "--header-timeout", "2s") as server:
        s = socket.create_connection(("127.0.0.1", server.port))
        began = time.monotonic()
        try:
            ended = dribble(s, give_up=8)
        finally:
            s.close()
        assert ended, "the slow connection was never closed"
        assert time.monotonic() - began < 5
        assert server.get("/metrics").status == 200
        assert b"hubcache_mirror_header_timeouts_total 1.0" in server.get("/metrics").data


def read_response(
    s: socket.socket, pending: bytearray | None = None
) -> tuple[bytes, dict[str, str], bytes]:
    """One response from a keep-alive connection: (status line, headers, body), framed by
    its Content-Length. ``pending`` holds bytes read past it."""
    data = pending if pending is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, bytes(data)
        data += chunk
    end = data.index(b"\r\n\r\n")
    lines = bytes(data[:end]).split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    del data[: end + 4]
    length = int(headers.get("content-length", "0"))
    while len(data) < length:
        chunk = s.recv(1 << 20)
        assert chunk, len(data)
        data += chunk
    body = bytes(data[:length])
    del data[:length]
    return lines[0], headers, body


def test_the_fast_path_and_aiohttp_answer_alike_on_one_connection(served: Path) -> None:
    """A stored archive's plain GET/HEAD is the fast path's; a Range hands the connection
    to aiohttp. The answers agree, and pipelined requests are answered in order."""
    with ServeProcess(str(served)) as server:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(10)
        try:
            get = b"GET /small.tar HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(get + get)  # pipelined
            pending = bytearray()
            fast = [read_response(s, pending), read_response(s, pending)]
            for status, _, body in fast:
                assert status == b"HTTP/1.1 200 OK" and body == SMALL
            s.sendall(b"GET /small.tar HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n")
            status, ranged, body = read_response(s, pending)
            assert status == b"HTTP/1.1 206 Partial Content" and body == SMALL[10:20]
            assert ranged["content-range"] == f"bytes 10-19/{len(SMALL)}"
            s.sendall(get)  # now aiohttp's connection
            status, slow, body = read_response(s, pending)
            assert status == b"HTTP/1.1 200 OK" and body == SMALL
            same = {k: v for k, v in fast[0][1].items() if k != "date"}
            assert same == {k: v for k, v in slow.items() if k != "date"}
        finally:
            s.close()
        metrics = server.get("/metrics").data
        assert b'hubcache_mirror_requests_total{code="200"} 3.0' in metrics
        assert b"hubcache_mirror_hits_total 4.0" in metrics


def test_the_fast_path_asks_for_the_token_too(served: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha\n")
    with ServeProcess(str(served), "--token-file", str(tokens)) as server:
        assert server.get("/small.tar").status == 401
        assert server.get("/small.tar", {"Authorization": "Bearer nope"}).status == 401
        r = server.get("/small.tar", {"Authorization": "Bearer alpha"})
        assert (r.status, r.data) == (200, SMALL)
        assert server.get("/small.tar", method="HEAD").status == 401


def test_a_keep_alive_connection_idle_past_the_idle_timeout_is_closed(served: Path) -> None:
    with ServeProcess(str(served), "--idle-timeout", "1s") as server:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(6)
        try:
            s.sendall(b"GET /small.tar HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[2] == SMALL
            began = time.monotonic()
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - began < 4
        finally:
            s.close()


@pytest.mark.parametrize("first", ["/healthz", "/small.tar"])  # aiohttp's, the fast path's
def test_f7_the_header_timeout_covers_every_request_of_a_keep_alive_connection(
    served: Path, first: str
) -> None:
    with ServeProcess(str(served), "--header-timeout", "1s") as server:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(5)
        try:
            s.sendall(f"GET {first} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, _ = read_response(s)
            assert status.startswith(b"HTTP/1.1 200")  # kept alive after it
            time.sleep(1.5)  # quiet between requests: the idle timeout's, not this one's
            began = time.monotonic()
            ended = dribble(s, give_up=6)
            assert ended, "the dribbling second request was never cut"
            assert 0.9 < time.monotonic() - began < 3.5
        finally:
            s.close()


@pytest.mark.parametrize("ranged", [False, True], ids=["fast-path", "aiohttp"])
@pytest.mark.parametrize(("drain", "low", "high"), [("2s", 1.8, 3.5), ("0s", 0.0, 1.5)])
def test_f8_shutdown_gives_in_flight_responses_exactly_the_drain_timeout(
    served: Path, drain: str, low: float, high: float, ranged: bool
) -> None:
    server = ServeProcess(str(served), "--drain-timeout", drain)
    try:
        stuck = stalled_reader(server.port, "/big.tar", ranged)
        time.sleep(0.5)
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        took = time.monotonic() - began
        assert server.proc.returncode == 0
        assert low <= took <= high, took
        stuck.close()
    finally:
        server.stop()


def test_a_client_that_leaves_a_waiting_fill_is_not_waited_for_at_shutdown(
    tmp_path: Path,
) -> None:
    """A client waiting on a fill whose upstream has not answered, then gone: the drain does
    not wait for it (it counted as in flight for the whole --drain-timeout, 30 s here). The
    fill itself, still waiting for the upstream's first answer, is given the shutdown's 5 s
    (``Mirror.shutdown``): a request not yet answered has no response to shut."""
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    store = tmp_path / "store"
    store.mkdir()
    upstream = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    server = ServeProcess(str(store), "--upstream", upstream, "--drain-timeout", "30s")
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"GET /m/1?tf-hub-format=compressed HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the fill waits on the silent upstream
        client.close()
        time.sleep(0.3)
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        assert time.monotonic() - began < 10
    finally:
        server.stop()
        silent.close()


def test_f13_a_failed_fill_resets_the_connection(model_server: ModelServer, store: Path) -> None:
    body = make_tar([M("x", os.urandom(400_000))], compression=None)
    model_server.add("/m/1", body, faults=(Fault(drop_after=100_000),))
    with mirror(store, model_server) as server:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /m/1?tf-hub-format=compressed HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ends_with(s, 20) == "rst"
        s.close()
    assert stored_files(store) == []


def test_f22_sigterm_during_a_fill_leaves_no_partial_and_no_lock(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", os.urandom(400_000))], compression=None)
    model_server.add("/m/1", body, faults=(Fault(stall_after=50_000),))
    server = mirror(store, model_server, "--drain-timeout", "1s")
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /m/1?tf-hub-format=compressed HTTP/1.1\r\nHost: x\r\n\r\n")
        partial = store / ".hubcache-partial"
        deadline = time.monotonic() + 20
        while not (partial.exists() and os.listdir(partial)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(partial), "the fill never started"
        began = time.monotonic()
        assert server.stop() == 0, server.stderr[-3000:]
        assert time.monotonic() - began < 5
        s.close()
    finally:
        server.stop()
    left = [os.path.relpath(os.path.join(d, f), store) for d, _, fs in os.walk(store) for f in fs]
    assert left == [], left


def test_f23_client_fields_in_the_access_log_are_escaped(served: Path) -> None:
    with ServeProcess(str(served)) as server:
        server.get("/small.tar", headers={"User-Agent": 'x" 200 0 0.0s "y'})
    line = next(li for li in server.stderr.splitlines() if "small.tar" in li)
    assert line.endswith('"x\\x22 200 0 0.0s \\x22y"'), line
    assert line.count('"') == 4, line


def stored_files(store: Path) -> list[str]:
    return [
        os.path.relpath(os.path.join(d, f), store)
        for d, dirs, fs in os.walk(store)
        for f in fs
        if not os.path.relpath(d, store).startswith(".hubcache-locks")
    ]


def test_f17_a_full_disk_during_a_fill_leaves_no_temp_file(
    model_server: ModelServer, tmp_path: Path
) -> None:
    from tests.test_disk_full import tmpfs

    body = make_tar([M("x", os.urandom(300_000))], compression=None)
    model_server.add("/m/1", body)
    with tmpfs(tmp_path / "full", "2m") as root:
        st = os.statvfs(root)
        free = st.f_bavail * st.f_frsize
        filler = free - (len(body) + 4095) // 4096 * 4096 - 4096  # the archive fits, little else
        (root / "filler").write_bytes(bytes(filler))
        with ServeProcess(str(root), "--upstream", model_server.url("/")) as server:
            try:
                r = server.get("/m/1?tf-hub-format=compressed")
                assert r.status == 502, r.status
            except urllib3.exceptions.ProtocolError:
                pass  # the last byte was held back, then the connection reset: fine
            assert server.get("/healthz").status == 200
        left = [f for d, _, fs in os.walk(root) for f in fs if f != "filler"]
        assert not [f for f in left if f.endswith(".part")], left
        assert not (root / "m" / "1.tar").exists()


# -- start-up refusals, packing, protocol details ------------------------------------------------
def serve_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return run_cli(["serve", *args, "--port", "0"], env, timeout=timeout)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_startup_refuses_what_cannot_work(served: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    up = "http://127.0.0.1:9/"
    refused(serve_cli(""), "DIR is empty")
    refused(serve_cli(str(served), "--host", "not..a.host"), "--host")
    refused(serve_cli(str(served), "--upstream", "http://[::1/"), "not a valid URL")
    refused(serve_cli(str(served), "--upstream", "http://127.0.0.1:99999/"), "99999")
    refused(serve_cli(str(served), "--upstream", "http://h/x?q=1#frag"), "query or fragment")
    for prefix in ("../x", "a b", "/"):
        refused(serve_cli(str(served), "--upstream", f"{prefix}={up}"), "can never match")
    refused(serve_cli(str(served), "--token-file", str(fifo)), "not a regular file")


def test_startup_refuses_an_upstream_that_is_the_server_itself(served: Path) -> None:
    from tests.support.emulators import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    for upstream in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/m/"):
        result = run_cli(
            ["serve", str(served), "--port", str(port), "--upstream", upstream], env, timeout=20
        )
        refused(result, "this server itself")


def test_two_mirrors_pointed_at_each_other_answer_508_not_a_deadlock(
    tmp_path: Path,
) -> None:
    from tests.support.emulators import free_port

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a_port, b_port = free_port(), free_port()
    env = dict(os.environ, HUBCACHE_RETRIES="1", HUBCACHE_RETRY_BACKOFF="0.05")
    up_a, up_b = f"http://127.0.0.1:{b_port}/", f"http://127.0.0.1:{a_port}/"
    a = ServeProcess(str(a_dir), "--upstream", up_a, port=a_port, env=env)
    try:
        with ServeProcess(str(b_dir), "--upstream", up_b, port=b_port, env=env):
            began = time.monotonic()
            r = a.get("/m/1?tf-hub-format=compressed", timeout=20)
            assert r.status == 502, (r.status, r.data)
            assert time.monotonic() - began < 10
    finally:
        a.stop()
    assert '" 508 ' in a.stderr, a.stderr  # A saw its own fill come back through B


KAGGLE_UP = "www.kaggle.com/models/=http://www.kaggle.com/models/"
INSTANCE_CALL = "/api/v1/models.ModelApiService/GetModelInstance"
A_MODEL = b'{"ownerSlug": "o", "modelSlug": "m", "framework": "jax", "instanceSlug": "v"}'


def test_startup_refuses_a_kaggle_api_mirror_that_is_the_server_itself(served: Path) -> None:
    """A mirror of Kaggle whose own HUBCACHE_KAGGLE_API names itself would wait on itself
    for every Kaggle call (a read timeout each): refused at start, the token not shown."""
    from tests.support.emulators import free_port

    port = free_port()
    for api in (f"http://127.0.0.1:{port}", f"http://hubcache:s3cret@localhost:{port}/"):
        env = dict(os.environ, PYTHONPATH=str(SRC), HUBCACHE_KAGGLE_API=api)
        result = run_cli(
            ["serve", str(served), "--port", str(port), "--upstream", KAGGLE_UP], env, timeout=20
        )
        refused(result, "HUBCACHE_KAGGLE_API=", "this server itself")
        assert "s3cret" not in result.stderr


def test_a_kaggle_call_nested_past_the_recursion_limit_is_a_400_not_a_500(
    tmp_path: Path,
) -> None:
    """A POSTed body of 100,000 ``[`` was a RecursionError and a 500 (found from the
    outside; ``_values.parse_json`` now refuses it like any bad JSON)."""
    import urllib.request

    env = dict(os.environ, HUBCACHE_KAGGLE_API="http://127.0.0.1:9", KAGGLE_API_TOKEN="unused")
    with ServeProcess(str(tmp_path), "--upstream", KAGGLE_UP, env=env) as server:
        for body in (b"[" * 100_000, b'{"a": ' * 50_000):
            request = urllib.request.Request(server.url.rstrip("/") + INSTANCE_CALL, data=body)
            try:
                urllib.request.urlopen(request, timeout=20).read()
                status, answer = 200, b""
            except urllib.error.HTTPError as exc:
                status, answer = exc.code, exc.read()
                exc.close()
            assert status == 400 and b'"code": 400' in answer, (status, answer[:200])
        assert "Traceback" not in server.stderr and "RecursionError" not in server.stderr


def test_two_kaggle_mirrors_pointed_at_each_other_answer_at_once(tmp_path: Path) -> None:
    """A's Kaggle calls go to B (its HUBCACHE_KAGGLE_API) and B's to A: the calls carry the
    mirror's Via, so the loop is a 508 where it closes and a quick error for the client,
    not a call that waits on itself until the read timeout."""
    import urllib.request

    from tests.support.emulators import free_port

    a_port, b_port = free_port(), free_port()
    envs = [
        dict(
            os.environ,
            HUBCACHE_KAGGLE_API=f"http://127.0.0.1:{other}",
            HUBCACHE_RETRIES="0",
            HUBCACHE_READ_TIMEOUT="30",
            KAGGLE_API_TOKEN="unused",
        )
        for other in (b_port, a_port)
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = ServeProcess(str(tmp_path / "a"), "--upstream", KAGGLE_UP, port=a_port, env=envs[0])
    try:
        with ServeProcess(str(tmp_path / "b"), "--upstream", KAGGLE_UP, port=b_port, env=envs[1]):
            began = time.monotonic()
            request = urllib.request.Request(a.url.rstrip("/") + INSTANCE_CALL, data=A_MODEL)
            request.add_header("Content-Type", "application/json")
            try:
                urllib.request.urlopen(request, timeout=40).read()
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            assert status == 502, status
            assert time.monotonic() - began < 10
    finally:
        a.stop()


def test_f21_a_second_process_on_one_dir_with_max_size_is_refused(
    model_server: ModelServer, store: Path
) -> None:
    with mirror(store, model_server, "--max-size", "1MB"):
        env = dict(os.environ, PYTHONPATH=str(SRC))
        result = run_cli(
            [
                "serve",
                str(store),
                "--port",
                "0",
                "--upstream",
                model_server.url("/"),
                "--max-size",
                "1MB",
            ],
            env,
            timeout=20,
        )
        refused(result, "already served with --max-size")
    assert not (store / ".hubcache-locks" / "eviction.owner").exists()


def test_workers_share_one_port_and_stop_together(served: Path) -> None:
    server = ServeProcess(str(served), "--workers", "2")
    try:
        kids = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        workers = [int(p) for p in kids.read_text().split()] if kids.exists() else []
        if kids.exists():
            assert len(workers) == 2, workers
        results = fetch_all(server.url, ["/small.tar"] * 40, 20)
        assert all(status == 200 and body == SMALL for _, status, body in results)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        for pid in workers:  # each worker stopped (and was reaped) before the parent
            assert not Path(f"/proc/{pid}").exists(), pid
    finally:
        server.stop()


def sample(text: str, name: str) -> float:
    """The value of one sample in Prometheus' text format (``2.048e+06`` as well)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} not in {text}"
    return float(found.group(1))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_inherited_prometheus_multiproc_dir_is_not_used(
    served: Path, tmp_path: Path, workers: str
) -> None:
    """PROMETHEUS_MULTIPROC_DIR set for another program (or to no folder) is not the
    server's: it starts, counts, and writes nothing there (it was a traceback at start)."""
    other = tmp_path / "other"
    other.mkdir()
    for value in (str(tmp_path / "missing"), str(other)):
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=value)
        with ServeProcess(str(served), "--workers", workers, env=env) as server:
            assert server.get("/small.tar").status == 200
            assert sample(server.get("/metrics").data.decode(), "hubcache_mirror_hits_total") == 1
        assert not list(other.iterdir())


def test_workers_metrics_are_the_whole_servers(served: Path, tmp_path: Path) -> None:
    """With --workers, /metrics sums every worker's counts, whichever worker answers the
    scrape (a scraper's rate() would otherwise see counters jump between workers), and the
    folder the workers share for it is gone after a graceful stop."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = ServeProcess(str(served), "--workers", "2", env=dict(os.environ, TMPDIR=str(tmp)))
    try:
        results = fetch_all(server.url, ["/small.tar"] * 40 + ["/nothing.tar"] * 6, 20)
        assert sum(status == 200 for _, status, _ in results) == 40
        for _ in range(6):  # each on a new connection: either worker may answer
            text = server.get("/metrics").data.decode()
            assert sample(text, "hubcache_mirror_hits_total") == 40, text
            assert sample(text, "hubcache_mirror_served_bytes_total") == 40 * len(SMALL)
            assert sample(text, 'hubcache_mirror_requests_total{code="404"}') == 6
            assert sample(text, 'hubcache_mirror_limit{name="idle_timeout_seconds"}') == 60
            assert sample(text, "hubcache_mirror_stored_bytes") >= 0
        assert [p.name for p in tmp.iterdir() if p.name.startswith("hubcache-metrics")]
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        assert not [p.name for p in tmp.iterdir() if p.name.startswith("hubcache-metrics")]
    finally:
        server.stop()


def worker_pids(server: ServeProcess) -> list[int]:
    kids = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
    return [int(p) for p in kids.read_text().split()]


def wait_for_workers(server: ServeProcess, count: int, gone: set[int]) -> list[int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        if len(pids) == count and not gone & set(pids):
            return pids
        time.sleep(0.05)
    raise AssertionError(f"workers now {worker_pids(server)}, wanted {count} new ones")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_worker_that_dies_is_replaced_and_a_crash_loop_stops_the_mirror(
    served: Path,
) -> None:
    """kill -9 of a worker (the OOM killer) costs the mirror nothing: another starts and
    serves; workers that keep dying stop the mirror with exit 1 and one line per event."""
    server = ServeProcess(str(served), "--workers", "2")
    try:
        first = wait_for_workers(server, 2, set())
        os.kill(first[0], signal.SIGKILL)
        now = wait_for_workers(server, 2, {first[0]})
        assert first[1] in now
        results = fetch_all(server.url, ["/small.tar"] * 20, 10)
        assert all(status == 200 and body == SMALL for _, status, body in results)
        assert server.proc.poll() is None
        killed = {first[0]}
        for _ in range(4):  # five deaths within the window in all
            victim = worker_pids(server)[0]
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
            if len(killed) < 5:
                wait_for_workers(server, 2, killed)
        assert server.proc.wait(20) == 1
        err = server.stderr
        assert "starting another" in err and "stopping the mirror" in err, err
        assert "Traceback" not in err
    finally:
        server.stop()


def test_workers_with_max_size_are_refused(served: Path) -> None:
    up = "http://127.0.0.1:9/"
    refused(
        serve_cli(str(served), "--upstream", up, "--max-size", "1GB", "--workers", "2"),
        "--workers with --max-size",
    )
    refused(serve_cli(str(served), "--workers", "0"), "--workers 0")


def test_a_worker_count_far_past_the_cores_is_refused(served: Path) -> None:
    """``--workers 10000`` (a typo) forked ten thousand servers. Asked for one past the
    limit, in a session of its own: were the check gone, the few servers it forked are
    stopped with their group, never left behind."""
    too_many = 4 * (os.cpu_count() or 1) + 1
    argv = [sys.executable, "-m", "hubcache", "serve", str(served), "--port", "0"]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen(
        [*argv, "--workers", str(too_many)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    refused(subprocess.CompletedProcess(argv, proc.returncode, out, err), f"--workers {too_many}")


def test_f4_f6_packing_only_model_folders_without_dotfiles_and_fresh(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    model = root / "m" / "1"
    model.mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph-v1")
    (model / ".env").write_text("SECRET=1")
    (model / ".git").mkdir()
    (model / ".git" / "config").write_text("x")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a model")
    with ServeProcess(str(root)) as server:
        r = server.get("/m/1?tf-hub-format=compressed")
        assert r.status == 200
        assert tar_names(r.data) == {"saved_model.pb"}
        assert server.get("/notes?tf-hub-format=compressed").status == 404
        assert server.get("/?tf-hub-format=compressed").status == 404
        (model / "saved_model.pb").write_bytes(b"graph-v2, longer")
        r = server.get("/m/1?tf-hub-format=compressed")
        assert tar_member(r.data, "saved_model.pb") == b"graph-v2, longer"


def test_f4_a_long_pack_never_holds_up_other_downloads(tmp_path: Path) -> None:
    root = tmp_path / "models"
    import base64

    for i in range(8):
        folder = root / f"big{i}"
        folder.mkdir(parents=True)  # text-like bytes: slow to compress
        (folder / "saved_model.pb").write_bytes(base64.b64encode(os.urandom(8_000_000)))
    (root / "small.tar").write_bytes(SMALL)
    with ServeProcess(str(root)) as server:
        with ThreadPoolExecutor(16) as pool:
            packs = [
                pool.submit(server.get, f"/big{i % 8}?tf-hub-format=compressed", None, "GET", 120)
                for i in range(16)
            ]
            time.sleep(0.5)
            began = time.monotonic()
            r = server.get("/small.tar", timeout=30)
            took = time.monotonic() - began
            assert r.status == 200 and r.data == SMALL
            for p in packs:
                assert p.result().status == 200
        assert took < 1.0, took


def test_f5_a_mirror_never_packs_its_own_folders(model_server: ModelServer, store: Path) -> None:
    model_server.add("/m/1", make_tar([M("saved_model.pb", b"g")], compression=None))
    with mirror(store, model_server) as server:
        assert server.get("/m/1?tf-hub-format=compressed").status == 200
        (store / "m" / "saved_model.pb").write_bytes(b"planted")  # even a model-like folder
        r = server.get("/m?tf-hub-format=compressed")
        assert r.status == 404, (r.status, r.data[:100])
        assert model_server.count("/m") == 1  # asked upstream, which has none


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` as bytes (no client library rewriting it), read until the server
    closes: (head, body)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        s.settimeout(20)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_f11_http10_clients_get_a_close_delimited_body_during_a_fill(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", os.urandom(300_000))], compression=None)
    model_server.add("/m/1", body, faults=(Fault(chunked=True, rate_limit=len(body)),))
    with mirror(store, model_server) as server:
        request = b"GET /m/1?tf-hub-format=compressed HTTP/1.0\r\nHost: x\r\n\r\n"
        head, got = raw_exchange(server.port, request)
        assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head
        assert b"chunked" not in head.lower()
        assert got == body


def test_f14_a_commented_token_line_is_no_token(served: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("  # comment\nsecret\n")
    with ServeProcess(str(served), "--token-file", str(tokens)) as server:
        assert server.get("/small.tar", {"Authorization": "Bearer # comment"}).status == 401
        assert server.get("/small.tar", {"Authorization": "Bearer secret"}).status == 200


@pytest.mark.parametrize("value", ["bytes=1_0-2_0", "bytes=\u0661-\u0665", "bytes=+1-5"])
def test_f15_range_digits_are_ascii_only(served: Path, value: str) -> None:
    with ServeProcess(str(served)) as server:
        request = f"GET /small.tar HTTP/1.1\r\nHost: x\r\nRange: {value}\r\n"
        head, body = raw_exchange(server.port, request.encode() + b"Connection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == SMALL


def test_f16_if_range_with_the_servers_own_last_modified_matches(served: Path) -> None:
    os.utime(served / "small.tar", ns=(1_700_000_000_700_000_000, 1_700_000_000_700_000_000))
    with ServeProcess(str(served)) as server:
        modified = server.get("/small.tar").headers["Last-Modified"]
        r = server.get("/small.tar", {"Range": "bytes=10-19", "If-Range": modified})
        assert r.status == 206 and r.data == SMALL[10:20]


def test_f20_fills_are_capped_and_the_negative_cache_bounded(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", os.urandom(200_000))], compression=None)
    for i in range(3):
        model_server.add(f"/m{i}/1", body, faults=(Fault(rate_limit=len(body) // 2),))
    with mirror(store, model_server, "--max-fills", "2", "--negative-max", "2") as server:
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(server.get, f"/m{i}/1?tf-hub-format=compressed") for i in (0, 1)]
            time.sleep(0.5)
            r = server.get("/m2/1?tf-hub-format=compressed")
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert all(f.result().status == 200 for f in slow)
        for name in ("a", "b", "c"):
            assert server.get(f"/{name}/1?tf-hub-format=compressed").status == 404
        server.get("/a/1?tf-hub-format=compressed")  # "a" was forgotten: asked again
        server.get("/c/1?tf-hub-format=compressed")  # "c" is remembered
        metrics = server.get("/metrics").data
    assert model_server.count("/a/1") == 2 and model_server.count("/c/1") == 1
    assert b"hubcache_mirror_fills_refused_total 1.0" in metrics


def tar_names(data: bytes) -> set[str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name for m in t.getmembers() if m.isfile()}


def tar_member(data: bytes, name: str) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        f = t.extractfile(name)
        assert f is not None
        return f.read()


def test_f19_head_of_an_uncached_archive_fetches_no_body(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", os.urandom(2_000_000))], compression=None)
    model_server.add("/m/1", body)
    with mirror(store, model_server) as server:
        r = server.get("/m/1?tf-hub-format=compressed", method="HEAD")
        assert r.status == 200 and r.headers["Content-Length"] == str(len(body))
        assert server.get("/gone/1?tf-hub-format=compressed", method="HEAD").status == 404
        metrics = server.get("/metrics").data
    assert stored_files(store) == []
    assert b"hubcache_mirror_upstream_bytes_total 0.0" in metrics


def test_f19_head_asks_the_upstream_for_one_byte_not_the_body(
    model_server: ModelServer, store: Path
) -> None:
    body = make_tar([M("x", os.urandom(300_000))], compression=None)
    model_server.add("/m/1", body)
    model_server.add("/n/1", body, faults=(Fault(ignore_range=True),))  # Range ignored
    with mirror(store, model_server) as server:
        for path in ("/m/1", "/n/1"):
            r = server.get(f"{path}?tf-hub-format=compressed", method="HEAD")
            assert r.status == 200 and r.headers["Content-Length"] == str(len(body)), path
    asked = [r for r in model_server.requests if r.path.startswith(("/m/1", "/n/1"))]
    assert [(r.method, r.headers.get("Range")) for r in asked] == [("GET", "bytes=0-0")] * 2
    assert stored_files(store) == []


@pytest.mark.parametrize("ranged", [False, True], ids=["fast-path", "aiohttp"])
def test_f7_a_client_that_stops_reading_is_cut_after_the_idle_timeout(
    served: Path, ranged: bool
) -> None:
    with ServeProcess(str(served), "--idle-timeout", "2s") as server:
        stuck = stalled_reader(server.port, "/big.tar", ranged)
        try:
            time.sleep(4)  # it reads nothing for twice the limit
            got, ended = 0, "open"
            stuck.settimeout(10)
            try:
                while chunk := stuck.recv(1 << 20):
                    got += len(chunk)
                ended = "fin"
            except ConnectionResetError:
                ended = "rst"
            except TimeoutError:
                pass
            assert ended != "open" and got < len(BIG), (ended, got)
            r = server.get("/small.tar")  # the server itself is fine
            assert r.status == 200 and r.data == SMALL
        finally:
            stuck.close()
