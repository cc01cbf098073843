"""Cache roots on object stores (gs:// on a GCS emulator, s3:// on moto), end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hubcache
from hubcache.store.backend import open_storage
from tests.support.archives import M, make_tar
from tests.support.emulators import activate, probe_preconditions
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import run_cli

MEMBERS = [
    M("saved_model.pb", b"graph" * 100),
    M("variables", type="dir"),
    M("variables/variables.index", b"index"),
    M("variables/variables.data-00000-of-00001", os.urandom(300_000)),
    M("assets/vocab.txt", b"word\n" * 1000),
]
FILES = {m.name: m.data for m in MEMBERS if m.type == "file"}
REPO = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(params=["gcs", "s3"])
def remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(root URL, variables for child processes, emulator)."""
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    variables = activate(emulator, monkeypatch)
    if emulator.honours_preconditions is None:
        emulator.honours_preconditions = probe_preconditions(emulator)
    root = f"{emulator.scheme}://{emulator.new_bucket()}/tfhub-modules-cache"
    yield root, variables, emulator


ARCHIVE = make_tar(MEMBERS, compression="gz")


def serve_model(server: ModelServer) -> str:
    return serve(server, "/google/m/1", ARCHIVE)


def test_a_killed_remote_resolve_leaves_its_local_staging_where_gc_finds_it(
    remote: Any, model_server: ModelServer, tmp_path: Path
) -> None:
    root, variables, _emulator = remote
    url = serve_model(model_server)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    kill_mid_upload(url, variables, root, TMPDIR=str(tmp))
    [left] = os.listdir(tmp)  # the killed process's extracted tree, in TMPDIR
    env = {**os.environ, **variables, "TFHUB_CACHE_DIR": root, "TMPDIR": str(tmp)}
    gc = ["gc", "--grace", "0"]
    dry = run_cli([*gc, "--dry-run"], env)
    assert dry.returncode == 0 and str(tmp / left) in dry.stdout, dry.stdout + dry.stderr
    assert os.listdir(tmp) == [left]
    done = run_cli(gc, env)
    assert done.returncode == 0 and str(tmp / left) in done.stdout, done.stdout + done.stderr
    assert os.listdir(tmp) == []


