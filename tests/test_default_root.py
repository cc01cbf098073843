"""The default root ``<tmp>/tfhub_modules`` on a shared machine (docs/architecture.md).

Tests run as root, so "another user" is made real: folders chowned to another uid, and a
child process that drops to ``nobody``. The unsafe folder must be neither read nor written,
one warning must name the reason and the remedy, and ``<tmp>/tfhub_modules-<uid>`` is used.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.rootutil import NOBODY, need_root, run_as, shared_tmp

OTHER_UID = 54321
MEMBERS = [M("saved_model.pb", b"graph" * 50)]


@pytest.fixture
def tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``tempfile.gettempdir()`` points at a fresh shared folder; returns it."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")
    return shared


@pytest.fixture
def archive(tmp_path: Path) -> str:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(make_tar(MEMBERS, compression="gz"))
    return str(path)


def state(path: Path) -> list[tuple[str, int, int, int]]:
    """Everything about a tree that a read or write could change (names, sizes, mtimes)."""
    out = []
    for dirpath, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st.st_size, st.st_mtime_ns, st.st_mode))
    return sorted(out)


def planted(root: Path, archive: str) -> None:
    """What an attacker would leave: a complete-looking entry for the victim's handle."""
    key = hubcache.cache_key(archive)
    (root / key).mkdir(parents=True)
    (root / key / "saved_model.pb").write_bytes(b"evil")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not using the shared" in r.getMessage()]


def test_absent_default_root_is_created_private(tmp: Path, archive: str) -> None:
    path = hubcache.resolve(archive)
    root = tmp / "tfhub_modules"
    assert Path(path).parent == root
    st = os.lstat(root)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("other_user", f"belongs to another user (uid {OTHER_UID})"),
        ("symlink", "symbolic link"),
        ("world_writable", "writable by other users"),
        ("group_writable", "writable by another group"),
        ("not_a_directory", "not a directory"),
    ],
)
def test_unsafe_default_root_is_left_alone_and_a_private_fallback_used(
    tmp: Path, archive: str, caplog: pytest.LogCaptureFixture, setup: str, reason: str
) -> None:
    need_root()
    root = tmp / "tfhub_modules"
    target = tmp / "attacker"
    if setup == "symlink":
        planted(target, archive)
        root.symlink_to(target)
    elif setup == "not_a_directory":
        root.write_bytes(b"x")
    else:
        planted(root, archive)
        if setup == "other_user":
            os.chown(root, OTHER_UID, OTHER_UID)
        elif setup == "world_writable":
            root.chmod(0o777)
        else:
            os.chown(root, os.geteuid(), OTHER_UID)
            root.chmod(0o770)
    watched = target if setup == "symlink" else root
    before = state(watched)
    with caplog.at_level(logging.WARNING, logger="hubcache"):
        first = hubcache.resolve(archive)
        second = hubcache.resolve(archive)
    fallback = tmp / f"tfhub_modules-{os.geteuid()}"
    assert first == second == str(fallback / hubcache.cache_key(archive))
    assert Path(first, "saved_model.pb").read_bytes() == MEMBERS[0].data  # not the planted one
    assert stat.S_IMODE(os.lstat(fallback).st_mode) == 0o700
    assert state(watched) == before  # neither written nor even touched
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages  # one warning, not one per call
    assert reason in messages[0] and "TFHUB_CACHE_DIR" in messages[0]
    assert str(fallback) in messages[0]
    assert hubcache.cache_dir() == str(fallback)


def test_unsafe_fallback_too_is_a_cache_dir_error(tmp: Path, archive: str) -> None:
    need_root()
    (tmp / "tfhub_modules").mkdir()
    os.chown(tmp / "tfhub_modules", OTHER_UID, OTHER_UID)
    (tmp / f"tfhub_modules-{os.geteuid()}").symlink_to(tmp)
    with pytest.raises(hubcache.CacheDirError) as info:
        hubcache.resolve(archive)
    assert info.value.exit_code == 6 and "TFHUB_CACHE_DIR" in str(info.value)


def test_explicit_root_is_trusted_as_given(
    tmp: Path, archive: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    need_root()
    group = tmp / "team-cache"
    group.mkdir()
    os.chown(group, OTHER_UID, OTHER_UID)
    group.chmod(0o777)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(group))
    with caplog.at_level(logging.WARNING, logger="hubcache"):
        assert Path(hubcache.resolve(archive)).parent == group
    assert warnings_of(caplog) == []


def test_tensorflow_hub_made_default_root_is_used(tmp: Path, archive: str) -> None:
    # tensorflow_hub creates it with the umask (0755): ours and not writable by others
    root = tmp / "tfhub_modules"
    root.mkdir(mode=0o755)
    assert Path(hubcache.resolve(archive)).parent == root


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_tmp() as path:
        yield path


def test_real_other_user_falls_back_to_its_own_folder(shared: Path) -> None:
    """root created <tmp>/tfhub_modules first; ``nobody`` must not use it."""
    archive = shared / "model.tar.gz"
    archive.write_bytes(make_tar(MEMBERS, compression="gz"))
    archive.chmod(0o644)
    root = shared / "tfhub_modules"
    root.mkdir(mode=0o755)  # root's, readable by all, as tensorflow_hub leaves it
    before = state(root)
    env = {k: v for k, v in os.environ.items() if k != "TFHUB_CACHE_DIR"}
    env["TMPDIR"] = str(shared)
    done = run_as(NOBODY, ["resolve", str(archive)], str(archive), env)
    assert done.returncode == 0, done.stderr
    fallback = shared / f"tfhub_modules-{NOBODY}"
    assert done.stdout.strip() == str(fallback / hubcache.cache_key(str(archive)))
    assert os.lstat(fallback).st_uid == NOBODY
    assert stat.S_IMODE(os.lstat(fallback).st_mode) == 0o700
    assert "belongs to another user (uid 0)" in done.stderr
    assert state(root) == before
