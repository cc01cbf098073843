"""Cache management on roots behind the storage seam: gc and export/import on ``memory://``;
ls, verify, rm on the GCS and S3 emulators (the other commands run on ``memory://`` in
test_cache_cli, through the same code)."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hubcache
from hubcache.store.backend import open_storage
from tests.support.cachehelp import Root, model, run, run_json
from tests.support.emulators import activate
from tests.support.httpserver import ModelServer, serve


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Root]:
    made = Root("memory", tmp_path)
    monkeypatch.setenv("TFHUB_CACHE_DIR", made.url)
    yield made
    made.cleanup()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_gc_on_a_store_removes_unfinished_uploads_and_stale_locks(
    memory: Root, model_server: ModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(model_server, "/kept/1", model(1000))
    done = hubcache.cache_key(url)
    hubcache.resolve(url)
    me, dead = socket.gethostname(), dead_pid()
    orphan, live, crashed, leftover = (f"{n:040x}" for n in (1, 2, 3, 4))
    memory.write(f"{orphan}/saved_model.pb", b"x" * 10)  # an upload whose lock is gone
    memory.write(f"{live}/saved_model.pb", b"x")  # an upload in progress
    memory.write(f"{live}.lock", f"{me}.{os.getpid()}.uid".encode())
    memory.write(f"{crashed}/saved_model.pb", b"x" * 5)  # its uploader died here
    memory.write(f"{crashed}.lock", f"{me}.{dead}.uid".encode())
    memory.write(f"{leftover}.descriptor.txt", b"Module: x\n")
    memory.write(".hubcache-clock/old", b"")
    memory.write(".hubcache-clock/new", b"")
    hours_ago = datetime.datetime.fromtimestamp(time.time() - 7200, datetime.timezone.utc)
    memory.fs.store[memory._p(".hubcache-clock/old")].modified = hours_ago
    before = memory.names()

    code, out, _err = run(capsys, "gc", "--dry-run")
    assert code == 0 and memory.names() == before
    planned = {line.split()[2] for line in out.splitlines()}
    assert planned == {
        f"{memory.url}/{orphan}",
        f"{memory.url}/{crashed}",
        f"{memory.url}/{crashed}.lock",
        f"{memory.url}/{leftover}.descriptor.txt",
        f"{memory.url}/.hubcache-clock/old",
    }
    assert "(staging: an upload that never finished" in out and "10 bytes" in out
    code, out, _err = run(capsys, "gc")
    assert code == 0 and {line.split()[1] for line in out.splitlines()} == planned
    left = memory.names()
    assert {orphan, crashed, f"{crashed}.lock", f"{leftover}.descriptor.txt"} & left == set()
    assert {done, f"{done}.manifest.json", live, f"{live}.lock"} <= left
    assert memory.exists(".hubcache-clock/new")
    assert run(capsys, "verify")[0] == 0  # the live upload is "in progress", not damage
    report = run_json(capsys, "ls")["entries"]
    assert {r["key"]: r["state"] for r in report} == {done: "complete", live: "in progress"}


def test_export_from_a_store_import_into_a_folder_and_another_store(
    memory: Root,
    model_server: ModelServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = [serve(model_server, f"/m{i}/1", model(3000 * (i + 1), b"%d" % i)) for i in range(3)]
    for url in urls:
        hubcache.resolve(url)
    out = tmp_path / "models.tar"
    code, printed, _err = run(capsys, "export", str(out), urls[0], urls[1])
    assert code == 0 and printed.split() == urls[:2]
    folder = tmp_path / "airgapped"
    other = Root("memory", tmp_path)
    try:
        for target in (str(folder), other.url):
            code, printed, _err = run(capsys, "import", str(out), "--cache-dir", target)
            assert code == 0 and printed.count("imported") == 2
            code, printed, _err = run(capsys, "import", str(out), "--cache-dir", target)
            assert code == 0 and printed.count("already cached") == 2
        seen = len(model_server.requests)
        for url in urls[:2]:
            key = hubcache.cache_key(url)
            local = Path(hubcache.resolve(url, cache_dir=str(folder), offline=True))
            assert hubcache.resolve(url, cache_dir=other.url, offline=True) == f"{other.url}/{key}"
            for rel in ("saved_model.pb", "variables/variables.data-00000-of-00001"):
                body = memory.read(f"{key}/{rel}")
                assert (local / rel).read_bytes() == body == other.read(f"{key}/{rel}")
        assert len(model_server.requests) == seen  # offline: no request anywhere
        with pytest.raises(hubcache.OfflineError):
            hubcache.resolve(urls[2], cache_dir=other.url, offline=True)
        assert run(capsys, "verify", "--deep", "--cache-dir", other.url)[0] == 0
    finally:
        other.cleanup()


def test_export_refuses_a_damaged_store_entry(
    memory: Root, model_server: ModelServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(model_server, "/bad/1", model(2000))
    hubcache.resolve(url)
    memory.remove(f"{hubcache.cache_key(url)}/saved_model.pb")
    code, _out, err = run(capsys, "export", str(tmp_path / "x.tar"), url)
    assert code == 5 and "not a complete entry" in err and err.count("\n") == 1
    assert not (tmp_path / "x.tar").exists()


@pytest.fixture(params=["gcs", "s3"])
def bucket_root(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    activate(emulator, monkeypatch)
    root = f"{emulator.scheme}://{emulator.new_bucket()}/tfhub-modules-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", root)
    return root


def test_ls_verify_rm_on_an_object_store(
    bucket_root: str, model_server: ModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [serve(model_server, f"/s{i}/1", model(4000 * (i + 1), b"%d" % i)) for i in range(2)]
    keys = [hubcache.cache_key(url) for url in urls]
    for url in urls:
        hubcache.resolve(url)
    data: Any = run_json(capsys, "ls")
    assert data["root"] == bucket_root and data["count"] == 2
    rows = {r["key"]: r for r in data["entries"]}
    assert {r["state"] for r in rows.values()} == {"complete"}
    assert rows[keys[1]]["size"] > rows[keys[0]]["size"] and rows[keys[0]]["files"] == 3
    assert rows[keys[0]]["path"] == f"{bucket_root}/{keys[0]}"
    assert time.time() - rows[keys[0]]["downloaded"] < 600  # the store's clock, roughly ours
    store = open_storage(bucket_root)
    name = f"{keys[0]}/variables/variables.data-00000-of-00001"
    with store.open_read(name) as f:
        blob = bytearray(f.read())
    blob[3] ^= 1
    store.write(name, bytes(blob))
    assert run(capsys, "verify")[0] == 0  # same size: only --deep sees it
    code, out, _err = run(capsys, "verify", "--deep", "--json")
    assert code == 5 and json.loads(out)["damaged"] == [keys[0]]
    code, out, _err = run(capsys, "rm", "--yes", urls[0])
    assert code == 0 and keys[0][:12] in out
    assert not [n for n in store.listing("") if n.startswith(keys[0])]
    assert [r["key"] for r in run_json(capsys, "ls")["entries"]] == [keys[1]]
    assert run(capsys, "verify", "--deep")[0] == 0
