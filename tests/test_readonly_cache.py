"""A read-only cache (a mounted volume, a container image), issue 4 item 10.

Complete entries are served without writing anything; a miss fails at once with a
``CacheDirError`` (exit 6), never after waiting on a lock file that cannot be created.
Made real twice: a read-only bind mount (root can write through permission bits, not
through a read-only mount), and a child process running as ``nobody`` on root's cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.procs import run_cli
from tests.support.rootutil import NOBODY, read_only_view, run_as, shared_tmp

MEMBERS = [M("saved_model.pb", b"graph" * 50), M("variables/v.index", b"idx")]


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, str, str]:
    """(cache root, a cached archive handle, an uncached one)."""
    root = tmp_path / "cache"
    cached, missing = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    cached.write_bytes(make_tar(MEMBERS, compression="gz"))
    missing.write_bytes(make_tar(MEMBERS, compression="gz"))
    hubcache.resolve(str(cached), cache_dir=str(root))
    return root, str(cached), str(missing)


@pytest.fixture
def ro(filled: tuple[Path, str, str]) -> Iterator[Path]:
    with read_only_view(filled[0]) as view:
        yield view


@pytest.mark.timeout(30)
def test_read_only_mount_serves_hits_and_fails_misses_at_once(
    filled: tuple[Path, str, str], ro: Path
) -> None:
    _root, cached, missing = filled
    path = hubcache.resolve(cached, cache_dir=str(ro))
    assert path == str(ro / hubcache.cache_key(cached))
    assert Path(path, "saved_model.pb").read_bytes() == MEMBERS[0].data
    before = sorted(os.listdir(ro))
    with pytest.raises(hubcache.CacheDirError) as info:
        hubcache.resolve(missing, cache_dir=str(ro))
    message = str(info.value)
    assert info.value.exit_code == 6 and "read-only" in message and "TFHUB_CACHE_DIR" in message
    assert sorted(os.listdir(ro)) == before


@pytest.mark.timeout(30)
def test_read_only_mount_with_a_stale_foreign_lock_fails_at_once(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(make_tar(MEMBERS, compression="gz"))
    key = hubcache.cache_key(str(archive))
    (root / f"{key}.lock").write_text("some-other-host.4242.deadbeef")  # never released
    with read_only_view(root) as view, pytest.raises(hubcache.CacheDirError) as info:
        hubcache.resolve(str(archive), cache_dir=str(view))
    assert str(info.value).startswith(f"the cache folder {view} is read-only")


def test_read_only_mount_serves_legacy_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(make_tar(MEMBERS, compression="gz"))
    entry = root / hubcache.cache_key(str(archive))
    (entry / "variables").mkdir(parents=True)  # made by tensorflow_hub: no manifest
    (entry / "saved_model.pb").write_bytes(b"pb")
    (entry / "variables" / "v.index").write_bytes(b"i")
    with read_only_view(root) as view:
        assert hubcache.resolve(str(archive), cache_dir=str(view)) == str(view / entry.name)


def test_cli_exit_codes_on_a_read_only_mount(filled: tuple[Path, str, str], ro: Path) -> None:

    _root, cached, missing = filled
    ok = run_cli(["resolve", "--cache-dir", str(ro), cached], dict(os.environ))
    assert ok.returncode == 0 and ok.stdout.strip() == str(ro / hubcache.cache_key(cached))
    miss = run_cli(["resolve", "--cache-dir", str(ro), missing], dict(os.environ))
    assert miss.returncode == 6 and miss.stdout == ""
    assert miss.stderr.startswith(f"hubcache: error: the cache folder {ro} is read-only")
    assert len(miss.stderr.splitlines()) == 1


def test_cache_of_another_user_as_nobody() -> None:
    """Without mounts: root's cache (0755) is read-only for ``nobody``."""
    with shared_tmp() as shared:
        root = shared / "cache"
        cached, missing = shared / "a.tar.gz", shared / "b.tar.gz"
        for path in (cached, missing):
            path.write_bytes(make_tar(MEMBERS, compression="gz"))
            path.chmod(0o644)
        hubcache.resolve(str(cached), cache_dir=str(root))
        root.chmod(0o755)
        env = dict(os.environ)
        hit = run_as(NOBODY, ["resolve", "--cache-dir", str(root), str(cached)], str(cached), env)
        assert hit.returncode == 0, hit.stderr
        assert hit.stdout.strip() == str(root / hubcache.cache_key(str(cached)))
        miss = run_as(NOBODY, ["resolve", "--cache-dir", str(root), str(missing)], str(cached), env)
        assert miss.returncode == 6, miss.stderr
        assert "read-only" in miss.stderr
        assert sorted(os.listdir(root)) == sorted(
            [
                "CACHEDIR.TAG",
                *(
                    hubcache.cache_key(str(cached)) + s
                    for s in ("", ".descriptor.txt", ".manifest.json")
                ),
            ]
        )


def test_import_into_a_read_only_cache_says_import(
    filled: tuple[Path, str, str], ro: Path, tmp_path: Path
) -> None:
    from hubcache.cli.main import main

    _root, cached, _missing = filled
    out = tmp_path / "one.tar"
    assert main(["export", "--cache-dir", str(filled[0]), str(out), cached]) == 0
    before = sorted(os.listdir(ro))
    with pytest.raises(hubcache.CacheDirError) as info:
        hubcache.Cache(str(ro)).import_archive(str(out))
    message = str(info.value)
    assert message.startswith(f"cannot import into {ro}: ") and "read-only" in message
    assert "downloaded" not in message and "missing" not in message
    assert sorted(os.listdir(ro)) == before
