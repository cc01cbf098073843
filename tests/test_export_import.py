"""Air-gapped transfer: export on one cache, import into another, resolve offline there."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import hubcache
from tests.support.cachehelp import model, names, run, serve
from tests.support.httpserver import ModelServer


def test_export_import_then_offline_resolve(
    model_server: ModelServer,
    cache_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = [serve(model_server, f"/m{i}/1", model(5000 * (i + 1))) for i in range(3)]
    paths = [hubcache.resolve(u) for u in urls]
    out = tmp_path / "models.tar"
    code, printed, _err = run(capsys, "export", str(out), urls[0], urls[1])
    assert code == 0 and printed.split() == urls[:2]
    other = tmp_path / "airgapped"
    code, printed, _err = run(capsys, "import", str(out), "--cache-dir", str(other))
    assert code == 0 and printed.count("imported") == 2
    seen = len(model_server.requests)
    for url, path in zip(urls[:2], paths[:2], strict=True):
        moved = hubcache.resolve(url, cache_dir=str(other), offline=True)
        assert sorted(p.relative_to(moved) for p in Path(moved).rglob("*")) == sorted(
            p.relative_to(path) for p in Path(path).rglob("*")
        )
        assert (Path(moved) / "saved_model.pb").read_bytes() == (
            Path(path) / "saved_model.pb"
        ).read_bytes()
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(urls[2], cache_dir=str(other), offline=True)
    assert len(model_server.requests) == seen
    assert (other / "CACHEDIR.TAG").exists()
    assert not [n for n in names(other) if n.endswith(".tmp")]
    code, printed, _err = run(capsys, "import", str(out), "--cache-dir", str(other))
    assert code == 0 and printed.count("already cached") == 2
    assert run(capsys, "verify", "--deep", "--cache-dir", str(other))[0] == 0


def test_export_all_and_a_tampered_archive_is_rejected(
    model_server: ModelServer,
    cache_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = serve(model_server, "/m/1", model(5000))
    hubcache.resolve(url)
    out = tmp_path / "all.tar"
    assert run(capsys, "export", str(out), "--all")[0] == 0
    code, _printed, err = run(capsys, "export", str(out))
    assert code == 2 and err == "hubcache: error: name the entries to export, or --all (not both)\n"
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(out) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data and member.name.endswith("saved_model.pb"):
                data = b"X" + data[1:]  # same size: only the sha256 tells
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    other = tmp_path / "other"
    code, printed, _err = run(capsys, "import", str(tampered), "--cache-dir", str(other))
    assert code == 5 and printed.startswith("rejected") and "does not match" in printed
    assert not (other / hubcache.cache_key(url)).exists()
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(url, cache_dir=str(other), offline=True)
