"""Air-gapped transfer: export on one cache, import into another, resolve offline there."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import hubcache
from tests.support.cachehelp import model, names, run
from tests.support.httpserver import ModelServer, serve


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
    assert not other.exists()  # nothing imported: not even the cache folder it would fill
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(url, cache_dir=str(other), offline=True)


def test_export_refuses_damaged_and_manifestless_entries_with_exit_5(
    model_server: ModelServer,
    cache_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only what a manifest proves whole leaves the machine: a damaged entry and one made by
    tensorflow_hub are each refused with exit 5 (not 1) and advice, and no tar appears."""
    damaged = serve(model_server, "/damaged/1", model(3000))
    (Path(hubcache.resolve(damaged)) / "saved_model.pb").unlink()
    legacy = serve(model_server, "/legacy/1", model(3000))
    made_by_tfhub = Path(hubcache.resolve(legacy))
    (cache_root / f"{made_by_tfhub.name}.manifest.json").unlink()  # as tensorflow_hub leaves it
    out = tmp_path / "x.tar"
    code, printed, err = run(capsys, "export", str(out), damaged)
    assert (code, printed) == (5, "") and not out.exists()
    assert "is not a complete entry" in err and "hubcache verify --fix" in err
    assert err.count("\n") == 1
    code, printed, err = run(capsys, "export", str(out), legacy)
    assert (code, printed) == (5, "") and not out.exists()
    assert "has no manifest" in err and "adopts it" in err and err.count("\n") == 1
    seen = len(model_server.requests)
    hubcache.resolve(legacy)  # the advice works: resolving adopts it, with no request
    assert len(model_server.requests) == seen
    assert run(capsys, "export", str(out), legacy)[0] == 0 and out.exists()


def test_verify_fix_goes_on_past_an_entry_it_cannot_download_again(
    model_server: ModelServer, cache_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An emptied folder with no manifest and no descriptor has no known handle: --fix says
    so, still fixes the others, and exits 5 because damage remains (not 1 mid-way)."""
    url = serve(model_server, "/fixable/1", model(3000))
    path = Path(hubcache.resolve(url))
    (path / "saved_model.pb").unlink()
    orphan = cache_root / ("ab" * 20)
    orphan.mkdir()
    before = model_server.count("/fixable/1")
    code, printed, err = run(capsys, "verify", "--fix")
    assert code == 5
    assert model_server.count("/fixable/1") == before + 1 and (path / "saved_model.pb").exists()
    status = {line.split()[2]: line.split()[0] for line in printed.splitlines()}
    assert status == {url: "fixed", "ab" * 20: "DAMAGED"}
    assert f"cannot re-download {'ab' * 20}: its handle is unknown" in err
    assert f"hubcache rm {'ab' * 20}" in err
    assert run(capsys, "verify")[0] == 5  # the orphan is still there, as the user's to remove
