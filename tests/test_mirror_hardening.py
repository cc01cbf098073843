"""The mirror under an operator's load and mistakes (issue rows F1-F23), as real processes.

Each test reproduces one way a mirror in front of a cluster used to fail (concurrent misses
answered 500, eviction racing a send, a fill writing through a symlink, two kinds of request
sharing one stored name, unstorable names fetched anyway...) and checks it cannot happen
again. Servers run on loopback and are stopped by their own process handles.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3

from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer
from tests.support.mirror import ServeProcess


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


def test_f3_concurrent_misses_of_different_models_never_500(
    model_server: ModelServer, store: Path
) -> None:
    bodies = {i: make_tar([M("x", os.urandom(300_000))], compression=None) for i in range(10)}
    for i, body in bodies.items():
        model_server.add(f"/m{i}/1", body)
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
    bodies = {i: make_tar([M("x", os.urandom(100_000))], compression=None) for i in range(40)}
    for i, body in bodies.items():
        model_server.add(f"/m{i}/1", body)
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
