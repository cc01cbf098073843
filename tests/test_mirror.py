"""``hubcache serve DIR --upstream URL``: the pull-through mirror, as real processes.

The upstream is the suite's loopback model host (it counts requests and misbehaves on
demand); the mirror is ``python -m hubcache serve``; clients are hubcache processes or
plain HTTP requests. What must hold: one upstream fetch per archive however many clients
ask at once, every client gets the whole verified archive or a broken connection (never a
short body that looks whole), and DIR only ever holds complete, verified archives.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import urllib3

import hubcache
from tests.support.archives import M, make_tar, strip_trailer
from tests.support.emulators import activate, free_port
from tests.support.httpserver import Fault, ModelServer
from tests.support.mirror import ServeProcess
from tests.support.procs import (
    ARCHIVE,
    EXPECTED,
    FAULTS_SITE,
    child_env,
    finish,
    start_worker,
    tree,
    wait_for,
)

RATE = len(ARCHIVE) // 2  # bytes per second upstream: a fill takes about two seconds


def stored_archives(store: Path) -> dict[str, bytes]:
    """Every file of DIR outside the dot-folders: name -> bytes."""
    out = {}
    for dirpath, dirs, files in os.walk(store):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, store)] = Path(full).read_bytes()
    return out


def assert_stored_whole(store: Path, name: str, body: bytes) -> None:
    files = stored_archives(store)
    assert files[name] == body
    digest = hashlib.sha256(body).hexdigest()
    assert files[name + ".sha256"] == f"{digest}  {os.path.basename(name)}\n".encode()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "mirror"
    path.mkdir()
    return path


def mirror(store: Path | str, upstream: ModelServer, *args: str, **kw: object) -> ServeProcess:
    env = dict(os.environ, HUBCACHE_RETRIES="1", HUBCACHE_RETRY_BACKOFF="0.05")
    env.update(kw.pop("env", {}))  # type: ignore[arg-type]
    return ServeProcess(str(store), "--upstream", upstream.url("/"), *args, env=env, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_32_clients_at_once_one_upstream_fetch(
    model_server: ModelServer, store: Path, tmp_path: Path
) -> None:
    model_server.add("/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE),))
    with mirror(store, model_server) as server:
        go = tmp_path / "go"
        workers = []
        for i in range(32):
            root = tmp_path / f"client{i}"
            root.mkdir()
            workers.append(start_worker(server.url + "m/1", child_env(root), str(go)))
        time.sleep(0.5)
        go.touch()
        for worker in workers:
            code, out, err = finish(worker, timeout=120)
            assert code == 0, err
            assert tree(out.strip()) == EXPECTED
        assert model_server.count("/m/1") == 1
        assert_stored_whole(store, "m/1.tar", ARCHIVE)  # an uncompressed tar keeps .tar


def test_range_during_a_fill_and_the_same_etag_after(
    model_server: ModelServer, store: Path
) -> None:
    model_server.add("/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE),))
    with mirror(store, model_server) as server:
        bodies: list[bytes] = []
        first = threading.Thread(
            target=lambda: bodies.append(server.get("/m/1?tf-hub-format=compressed").data)
        )
        first.start()
        wait_for(lambda: model_server.count("/m/1") == 1, what="the fill to start")
        part = server.get("/m/1?tf-hub-format=compressed", headers={"Range": "bytes=100-199"})
        assert (part.status, part.data) == (206, ARCHIVE[100:200])
        etag = part.headers["ETag"]
        first.join(30)
        assert bodies == [ARCHIVE]
        after = server.get(
            "/m/1?tf-hub-format=compressed", headers={"Range": "bytes=5-9", "If-Range": etag}
        )
        assert (after.status, after.data, after.headers["ETag"]) == (206, ARCHIVE[5:10], etag)
        assert model_server.count("/m/1") == 1


def test_killed_mid_fill_then_restarted_clients_retry_and_succeed(
    model_server: ModelServer, store: Path, tmp_path: Path
) -> None:
    model_server.add("/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE // 2, times=1),))
    port = free_port()
    server = mirror(store, model_server, port=port)
    root = tmp_path / "client"
    root.mkdir()
    worker = start_worker(
        server.url + "m/1", child_env(root, HUBCACHE_RETRIES="8", HUBCACHE_RETRY_BACKOFF="0.2")
    )
    try:
        partial = store / ".hubcache-partial"
        wait_for(
            lambda: (
                partial.is_dir()
                and any(p.stat().st_size > len(ARCHIVE) // 10 for p in partial.iterdir())
            ),
            what="part of the archive to arrive",
        )
        server.kill()
        assert stored_archives(store) == {}  # nothing partial is ever in place
        server = mirror(store, model_server, port=port)
        code, out, err = finish(worker, timeout=90)
        assert code == 0, err
        assert tree(out.strip()) == EXPECTED
        assert_stored_whole(store, "m/1.tar", ARCHIVE)
        assert os.listdir(partial) == []  # the dead process's partial file was removed
    finally:
        server.stop()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=503),
        Fault(drop_after=len(ARCHIVE) // 3),
        Fault(body_override=b"<html>login</html>"),
    ],
    ids=["5xx", "cut-stream", "html"],
)
def test_upstream_failures_reach_the_client_and_nothing_is_stored(
    model_server: ModelServer,
    store: Path,
    cache_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
) -> None:
    model_server.add("/m/1", ARCHIVE, faults=(fault,))
    monkeypatch.setenv("HUBCACHE_RETRIES", "1")
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.05")
    with mirror(store, model_server) as server:
        with pytest.raises(hubcache.HubcacheError):
            hubcache.resolve(server.url + "m/1")
        assert stored_archives(store) == {}
        model_server.faults("/m/1")  # the upstream recovers: the next request starts afresh
        assert tree(hubcache.resolve(server.url + "m/1")) == EXPECTED
        assert_stored_whole(store, "m/1.tar", ARCHIVE)


def test_a_corrupt_archive_breaks_the_connection_and_is_not_kept(
    model_server: ModelServer, store: Path
) -> None:
    good = make_tar([M("saved_model.pb", os.urandom(300_000))], compression="gz")
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    model_server.add("/m/1", bytes(bad), faults=(Fault(rate_limit=200_000),))  # in pieces
    with mirror(store, model_server) as server:
        with pytest.raises(urllib3.exceptions.ProtocolError):
            server.get("/m/1?tf-hub-format=compressed")  # never a 200 that looks whole
        wait_for(lambda: "fill of m/1" in server.stderr, what="the failure to be logged")
        assert stored_archives(store) == {}
        model_server.add("/m/1", good)
        assert server.get("/m/1?tf-hub-format=compressed").data == good
        assert_stored_whole(store, "m/1.tar.gz", good)
        server.stop()
        assert "Traceback" not in server.stderr


def test_the_last_byte_waits_until_the_archive_is_verified(
    model_server: ModelServer, store: Path
) -> None:
    """A gzip without its trailer, with the right Content-Length: every byte arrives and
    only the final check can refuse it. The mirror is made to pause just before that check
    (a test hook point), so a client could read the whole body first if the last byte were
    not held back: it must get a broken connection instead, and nothing is stored."""
    good = make_tar([M("saved_model.pb", os.urandom(300_000))], compression="gz")
    model_server.add("/m/1", strip_trailer(good))
    env = {"HUBCACHE_TEST_FAULTS": "fill-before-verify=sleep:1", "PYTHONPATH": FAULTS_SITE}
    with mirror(store, model_server, env=env) as server:
        with pytest.raises(urllib3.exceptions.ProtocolError):
            server.get("/m/1?tf-hub-format=compressed")  # never a 200 that looks whole
        wait_for(lambda: "fill of m/1" in server.stderr, what="the failure to be logged")
        assert stored_archives(store) == {}
        server.stop()
        assert "Traceback" not in server.stderr


def test_upstream_404_is_cached_briefly(model_server: ModelServer, store: Path) -> None:
    with mirror(store, model_server, "--negative-ttl", "1s") as server:
        assert server.get("/gone/1?tf-hub-format=compressed").status == 404
        assert server.get("/gone/1?tf-hub-format=compressed").status == 404
        assert model_server.count("/gone/1") == 1
        time.sleep(1.2)
        assert server.get("/gone/1?tf-hub-format=compressed").status == 404
        assert model_server.count("/gone/1") == 2


def test_prefix_upstreams(model_server: ModelServer, store: Path) -> None:
    model_server.add("/a/m/1", ARCHIVE)
    model_server.add("/b/m/1", ARCHIVE[::-1])
    env = dict(os.environ, HUBCACHE_RETRIES="0")
    with ServeProcess(
        str(store),
        "--upstream",
        f"one/={model_server.url('/a/')}",
        "--upstream",
        f"two.example/={model_server.url('/b')}",
        env=env,
    ) as server:
        assert server.get("/one/m/1?tf-hub-format=compressed").data == ARCHIVE
        assert server.get("/two.example/m/1?tf-hub-format=compressed").status == 502
        assert server.get("/three/m/1?tf-hub-format=compressed").status == 404
        assert model_server.count("/a/m/1") == 1


def test_auth_and_upstream_credentials_stay_on_the_server(
    model_server: ModelServer, store: Path, tmp_path: Path
) -> None:
    model_server.add("/m/1", ARCHIVE)
    tokens = tmp_path / "tokens"
    tokens.write_text("# one per line\nalpha\nbeta\n")
    env = {"HUBCACHE_HTTP_HEADERS": '{"X-Upstream-Key": "s3cret"}'}
    with mirror(store, model_server, "--token-file", str(tokens), env=env) as server:
        path = "/m/1?tf-hub-format=compressed"
        assert server.get(path).status == 401
        assert server.get(path, {"Authorization": "Bearer nope"}).status == 401
        assert server.get("/metrics").status == 401
        assert server.get("/healthz").status == 200
        answer = server.get(path, {"Authorization": "Bearer beta", "Cookie": "session=mine"})
        assert (answer.status, answer.data) == (200, ARCHIVE)
        assert "s3cret" not in str(dict(answer.headers))
        basic = urllib3.make_headers(basic_auth="anyone:alpha")
        assert server.get(path, basic).status == 200
        (request,) = model_server.requests
        assert request.headers["X-Upstream-Key"] == "s3cret"
        assert "Authorization" not in request.headers and "Cookie" not in request.headers


def test_metrics_values(model_server: ModelServer, store: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    model_server.add("/m/1", ARCHIVE)
    with mirror(store, model_server) as server:
        server.get("/m/1?tf-hub-format=compressed")
        server.get("/m/1?tf-hub-format=compressed")
        server.get("/missing/1?tf-hub-format=compressed")
        text = server.get("/metrics").data.decode()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("hubcache_mirror_requests_total", (("code", "200"),))] == 2
    assert values[("hubcache_mirror_requests_total", (("code", "404"),))] == 1
    assert values[("hubcache_mirror_hits_total", ())] == 1
    assert values[("hubcache_mirror_misses_total", ())] == 2
    assert values[("hubcache_mirror_fills_total", (("result", "stored"),))] == 1
    assert values[("hubcache_mirror_fills_total", (("result", "missing"),))] == 1
    assert values[("hubcache_mirror_fills_in_flight", ())] == 0
    assert values[("hubcache_mirror_upstream_bytes_total", ())] == len(ARCHIVE)
    assert values[("hubcache_mirror_served_bytes_total", ())] == 2 * len(ARCHIVE)
    assert values[("hubcache_mirror_stored_bytes", ())] == len(ARCHIVE)


def test_eviction_under_load_spares_what_is_being_served(
    model_server: ModelServer, store: Path
) -> None:
    bodies = {name: make_tar([M("x", os.urandom(200_000))], compression=None) for name in "abc"}
    for name, body in bodies.items():
        model_server.add(f"/{name}/1", body)
    size = len(bodies["a"])
    with mirror(store, model_server, "--max-size", str(2 * size + size // 2)) as server:
        server.get("/a/1?tf-hub-format=compressed")
        time.sleep(0.05)
        server.get("/b/1?tf-hub-format=compressed")
        slow = ServeProcess  # noqa: F841 - readability: "a" is read slowly below
        got: list[bytes] = []
        with urllib3.PoolManager(retries=False) as http:
            response = http.request(
                "GET", server.url + "a/1?tf-hub-format=compressed", preload_content=False
            )
            got.append(response.read(1000))  # "a", the least recently served, is in use
            server.get("/c/1?tf-hub-format=compressed")  # over the limit: evict one
            wait_for(lambda: not (store / "b" / "1.tar").exists(), what="b to be evicted")
            got.append(response.read())
            response.release_conn()
        assert b"".join(got) == bodies["a"]
        assert set(stored_archives(store)) == {
            "a/1.tar",
            "a/1.tar.sha256",
            "c/1.tar",
            "c/1.tar.sha256",
        }
        server.get("/b/1?tf-hub-format=compressed")  # "a" is least recent and idle now
        wait_for(lambda: not (store / "a" / "1.tar").exists(), what="a to be evicted")
        assert model_server.count("/b/1") == 2


def test_sigterm_drains_in_flight_responses(model_server: ModelServer, store: Path) -> None:
    body = make_tar([M("x", os.urandom(600_000))], compression=None)
    model_server.add("/m/1", body)
    server = mirror(store, model_server, "--rate-limit", "400k")
    try:
        server.get("/m/1?tf-hub-format=compressed")  # stored
        with urllib3.PoolManager(retries=False) as http:
            response = http.request(
                "GET", server.url + "m/1?tf-hub-format=compressed", preload_content=False
            )
            first = response.read(1000)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(urllib3.exceptions.HTTPError):
                server.get("/healthz", timeout=2)  # no new connections while draining
            rest = response.read()
            response.release_conn()
        assert first + rest == body
        assert server.proc.wait(30) == 0
        assert "Traceback" not in server.stderr
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gcs"])
def test_two_replicas_on_one_bucket_fetch_once(
    model_server: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    scheme: str,
) -> None:
    emulator = request.getfixturevalue(f"{scheme}_emulator")
    variables = activate(emulator, monkeypatch)
    variables["TMPDIR"] = str(tmp_path)  # the replicas' spool (<tmp>/hubcache-mirror-<uid>)
    bucket = emulator.new_bucket()
    model_server.add("/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE),))
    url = f"{emulator.scheme}://{bucket}/mirror"
    with (
        mirror(url, model_server, env=variables) as one,
        mirror(url, model_server, env=variables) as two,
    ):
        bodies: list[bytes] = []
        threads = [
            threading.Thread(
                target=lambda s=s: bodies.append(s.get("/m/1?tf-hub-format=compressed").data)
            )
            for s in (one, two, one, two)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join(60)
        assert bodies == [ARCHIVE] * 4
        assert model_server.count("/m/1") == 1
        fs = emulator.filesystem()
        assert fs.cat_file(f"{bucket}/mirror/m/1.tar") == ARCHIVE
        one.get("/m/1?tf-hub-format=compressed", headers={"Range": "bytes=0-9"})
        assert two.get("/m/1?tf-hub-format=compressed").data == ARCHIVE
        assert model_server.count("/m/1") == 1


def test_kaggle_upstreams_get_the_servers_kaggle_credential(
    store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hubcache._config import load_config
    from hubcache.serve.archives import ArchiveStore
    from hubcache.serve.pullthrough import Mirror, parse_upstream

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kaggle of the developer's
    monkeypatch.setenv("KAGGLE_API_TOKEN", "server-token")
    upstreams = (
        parse_upstream("www.kaggle.com/models/=https://www.kaggle.com/models/"),
        parse_upstream("tfhub.dev/=https://tfhub.dev/"),
    )
    mirror = Mirror(
        ArchiveStore(str(store)), upstreams, load_config(), negative_ttl=1, max_size=None
    )
    kaggle = mirror.config_for("https://www.kaggle.com/models/o/m/tensorFlow2/v/1")
    assert ("Authorization", "Bearer server-token") in kaggle.headers
    assert "server-token" not in repr(mirror.config_for("https://tfhub.dev/google/m/1").headers)


def test_the_kaggle_credential_of_a_mirror_never_follows_the_redirect_to_storage(
    store: Path, tmp_path: Path
) -> None:
    """A mirror with Kaggle as its upstream sends its Kaggle credential to Kaggle's host
    (a gated model needs it), which answers with a redirect to a signed storage URL: that
    third-party host must get neither the credential nor anything else of the server's."""
    from tests.support.kaggle import KaggleModel, KaggleWorld

    files = {"model.weights.h5": b"w" * 5000, "config.json": b"{}"}
    with KaggleWorld() as world:
        gated = KaggleModel("google", "gemma", "keras", "gemma-2b", {1: files}, gated=True)
        world.kaggle.add(gated)
        world.kaggle.accounts.tokens.add("server-token")
        world.kaggle.accounts.accepted_terms.add("server-token")
        home = tmp_path / "home"
        home.mkdir()
        env = dict(os.environ, **world.env(), HOME=str(home), KAGGLE_API_TOKEN="server-token")
        env["HUBCACHE_HTTP_HEADERS"] = '{"X-Upstream-Key": "s3cret"}'
        upstream = "www.kaggle.com/models/=http://www.kaggle.com/models/"
        with ServeProcess(str(store), "--upstream", upstream, env=env) as server:
            got = server.get(
                "/www.kaggle.com/models/google/gemma/keras/gemma-2b/1?tf-hub-format=compressed"
            )
            assert (got.status, got.data) == (200, gated.archive(1)), got.data[:200]
        [page] = [s for s in world.kaggle.seen if "/models/google/gemma" in s.path]
        assert page.headers["authorization"] == "Bearer server-token"  # Kaggle's host: yes
        assert len(world.storage.seen) == 1
        for seen in world.storage.seen:  # the storage host: nothing of the server's
            assert "authorization" not in seen.headers and "x-upstream-key" not in seen.headers
            assert not any("server-token" in v or "s3cret" in v for v in seen.headers.values())
    assert not (world.kaggle.errors or world.storage.errors)


