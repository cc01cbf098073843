"""Repeated archive members: identical repeats are accepted, any difference is refused.

tensorflow_hub's own tests pack models with ``tarfile.add(dir)`` and then add each file
again, so their archives hold every file twice, byte for byte; tensorflow_hub extracts them,
and as its plug-in we must too. A repeat that differs (size, mode, bytes) could show a
reviewer one file and install another, so it stays refused (the hostile corpus holds those
cases: ``duplicate_file*`` in tests/support/archives.py).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar, make_zip
from tests.support.trees import tree


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")


def model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph" * 300)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(3000))
    return model


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tarfile_add_dir_then_each_file_again_is_accepted(tmp_path: Path, mode: str) -> None:
    """What tensorflow_hub's test utilities write: the folder, then every file once more."""
    model = model_dir(tmp_path)
    archive = tmp_path / ("m.tar.gz" if mode.endswith("gz") else "m.tar")
    with tarfile.open(archive, mode) as tar:
        tar.add(model, arcname="")
        for path in sorted(model.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model).as_posix())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert len(names) > len(set(names)), "the archive must really repeat members"

    path = hubcache.resolve(str(archive), cache_dir=str(tmp_path / "cache"))
    assert tree(path) == tree(str(model))
    manifest = Path(path + ".manifest.json").read_text()
    assert "variables/variables.index" in manifest


def test_identical_repeat_in_a_crafted_tar_and_a_zip_is_accepted(tmp_path: Path) -> None:
    members = [M("a/x", b"same"), M("a", type="dir"), M("a/x", b"same"), M("b", b"")]
    for name, blob in (("m.tar", make_tar(members)), ("m.zip", make_zip(members))):
        archive = tmp_path / name
        archive.write_bytes(blob)
        path = hubcache.resolve(str(archive), cache_dir=str(tmp_path / f"cache-{name}"))
        assert tree(path) == {"a/x": b"same", "b": b""}


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([M("a", b"one"), M("a", b"two")], "different content"),
        ([M("a", b"one"), M("a", b"three")], "different sizes"),
        ([M("a", b"x", mode=0o644), M("a", b"x", mode=0o755)], "different modes"),
        ([M("a", b"x"), M("a", b"x"), M("a", b"y")], "different content"),
        ([M("a", b"x"), M("a", type="dir")], "both"),
    ],
    ids=["same_size_other_bytes", "other_size", "other_mode", "third_copy_differs", "as_dir"],
)
def test_a_repeat_that_differs_is_refused(tmp_path: Path, members: list[M], words: str) -> None:
    archive = tmp_path / "m.tar"
    archive.write_bytes(make_tar(members))
    cache = tmp_path / "cache"
    with pytest.raises(hubcache.UnsafeArchiveError) as info:
        hubcache.resolve(str(archive), cache_dir=str(cache))
    assert words in str(info.value)
    assert not cache.exists()  # a failed resolve makes no root


def test_a_zip_repeat_that_differs_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    archive.write_bytes(make_zip([M("a", b"one"), M("a", b"two")]))
    with pytest.raises(hubcache.UnsafeArchiveError, match="different content"):
        hubcache.resolve(str(archive), cache_dir=str(tmp_path / "cache"))


def test_a_repeat_counts_against_the_member_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_MAX_MEMBERS", "3")
    archive = tmp_path / "m.tar"
    archive.write_bytes(make_tar([M("a", b"x")] * 4))
    with pytest.raises(hubcache.UnsafeArchiveError, match="more than 3 members"):
        hubcache.resolve(str(archive), cache_dir=str(tmp_path / "cache"))


def test_the_corpus_repeats_differ_the_way_their_names_say() -> None:
    import io

    from tests.support.archives import HOSTILE_TAR_CASES

    def members(case: str) -> list[tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(make_tar(HOSTILE_TAR_CASES[case]))) as tar:
            return tar.getmembers()

    a, b = members("duplicate_file_same_size")
    assert a.name == b.name and a.size == b.size
    a, b = members("duplicate_file_other_mode")
    assert a.name == b.name and a.size == b.size and a.mode != b.mode


def test_the_mirrors_archive_check_agrees_on_repeats() -> None:
    """`hubcache serve --upstream` checks archives without extracting them: the same rule."""
    from hubcache._config import Limits
    from hubcache.archive.verify import ArchiveVerifier

    def check(members: list[M]) -> None:
        verifier = ArchiveVerifier(Limits())
        verifier.feed(make_tar(members, compression="gz"))
        verifier.finish()

    check([M("a", b"same"), M("b", b""), M("a", b"same")])
    with pytest.raises(hubcache.UnsafeArchiveError, match="different content"):
        check([M("a", b"one"), M("a", b"two")])
