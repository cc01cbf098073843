"""The shared tier (HUBCACHE_SHARED_CACHE): one origin download for many local caches."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import hubcache
from hubcache.store.backend import open_storage
from tests.support.archives import M, make_tar
from tests.support.emulators import activate
from tests.support.httpserver import ModelServer, serve
from tests.support.trees import tree

MEMBERS = [
    M("saved_model.pb", b"graph" * 100),
    M("variables/variables.data-00000-of-00001", os.urandom(200_000)),
    M("assets/vocab.txt", b"word\n" * 1000),
    M("assets/empty", type="dir"),
]
FILES = {m.name: m.data for m in MEMBERS if m.type == "file"}


def serve_model(server: ModelServer) -> str:
    return serve(server, "/google/t/1", make_tar(MEMBERS, compression="gz"))


@pytest.fixture(params=["nfs", "s3"])
def tier(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "nfs":
        url = str(tmp_path / "shared")
    else:
        emulator: Any = request.getfixturevalue("s3_emulator")
        activate(emulator, monkeypatch)
        url = f"s3://{emulator.new_bucket()}/tier"
    monkeypatch.setenv("HUBCACHE_SHARED_CACHE", url)
    return url


def test_two_local_caches_cost_one_origin_download(
    tier: str, tmp_path: Path, model_server: ModelServer
) -> None:
    url = serve_model(model_server)
    key = hubcache.cache_key(url)
    first = hubcache.resolve(url, cache_dir=str(tmp_path / "node1"))
    assert model_server.count("/google/t/1") == 1
    shared = open_storage(tier)
    assert shared.complete_manifest(key) is not None  # uploaded after the origin download
    second = hubcache.resolve(url, cache_dir=str(tmp_path / "node2"))
    assert model_server.count("/google/t/1") == 1  # node2 was served by the tier
    assert tree(first) == tree(second) == FILES
    assert os.path.isdir(os.path.join(second, "assets", "empty"))
    manifest = json.loads(Path(second + ".manifest.json").read_text())
    assert manifest["copied_from"] == shared.join(key)
    assert Path(second + ".descriptor.txt").read_text().startswith(f"Module: {url}\n")
    # the warm path never looks at the tier again
    shared.retire(key)
    assert hubcache.resolve(url, cache_dir=str(tmp_path / "node2")) == second


def test_damaged_shared_copy_falls_back_to_the_origin(
    tier: str, tmp_path: Path, model_server: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve_model(model_server)
    key = hubcache.cache_key(url)
    hubcache.resolve(url, cache_dir=str(tmp_path / "node1"))
    open_storage(tier).write(f"{key}/saved_model.pb", b"G" * 500)  # same size, wrong bytes
    second = hubcache.resolve(url, cache_dir=str(tmp_path / "node2"))
    assert tree(second) == FILES
    assert model_server.count("/google/t/1") == 2
    assert any(
        "not usable" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


@pytest.mark.parametrize("kind", ["missing-bucket", "not-a-directory"])
def test_broken_tier_degrades_to_origin_with_one_warning(
    kind: str,
    *,
    tmp_path: Path,
    model_server: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    if kind == "missing-bucket":
        activate(request.getfixturevalue("s3_emulator"), monkeypatch)
        url_tier = f"s3://no-such-bucket-{os.getpid()}/tier"
    else:
        (tmp_path / "file").write_text("not a folder")
        url_tier = str(tmp_path / "file" / "tier")
    monkeypatch.setenv("HUBCACHE_SHARED_CACHE", url_tier)
    monkeypatch.setattr("hubcache.store.tiered._WARNED", set())
    url = serve_model(model_server)
    caplog.set_level(logging.WARNING, logger="hubcache")
    for node in ("node1", "node2", "node3"):
        assert tree(hubcache.resolve(url, cache_dir=str(tmp_path / node))) == FILES
    assert model_server.count("/google/t/1") == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert url_tier in warnings[0].getMessage()


def test_files_copied_down_from_the_tier_are_fsynced_before_publishing(
    tmp_path: Path, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubcache import _faults

    monkeypatch.setenv("HUBCACHE_SHARED_CACHE", str(tmp_path / "shared"))
    url = serve_model(model_server)
    hubcache.resolve(url, cache_dir=str(tmp_path / "node1"))  # fills the tier
    synced: list[str] = []
    real_fsync = _faults.fs.fsync

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def fsync(fd: int) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

    monkeypatch.setattr(_faults, "fs", Recording())
    path = hubcache.resolve(url, cache_dir=str(tmp_path / "node2"))  # copied down
    assert model_server.count("/google/t/1") == 1 and tree(path) == FILES
    staged = {os.path.relpath(p, tmp_path / "node2").split(os.sep, 1)[-1] for p in synced}
    for name in FILES:  # every file was synced (in its staging folder, before the rename)
        assert name in staged, (name, synced)
    for folder in ("variables", "assets", "assets/empty"):
        assert folder in staged, (folder, synced)


def test_the_import_lock_uses_the_configured_lease(
    tmp_path: Path, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubcache.manage import transfer

    url = serve_model(model_server)
    hubcache.resolve(url, cache_dir=str(tmp_path / "a"))
    out = str(tmp_path / "out.tar")
    hubcache.Cache(str(tmp_path / "a")).export(out, [url])
    leases: list[float] = []
    real = transfer.DownloadLock

    def recording(*args: Any, lease: float, **kw: Any) -> Any:
        leases.append(lease)
        return real(*args, lease=lease, **kw)

    monkeypatch.setattr(transfer, "DownloadLock", recording)
    monkeypatch.setenv("HUBCACHE_LOCK_LEASE", "7.5")
    hubcache.Cache(str(tmp_path / "b")).import_archive(out)
    assert leases == [7.5]