def test_the_next_remote_resolve_removes_a_dead_resolve_s_local_staging(
    remote: Any, model_server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import tempfile

    root, _variables, _emulator = remote
    url = serve_model(model_server)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"hubcache-stage.{socket.gethostname()}.{dead.stdout.strip()}.0123abcd"
    (stale / "k").mkdir(parents=True)
    (stale / "k" / "saved_model.pb").write_bytes(b"x" * 1000)
    mine = tmp_path / f"hubcache-stage.{socket.gethostname()}.{os.getpid()}.live"
    mine.mkdir()  # a live process's staging is never touched
    other = tmp_path / "hubcache-unrelated"
    other.mkdir()  # nor anything hubcache-stage did not name
    hubcache.resolve(url, cache_dir=root)
    assert not stale.exists() and mine.exists() and other.exists()


def test_resolve_into_remote_root_then_hit_without_origin(
    remote: Any, model_server: ModelServer
) -> None:
    root, _variables, _emulator = remote
    url = serve_model(model_server)
    key = hubcache.cache_key(url)
    path = hubcache.resolve(url, cache_dir=root)
    assert path == f"{root}/{key}"
    store = open_storage(root)
    manifest = store.complete_manifest(key)
    assert manifest is not None and manifest.handle == url
    assert store.listing(key) == {rel: len(body) for rel, body in FILES.items()}
    for rel, body in FILES.items():
        with store.open_read(f"{key}/{rel}") as f:
            assert f.read() == body
    assert store.read(f"{key}.descriptor.txt").startswith(f"Module: {url}\n".encode())  # type: ignore[union-attr]
    assert store.read(f"{key}.lock") is None
    assert hubcache.resolve(url, cache_dir=root) == path
    assert model_server.count("/google/m/1") == 1  # the second resolve made no origin request


def test_archive_handle_on_an_object_store(remote: Any, tmp_path: Path) -> None:
    root, _variables, emulator = remote
    bucket = root.split("://", 1)[1].split("/", 1)[0]
    handle = f"{emulator.scheme}://{bucket}/models/m.tar.gz"
    with open_storage(f"{emulator.scheme}://{bucket}").fs.open(
        f"{bucket}/models/m.tar.gz", "wb"
    ) as f:  # type: ignore[attr-defined]
        f.write(make_tar(MEMBERS, compression="gz"))
    local = hubcache.resolve(handle, cache_dir=str(tmp_path / "cache"))
    assert Path(local, "assets", "vocab.txt").read_bytes() == FILES["assets/vocab.txt"]
    assert hubcache.resolve(handle, cache_dir=root) == f"{root}/{hubcache.cache_key(handle)}"


def _child(code: str, variables: dict[str, str], root: str, **extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, **variables, "TFHUB_CACHE_DIR": root, "PYTHONPATH": REPO, **extra}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_SLOW_UPLOADER = """
import os, sys, time, hubcache
from hubcache.store import fsspec as _storage_fsspec
real = _storage_fsspec.FsspecStorage.put_file
def put_file(self, local, name):
    real(self, local, name)
    os.write(1, b"UPLOADING\\n")  # one write: parallel upload threads cannot interleave it
    time.sleep(60)  # killed here, with part of the tree uploaded
_storage_fsspec.FsspecStorage.put_file = put_file
hubcache.resolve(sys.argv[1])
"""


def kill_mid_upload(url: str, variables: dict[str, str], root: str, **extra: str) -> None:
    """Resolve ``url`` onto the remote ``root`` in a child, kill -9 it once part of the
    tree is uploaded, and wait for it to be gone."""
    proc = _child(_SLOW_UPLOADER.replace("sys.argv[1]", repr(url)), variables, root, **extra)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "UPLOADING", proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_killed_uploader_leaves_no_complete_looking_entry(
    remote: Any, model_server: ModelServer
) -> None:
    root, variables, _emulator = remote
    url = serve_model(model_server)
    key = hubcache.cache_key(url)
    kill_mid_upload(url, variables, root)
    store = open_storage(root)
    assert store.listing(key)  # debris: part of the tree is there ...
    assert store.read(f"{key}.manifest.json") is None  # ... but no manifest
    assert store.complete_manifest(key) is None
    assert store.read(f"{key}.lock") is not None  # the dead process's lock
    # the next resolve takes over the dead holder's lock, cleans the debris, publishes
    path = hubcache.resolve(url, cache_dir=root)
    assert store.complete_manifest(key) is not None
    assert store.listing(key) == {rel: len(body) for rel, body in FILES.items()}
    assert path == f"{root}/{key}"
    assert model_server.count("/google/m/1") == 2


_RACER = "import sys, hubcache; print(hubcache.resolve(sys.argv[1]))"


def test_four_processes_racing_publish_one_entry(remote: Any, model_server: ModelServer) -> None:
    root, variables, emulator = remote
    if not emulator.honours_preconditions:
        pytest.skip(
            f"PRECONDITIONS NOT HONOURED by {emulator.name}: a race test would pass falsely"
        )
    url = serve_model(model_server)
    key = hubcache.cache_key(url)
    procs = [_child(_RACER.replace("sys.argv[1]", repr(url)), variables, root) for _ in range(4)]
    outputs = [p.communicate(timeout=90) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == f"{root}/{key}"
    store = open_storage(root)
    manifest = store.complete_manifest(key)
    assert manifest is not None
    assert store.listing(key) == {rel: len(body) for rel, body in FILES.items()}
    assert json.loads(store.read(f"{key}.manifest.json") or b"{}")["key"] == key
    assert store.read(f"{key}.lock") is None
    assert model_server.count("/google/m/1") == 1  # the lock held: one origin download


def test_store_clients_are_closed_when_their_use_ends(
    remote: Any, model_server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each resolve against a store root opens its own client (``skip_instance_cache``);
    its connections are closed when the resolve ends, not left to the garbage collector
    and the libraries' finalizers (gcsfs's only schedules the close; anything that keeps
    the client alive, such as a kept error's traceback, keeps its sockets open). With the
    collector off, repeated resolves open no more descriptors than one does."""
    import gc
    import warnings

    root, _variables, emulator = remote
    url = serve_model(model_server)
    bucket = root.split("/")[2]
    for i in range(3):  # archives on the store, resolved into a local root
        emulator.filesystem().pipe(f"{bucket}/archives/m{i}.tar.gz", ARCHIVE)
    local = str(tmp_path / "local")  # with the store root as its shared tier
    monkeypatch.setenv("HUBCACHE_SHARED_CACHE", root)
    hubcache.resolve(url, cache_dir=root)  # the misses: imports, uploads
    hubcache.resolve(f"{emulator.scheme}://{bucket}/archives/m2.tar.gz", cache_dir=local)
    gc.collect()
    before = len(os.listdir("/proc/self/fd")), _open_sessions()
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            kept = []  # errors kept (as a log would): their tracebacks hold the resolves
            for i in range(2):  # a hit, a miss, a failure, an archive on the store: a client each
                hubcache.resolve(url, cache_dir=root)
                hubcache.resolve(serve(model_server, f"/google/m/{i + 2}", ARCHIVE), cache_dir=root)
                with pytest.raises(hubcache.ModelNotFoundError) as info:
                    hubcache.resolve(model_server.url(f"/missing/{i}"), cache_dir=root)
                kept.append(info.value)
                hubcache.resolve(
                    f"{emulator.scheme}://{bucket}/archives/m{i}.tar.gz", cache_dir=local
                )
            opened = len(os.listdir("/proc/self/fd")) - before[0], _open_sessions() - before[1]
            gc.collect()
    finally:
        gc.enable()
    assert opened[0] <= 0 and opened[1] <= 0, f"(descriptors, sessions) {opened} more"
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def _open_sessions() -> int:
    """aiohttp sessions alive and not closed (the store clients' connection pools)."""
    import gc

    import aiohttp

    return sum(isinstance(o, aiohttp.ClientSession) and not o.closed for o in gc.get_objects())
