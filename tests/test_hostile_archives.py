"""Hostile and broken archives, tar and zip (issue 4, item 8).

Each case must end in an ``ArchiveError`` (exit 5) that says what is wrong, with nothing
written outside the staging folder and nothing published in the cache. A property test
feeds random member lists and byte mutations and checks the same invariant.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import random
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hubcache
from tests.support.archives import (
    BENIGN_TAR_NAMES,
    HOSTILE_TAR_CASES,
    M,
    append_garbage,
    concat_members,
    cut,
    cut_at_member_boundary,
    flip_byte,
    make_tar,
    make_zip,
    strip_trailer,
)
from tests.support.httpserver import ModelServer
from tests.support.trees import tree

# Seeded, so a failure reproduces; incompressible, so the deflate stream has real content.
GOOD = [
    M("saved_model.pb", b"graph" * 100),
    M("variables/v.data", random.Random(19).randbytes(5000)),
]
ESCAPE = "/tmp/hubcache-escape-test"  # where the write-through cases aim (see archives.py)


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")


def snapshot(directory: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), directory)
        for d, dirs, files in os.walk(directory)
        for n in dirs + files
    }


def refuse(
    tmp_path: Path, blob: bytes, suffix: str = ".tar.gz", error: type = hubcache.ArchiveError
) -> str:
    """Resolve ``blob`` as a local archive; it must fail with ``error`` and leave no trace."""
    cache = tmp_path / "cache"
    archive = tmp_path / f"model{suffix}"
    archive.write_bytes(blob)
    before = snapshot(tmp_path)
    with pytest.raises(error) as info:
        hubcache.resolve(str(archive), cache_dir=str(cache))
    assert info.value.exit_code == 5
    after = snapshot(tmp_path) - before
    assert after == set(), f"left behind: {sorted(after)}"  # not even the cache folder
    assert not os.path.lexists(ESCAPE)
    return str(info.value)


# -- tar: every hostile case of the factory --------------------------------------------------

WORDS = {
    "dotdot": "'..'",
    "link": "link",
    "device": "device",
    "fifo": "FIFO",
    "duplicate": "twice",
    "then": "both",
    "huge": "bytes",
    "sparse": "sparse",
    "name_over": "longer than",
    "depth": "deep",
}


@pytest.mark.parametrize("compression", [None, "gz"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TAR_CASES))
def test_hostile_tar_cases_are_refused(tmp_path: Path, case: str, compression: str | None) -> None:
    blob = make_tar(HOSTILE_TAR_CASES[case], compression=compression)
    message = refuse(tmp_path, blob, ".tar.gz" if compression else ".tar", hubcache.ArchiveError)
    words = [w for key, w in WORDS.items() if key in case]
    assert words and all(w in message for w in words), message


@pytest.mark.parametrize(("name", "lands"), sorted(BENIGN_TAR_NAMES.items()))
def test_benign_odd_names_land_inside(tmp_path: Path, name: str, lands: str) -> None:
    archive = tmp_path / "m.tar"
    archive.write_bytes(make_tar([M(name, b"ok")]))
    path = hubcache.resolve(str(archive), cache_dir=str(tmp_path / "c"))
    assert Path(path, lands).read_bytes() == b"ok"


@pytest.mark.parametrize(
    "name",
    ["a\\..\\..\\x", "x" * 256, "a/" + "é" * 128 + "/f", "a\x00b"],
    ids=["backslash_dotdot", "component_256", "component_256_bytes_utf8", "nul"],
)
def test_more_unsafe_names(tmp_path: Path, name: str) -> None:
    # pax: a ustar name field cannot hold a NUL, a pax record can
    member = M(name, b"x", type="pax_path")
    refuse(tmp_path, make_tar([member]), ".tar", hubcache.UnsafeArchiveError)


def test_pax_size_larger_than_the_limit_is_refused_before_writing(tmp_path: Path) -> None:
    blob = make_tar([M("big", b"tiny", type="pax_path", size_override=1 << 50)])
    assert "bytes" in refuse(tmp_path, blob, ".tar", hubcache.UnsafeArchiveError)


# -- stream integrity -----------------------------------------------------------------------

TAR = make_tar(GOOD)
GZ = gzip.compress(TAR, mtime=0)


@pytest.mark.parametrize(
    ("blob", "words"),
    [
        (append_garbage(GZ), "trailing data"),
        (concat_members(GZ, gzip.compress(b"evil bytes after the tar end")), "after its end"),
        (strip_trailer(GZ), "truncated"),
        (cut(GZ, len(GZ) // 2), "truncated"),
        (flip_byte(GZ, len(GZ) // 2), "corrupt"),
        (flip_byte(GZ, -6), "corrupt"),  # the ISIZE field
        (cut_at_member_boundary(GZ, keep=1), "end-of-archive"),
        (make_tar(GOOD, end_marker=False, compression="gz"), "end-of-archive"),
        (gzip.compress(TAR + b"junk after the end marker", mtime=0), "after its end"),
        (gzip.compress(flip_byte(TAR, 100), mtime=0), "checksum"),  # a header byte
    ],
    ids=[
        "trailing_garbage",
        "second_member_after_tar_end",
        "missing_gzip_trailer",
        "cut_in_half",
        "flipped_deflate_byte",
        "flipped_isize",
        "cut_at_member_boundary",
        "missing_end_marker",
        "data_after_end_marker",
        "bad_header_checksum",
    ],
)
def test_broken_streams_are_refused(tmp_path: Path, blob: bytes, words: str) -> None:
    assert words in refuse(tmp_path, blob, error=hubcache.CorruptArchiveError)


def test_zero_padding_and_split_gzip_members_are_fine(tmp_path: Path) -> None:
    half = len(TAR) // 2
    blob = concat_members(gzip.compress(TAR[:half]), gzip.compress(TAR[half:])) + bytes(4096)
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(blob)
    path = hubcache.resolve(str(archive), cache_dir=str(tmp_path / "c"))
    assert Path(path, "variables/v.data").read_bytes() == GOOD[1].data


# -- bombs and limits -----------------------------------------------------------------------

ZEROS = make_tar([M("zeros", bytes(20 * 1024 * 1024))])


def test_bz2_bomb_trips_the_default_ratio_limit(tmp_path: Path) -> None:
    assert "expands more than 2000" in refuse(
        tmp_path, bz2.compress(ZEROS), ".tar.bz2", hubcache.UnsafeArchiveError
    )


def test_gzip_bomb_trips_a_configured_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_MAX_RATIO", "50")
    message = refuse(tmp_path, gzip.compress(ZEROS), error=hubcache.UnsafeArchiveError)
    assert "expands more than 50" in message


@pytest.mark.parametrize(
    ("variable", "value", "members", "words"),
    [
        ("HUBCACHE_MAX_BYTES", "10000", [M("a", bytes(6000)), M("b", bytes(6000))], "10000 bytes"),
        ("HUBCACHE_MAX_MEMBERS", "50", [M(f"f{i}", b"x") for i in range(60)], "50 members"),
        ("HUBCACHE_MAX_DEPTH", "3", [M("a/b/c/d", b"x")], "deep"),
        ("HUBCACHE_MAX_NAME_LENGTH", "20", [M("d" * 10 + "/" + "f" * 10, b"x")], "longer"),
    ],
)
def test_limits_are_configurable(  # noqa: PLR0917 - pytest passes parameters positionally
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    members: list[M],
    words: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert words in refuse(tmp_path, make_tar(members, compression="gz"))
    monkeypatch.delenv(variable)
    archive = tmp_path / "ok.tar.gz"  # the same archive passes with the default limits
    archive.write_bytes(make_tar(members, compression="gz"))
    assert os.path.isdir(hubcache.resolve(str(archive), cache_dir=str(tmp_path / "c2")))


def test_bad_limit_value_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_MAX_MEMBERS", "0")
    with pytest.raises(hubcache.ConfigurationError):
        hubcache.resolve("https://127.0.0.1:9/m.tar.gz")


# -- zip ------------------------------------------------------------------------------------

ZIP_CASES = {
    "absolute_dotdot": [M("/../x", b"x")],
    "dotdot": [M("../x", b"x")],
    "nested_dotdot": [M("a/../../x", b"x")],
    "symlink_outside": [M("link", type="symlink", linkname="../../outside")],
    "symlink_write_through": [
        M("link", type="symlink", linkname="/tmp"),
        M("link/hubcache-escape-test", b"pwned"),
    ],
    "duplicate_file": [M("a", b"1"), M("a", b"2")],
    "file_then_dir": [M("a", b"x"), M("a", type="dir")],
    "dir_then_file": [M("a", type="dir"), M("a", b"x")],
    "file_as_parent": [M("a", b"x"), M("a/b", b"y")],
}


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_hostile_zip_cases_are_refused(tmp_path: Path, case: str) -> None:
    refuse(tmp_path, make_zip(ZIP_CASES[case]), ".zip", hubcache.UnsafeArchiveError)


def _zip_with_mode(mode: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("node")
        info.create_system = 3
        info.external_attr = mode << 16
        zf.writestr(info, b"")
    return buf.getvalue()


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK])
def test_zip_special_files_are_refused(tmp_path: Path, kind: int) -> None:
    assert "not a regular file" in refuse(
        tmp_path, _zip_with_mode(kind | 0o644), ".zip", hubcache.UnsafeArchiveError
    )


def test_zip_bomb_and_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = make_zip([M("zeros", bytes(20 * 1024 * 1024))])
    monkeypatch.setenv("HUBCACHE_MAX_RATIO", "50")
    assert "expands" in refuse(tmp_path, bomb, ".zip", hubcache.UnsafeArchiveError)
    monkeypatch.delenv("HUBCACHE_MAX_RATIO")
    good = make_zip(GOOD)
    data_at = good.index(b"PK\x03\x04", 10) - 20  # inside the first member's data
    refuse(tmp_path, flip_byte(good, data_at), ".zip", hubcache.CorruptArchiveError)
    refuse(tmp_path, cut(good, -30), ".zip", hubcache.CorruptArchiveError)


def test_hostile_archive_over_http_is_not_published(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = model_server.add(
        "/m.tar.gz", make_tar(HOSTILE_TAR_CASES["symlink_write_through"], compression="gz")
    )
    with pytest.raises(hubcache.UnsafeArchiveError):
        hubcache.resolve(url)
    assert os.listdir(cache_root) == []


# -- property: random members x random mutations --------------------------------------------

NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "c.txt", "..d"]), max_size=4).map(
    "/".join
)
MEMBER = st.builds(
    M,
    name=NAMES,
    data=st.binary(max_size=600),
    type=st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink", "fifo"]),
    linkname=st.sampled_from(["a", "../a", "/etc/passwd"]),
)
MUTATION = st.tuples(st.sampled_from(["flip", "cut", "append"]), st.integers(0, 1 << 16))


def _mutate(blob: bytes, mutations: list[tuple[str, int]]) -> bytes:
    for kind, where in mutations:
        if not blob:
            break
        if kind == "flip":
            blob = flip_byte(blob, where % len(blob))
        elif kind == "cut":
            blob = blob[: where % len(blob)]
        else:
            blob += where.to_bytes(3, "big")
    return blob


def _expected(members: list[M]) -> dict[str, bytes]:
    # A name ending in "/" is a directory in tar (old convention) and zip, whatever its type.
    return {
        "/".join(p for p in m.name.split("/") if p not in ("", ".")): m.data
        for m in members
        if m.type == "file" and not m.name.endswith("/")
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # found by hypothesis: a "file" named "/" is the root directory, not a file
    members=[M("a", b""), M("/", b"", type="file")], container="tar", mutations=[]
)
@given(
    members=st.lists(MEMBER, min_size=1, max_size=6),
    container=st.sampled_from(["tar", "tar.gz", "zip"]),
    mutations=st.lists(MUTATION, max_size=2),
)
def test_property_correct_tree_or_our_error_and_nothing_outside(
    members: list[M], container: str, mutations: list[tuple[str, int]]
) -> None:
    if container == "zip":
        members = [m for m in members if m.type in ("file", "dir", "symlink")]
        blob = make_zip(members)
    else:
        blob = make_tar(members, compression="gz" if container == "tar.gz" else None)
    blob = _mutate(blob, mutations)
    with tempfile.TemporaryDirectory() as sandbox:
        archive = Path(sandbox, f"model.{container}")
        archive.write_bytes(blob)
        cache = Path(sandbox, "cache")
        made = {"cache"}  # a published entry's root; a failed resolve makes none
        try:
            path = hubcache.resolve(str(archive), cache_dir=str(cache))
        except hubcache.ArchiveError:
            assert not cache.exists()  # nothing published, no debris, no root
            made = set()
        else:
            for dirpath, dirs, files in os.walk(path):
                for name in dirs + files:
                    mode = os.lstat(os.path.join(dirpath, name)).st_mode
                    assert stat.S_ISDIR(mode) or stat.S_ISREG(mode)
                    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
            if not mutations:
                assert tree(path) == _expected(members)
            assert not [n for n in os.listdir(cache) if n.endswith((".tmp", ".lock"))]
        assert sorted(os.listdir(sandbox)) == sorted({archive.name} | {"cache"} & made)
        assert not os.path.lexists(ESCAPE)
        assert not os.path.lexists("/etc/passwd.hubcache")


def test_zip_with_a_bad_directory_offset_is_corrupt_not_a_disk_error(cache_root: Path) -> None:
    # Found by the property test: when the end record claims the central directory starts
    # later than it does, zipfile seeks to a negative offset and raises a bare OSError(EINVAL),
    # which must not be mistaken for a full or unwritable cache (exit 6).
    blob = bytearray(make_zip([M("saved_model.pb", b"graph")]))
    end = blob.rindex(b"PK\x05\x06")
    claimed = int.from_bytes(blob[end + 16 : end + 20], "little") + 1000
    blob[end + 16 : end + 20] = claimed.to_bytes(4, "little")
    archive = cache_root.parent / "model.zip"
    archive.write_bytes(bytes(blob))
    with pytest.raises(hubcache.CorruptArchiveError) as info:
        hubcache.resolve(str(archive))
    assert info.value.exit_code == 5
    assert os.listdir(cache_root) == []