def test_a_planted_bucket_spool_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bucket mirror spools fills under <tmp>/hubcache-mirror-<uid>; on a shared temp
    folder another user may have made that name first. Such a folder is refused."""
    from hubcache.serve.archives import ArchiveStore

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    archives = ArchiveStore("memory://planted-spool")
    os.makedirs(archives.spool)
    os.chown(archives.spool, 65534, 65534)  # another user's
    os.chmod(archives.spool, 0o777)  # noqa: S103 - the planted folder is world-writable
    planted = archives.spool
    part = archives.partial()
    assert os.path.dirname(part) != planted
    assert os.stat(os.path.dirname(part)).st_uid == os.getuid()
    assert "not spooling in" in caplog.text


def test_an_upstream_without_content_length_is_filled_whole_or_not_at_all(
    model_server: ModelServer, store: Path, cache_root: Path
) -> None:
    """A streaming origin (chunked, no Content-Length): clients during the fill get the whole
    archive, and a chunked stream cut before its last chunk is never stored nor served as
    whole, even though no length says it was short."""
    streamed = (Fault(chunked=True, rate_limit=RATE),)
    model_server.add("/m/1", ARCHIVE, faults=streamed)
    with mirror(store, model_server) as server:
        bodies: list[bytes] = []
        clients = [
            threading.Thread(
                target=lambda: bodies.append(server.get("/m/1?tf-hub-format=compressed").data)
            )
            for _ in range(3)
        ]
        for client in clients:
            client.start()
        wait_for(lambda: model_server.count("/m/1") == 1, what="the fill to start")
        # No length yet, so no Content-Range can be written: the whole body, ranges unoffered
        whole = server.get("/m/1?tf-hub-format=compressed", headers={"Range": "bytes=100-199"})
        assert (whole.status, whole.data) == (200, ARCHIVE)
        assert "Accept-Ranges" not in whole.headers and "Content-Length" not in whole.headers
        for client in clients:
            client.join(30)
        assert bodies == [ARCHIVE] * 3
        part = server.get("/m/1?tf-hub-format=compressed", headers={"Range": "bytes=100-199"})
        assert (part.status, part.data) == (206, ARCHIVE[100:200])  # once stored, it has one
        assert tree(hubcache.resolve(server.url + "m/1")) == EXPECTED
        assert model_server.count("/m/1") == 1
        assert_stored_whole(store, "m/1.tar", ARCHIVE)

        # Cut mid-stream with no length and no validator: the fill starts again and checks
        # the bytes readers already have against the new stream, so the client gets it whole.
        half = len(ARCHIVE) // 2
        model_server.add("/m/2", ARCHIVE, faults=(Fault(chunked=True, drop_after=half, times=1),))
        assert server.get("/m/2?tf-hub-format=compressed").data == ARCHIVE
        assert model_server.count("/m/2") == 2
        assert_stored_whole(store, "m/2.tar", ARCHIVE)
        wait_for(lambda: "fill of m/2 broke after" in server.stderr, what="the restart's log line")
        # Cut on every try: after HUBCACHE_RETRIES restarts the connection breaks, nothing kept.
        model_server.add("/m/3", ARCHIVE, faults=(Fault(chunked=True, drop_after=half),))
        with pytest.raises(urllib3.exceptions.ProtocolError):
            server.get("/m/3?tf-hub-format=compressed")
        assert model_server.count("/m/3") == 2
        assert "m/3.tar" not in stored_archives(store)
        # Another archive after the restart: readers hold bytes of the first, so it fails.
        other = make_tar([M("saved_model.pb", os.urandom(len(ARCHIVE)))])
        changed = (Fault(chunked=True, drop_after=half, times=1), Fault(body_override=other))
        model_server.add("/m/4", ARCHIVE, faults=changed)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            server.get("/m/4?tf-hub-format=compressed")
        wait_for(lambda: "answered different bytes" in server.stderr, what="the refusal")
        assert "m/4.tar" not in stored_archives(store)
        model_server.faults("/m/3", Fault(chunked=True))
        assert server.get("/m/3?tf-hub-format=compressed").data == ARCHIVE
        server.stop()
        assert "Traceback" not in server.stderr
