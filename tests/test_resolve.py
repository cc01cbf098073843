"""The resolve pipeline end to end against a loopback server: layout, integrity, healing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import (
    M,
    append_garbage,
    cut,
    cut_at_member_boundary,
    flip_byte,
    make_tar,
    make_zip,
    strip_trailer,
)
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import run_cli
from tests.support.trees import assert_no_entry, tree

MEMBERS = [
    M("saved_model.pb", b"graph" * 100),
    M("variables", type="dir"),
    M("variables/variables.index", b"index"),
    M("variables/variables.data-00000-of-00001", os.urandom(200_000)),
    M("assets/vocab.txt", b"word\n" * 1000),
    M("run.sh", b"#!/bin/sh\n", mode=0o4777),
]
EXPECTED = {m.name: m.data for m in MEMBERS if m.type == "file"}


def test_cold_then_warm_layout_is_tensorflow_hub_compatible(
    model_server: ModelServer, cache_root: Path
) -> None:
    archive = make_tar(MEMBERS, compression="gz")
    url = serve(model_server, "/google/m/1", archive)
    path = hubcache.resolve(url)
    key = hubcache.cache_key(url)
    assert path == str(cache_root / key)
    assert tree(path) == EXPECTED
    # the model folder holds the archive's tree and nothing of ours; siblings are ours
    assert sorted(os.listdir(cache_root)) == sorted(
        ["CACHEDIR.TAG", key, f"{key}.descriptor.txt", f"{key}.manifest.json"]
    )
    assert (
        (cache_root / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    lines = (cache_root / f"{key}.descriptor.txt").read_text().split("\n")
    assert lines[0] == f"Module: {url}"
    assert lines[1].startswith("Download Time: ")
    assert lines[2].startswith("Downloader Hostname: ") and lines[2].endswith(
        f"(PID:{os.getpid()})"
    )
    manifest = json.loads((cache_root / f"{key}.manifest.json").read_text())
    assert manifest["archive"]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert manifest["archive"]["bytes"] == len(archive)
    assert manifest["files"]["saved_model.pb"] == [
        500,
        hashlib.sha256(b"graph" * 100).hexdigest(),
    ]
    # modes are sanitised: no setuid, no world-write, executables stay executable
    assert os.stat(os.path.join(path, "run.sh")).st_mode & 0o7777 == 0o755
    # the warm path makes no request
    assert model_server.count("/google/m/1") == 1
    for _ in range(3):
        assert hubcache.resolve(url) == path
    assert model_server.count("/google/m/1") == 1


@pytest.mark.parametrize("compression", [None, "gz", "bz2", "xz"])
def test_tar_compressions_are_recognised_by_content(
    model_server: ModelServer, cache_root: Path, compression: str | None
) -> None:
    url = serve(model_server, "/m/1", make_tar(MEMBERS, compression=compression))
    assert tree(hubcache.resolve(url)) == EXPECTED


def test_existing_query_is_kept(model_server: ModelServer, cache_root: Path) -> None:
    model_server.add("/m/1", make_tar(MEMBERS, compression="gz"))
    url = model_server.url("/m/1") + "?version=3"
    hubcache.resolve(url)
    (request,) = [r for r in model_server.requests if r.path.startswith("/m/1")]
    assert request.path == "/m/1?version=3&tf-hub-format=compressed"


def test_redirects_are_followed(model_server: ModelServer, cache_root: Path) -> None:
    model_server.add("/storage/m.tar.gz", make_tar(MEMBERS, compression="gz"))
    model_server.redirect("/google/m/1", "/storage/m.tar.gz", status=302)
    assert tree(hubcache.resolve(model_server.url("/google/m/1"))) == EXPECTED


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar", ".zip"])
def test_archive_urls_are_fetched_as_given(
    model_server: ModelServer, cache_root: Path, suffix: str
) -> None:
    body = (
        make_zip(MEMBERS)
        if suffix == ".zip"
        else make_tar(MEMBERS, compression=None if suffix == ".tar" else "gz")
    )
    model_server.add(f"/files/m{suffix}", body)
    url = model_server.url(f"/files/m{suffix}")
    assert tree(hubcache.resolve(url)) == EXPECTED
    (request,) = model_server.requests
    assert request.path == f"/files/m{suffix}"


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_local_archive_files(tmp_path: Path, cache_root: Path, suffix: str) -> None:
    archive = tmp_path / f"model{suffix}"
    archive.write_bytes(
        make_zip(MEMBERS) if suffix == ".zip" else make_tar(MEMBERS, compression="gz")
    )
    path = hubcache.resolve(str(archive))
    assert path == str(cache_root / hubcache.cache_key(str(archive)))
    assert tree(path) == EXPECTED


def test_local_directory_is_returned_as_it_is(tmp_path: Path, cache_root: Path) -> None:
    (tmp_path / "model").mkdir()
    assert hubcache.resolve(str(tmp_path / "model")) == str(tmp_path / "model")
    assert os.listdir(cache_root) == []
    with pytest.raises(hubcache.ModelNotFoundError) as info:
        hubcache.resolve(str(tmp_path / "missing"))
    assert info.value.exit_code == 3


def test_not_found(model_server: ModelServer, cache_root: Path) -> None:
    with pytest.raises(hubcache.ModelNotFoundError, match="404"):
        hubcache.resolve(model_server.url("/nothing/1"))
    assert not [n for n in os.listdir(cache_root) if not n.endswith("CACHEDIR.TAG")]


def _snapshot(top: Path) -> dict[str, bytes | None]:
    """Every name under ``top`` (folders as None), with each file's bytes."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs:
            out[os.path.relpath(os.path.join(dirpath, name), top)] = None
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, top)] = Path(full).read_bytes()
    return out


@pytest.mark.parametrize("existed", [False, True], ids=["new-root", "existing-root"])
def test_a_failed_resolve_leaves_the_cache_as_it_was(
    model_server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    """A resolve that fails on its first request creates no root (nor the parents it would
    need) and changes nothing in a root that existed, not even a CACHEDIR.TAG; the library
    and the command line alike."""
    from tests.support.emulators import free_port

    root = tmp_path / "new" / "cache"
    if existed:  # a root tensorflow_hub made: an entry of its own, no tag
        (root / "abc").mkdir(parents=True)
        (root / "abc" / "saved_model.pb").write_bytes(b"graph")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root))
    monkeypatch.setenv("HUBCACHE_RETRIES", "0")
    before = _snapshot(tmp_path)
    urls = {
        model_server.url("/nothing/1"): hubcache.ModelNotFoundError,  # 404
        model_server.add("/page/1", b"<!doctype html><p>log in"): hubcache.NotAnArchiveError,
        f"http://127.0.0.1:{free_port()}/m/1": hubcache.DownloadError,  # nobody listens
    }
    for url, error in urls.items():
        with pytest.raises(error):
            hubcache.resolve(url)
        assert _snapshot(tmp_path) == before, url
    done = run_cli(["resolve", model_server.url("/nothing/2")], dict(os.environ))
    assert done.returncode == 3, done.stderr
    assert _snapshot(tmp_path) == before


GOOD = make_tar(MEMBERS, compression="gz")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (flip_byte(GOOD, len(GOOD) // 2), hubcache.CorruptArchiveError),  # inside deflate data
        (flip_byte(GOOD, len(GOOD) - 6), hubcache.CorruptArchiveError),  # the CRC32
        (flip_byte(GOOD, len(GOOD) - 2), hubcache.CorruptArchiveError),  # the length
        (strip_trailer(GOOD), hubcache.CorruptArchiveError),
        (cut(GOOD, len(GOOD) // 2), hubcache.CorruptArchiveError),
        (append_garbage(GOOD), hubcache.CorruptArchiveError),
        (cut_at_member_boundary(GOOD), hubcache.CorruptArchiveError),
        (make_tar(MEMBERS, compression="gz", end_marker=False), hubcache.CorruptArchiveError),
    ],
    ids=[
        "flip-data",
        "flip-crc",
        "flip-length",
        "no-trailer",
        "cut",
        "garbage",
        "cut-at-member-boundary",
        "no-end-marker",
    ],
)
def test_corrupt_archives_are_refused_and_leave_nothing(
    model_server: ModelServer, cache_root: Path, body: bytes, error: type[Exception]
) -> None:
    url = serve(model_server, "/m/1", body)
    with pytest.raises(error) as info:
        hubcache.resolve(url)
    assert url in str(info.value)
    assert_no_entry(cache_root)


def test_concatenated_gzip_members_are_valid(model_server: ModelServer, cache_root: Path) -> None:
    raw = make_tar(MEMBERS)
    half = (len(raw) // 2) // 512 * 512
    body = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    url = serve(model_server, "/m/1", body)
    assert tree(hubcache.resolve(url)) == EXPECTED


def test_sha256_pin(model_server: ModelServer, cache_root: Path) -> None:
    url = serve(model_server, "/m/1", GOOD)
    with pytest.raises(hubcache.ChecksumMismatchError):
        hubcache.resolve(url, sha256="0" * 64)
    assert_no_entry(cache_root)
    right = hashlib.sha256(GOOD).hexdigest()
    path = hubcache.resolve(url, sha256=right)
    assert tree(path) == EXPECTED
    assert hubcache.resolve(url, sha256=right.upper()) == path  # a hit checks the record
    with pytest.raises(hubcache.ChecksumMismatchError):
        hubcache.resolve(url, sha256="1" * 64)


@pytest.mark.parametrize("pin", ["xyz", "0" * 63, "0" * 65, "g" * 64, "", " " * 64])
def test_a_malformed_pin_is_refused_before_any_download(
    model_server: ModelServer, cache_root: Path, pin: str
) -> None:
    url = serve(model_server, "/m/1", GOOD)
    with pytest.raises(hubcache.ConfigurationError) as info:
        hubcache.resolve(url, sha256=pin)
    assert "64 hexadecimal digits" in str(info.value) and info.value.exit_code == 2
    assert model_server.requests == [] and list(cache_root.iterdir()) == []


def test_a_malformed_pin_on_the_command_line_is_a_usage_error(
    model_server: ModelServer, cache_root: Path
) -> None:

    url = serve(model_server, "/m/1", GOOD)
    done = run_cli(["resolve", "--sha256", "xyz", url], dict(os.environ))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "rm" not in done.stderr and model_server.requests == []


def test_deleted_files_are_healed_with_one_warning(
    model_server: ModelServer, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve(model_server, "/m/1", GOOD)
    path = hubcache.resolve(url)
    # what temp-folder cleaners do: files deleted, folders kept
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    with caplog.at_level("WARNING", logger="hubcache"):
        assert hubcache.resolve(url) == path
    assert tree(path) == EXPECTED
    assert model_server.count("/m/1") == 2
    assert len([r for r in caplog.records if "damaged" in r.getMessage()]) == 1
    assert not [n for n in os.listdir(cache_root) if n.endswith((".tmp", ".trash", ".lock"))]


def test_files_deleted_after_a_warm_hit_are_healed_in_the_same_process(
    model_server: ModelServer, cache_root: Path
) -> None:
    """A hit remembers the entry as verified (the warm path's shortcut); that memory must
    still notice files deleted afterwards, through their folders' mtimes."""
    url = serve(model_server, "/m/1", GOOD)
    path = hubcache.resolve(url)
    # downloaded an hour ago: a deletion below then surely changes the folders' mtimes,
    # even on a file system whose clock ticks coarser than this test runs
    for dirpath, _dirs, _files in os.walk(path):
        os.utime(dirpath, (os.stat(dirpath).st_atime, os.stat(dirpath).st_mtime - 3600))
    assert hubcache.resolve(url) == path  # a hit: the shortcut now trusts this entry
    assert model_server.count("/m/1") == 1
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    assert hubcache.resolve(url) == path
    assert tree(path) == EXPECTED
    assert model_server.count("/m/1") == 2


def test_truncated_file_is_detected_in_a_new_process(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(model_server, "/m/1", GOOD)
    path = hubcache.resolve(url)
    with open(os.path.join(path, "saved_model.pb"), "r+b") as f:
        f.truncate(10)
    hubcache.local.entry._VERIFIED.clear()  # what a new process starts with
    assert hubcache.resolve(url) == path
    assert tree(path) == EXPECTED
    assert model_server.count("/m/1") == 2


def test_tensorflow_hub_entry_made_by_hand_is_used_without_download(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(model_server, "/m/1", GOOD)
    key = hubcache.cache_key(url)
    (cache_root / key / "variables").mkdir(parents=True)
    (cache_root / key / "saved_model.pb").write_bytes(b"by hand")
    (cache_root / key / "variables" / "variables.index").write_bytes(b"i")
    (cache_root / f"{key}.descriptor.txt").write_text(f"Module: {url}\n")
    assert hubcache.resolve(url) == str(cache_root / key)
    assert model_server.count("/m/1") == 0
    # adopted: a manifest now lists the hand-made tree, which is left untouched
    manifest = json.loads((cache_root / f"{key}.manifest.json").read_text())
    assert manifest["adopted"] is True and manifest["files"]["saved_model.pb"][0] == 7
    assert (cache_root / key / "saved_model.pb").read_bytes() == b"by hand"


@pytest.mark.parametrize("damage", ["empty", "variables-without-graph"])
def test_visibly_damaged_legacy_entries_are_downloaded_again(
    model_server: ModelServer, cache_root: Path, damage: str
) -> None:
    url = serve(model_server, "/m/1", GOOD)
    key = hubcache.cache_key(url)
    (cache_root / key / "variables").mkdir(parents=True)
    if damage == "variables-without-graph":
        (cache_root / key / "variables" / "variables.index").write_bytes(b"i")
    assert tree(hubcache.resolve(url)) == EXPECTED
    assert model_server.count("/m/1") == 1


def test_a_manifest_whose_rename_was_lost_is_healed(
    model_server: ModelServer, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Publishing syncs the root once, after the manifest: a crash may keep the manifest
    and lose the tree's rename (its staging copy stays as debris). That entry is damaged,
    never served: it is downloaded again, with a warning (the staging copy is left to the
    debris rules of ``hubcache gc``)."""
    url = serve(model_server, "/m/1", GOOD)
    key = hubcache.cache_key(url)
    hubcache.resolve(url)
    os.rename(cache_root / key, cache_root / f"{key}.{'0' * 32}.tmp")  # the lost rename
    assert hubcache.resolve(url) == str(cache_root / key)
    assert tree(str(cache_root / key)) == EXPECTED
    assert model_server.count("/m/1") == 2
    assert "the model folder is missing" in caplog.text


def test_wrong_content_length_is_refused(model_server: ModelServer, cache_root: Path) -> None:
    from tests.support.httpserver import Fault

    # a Content-Length 100 bytes short cuts the gzip stream before its trailer
    url = serve(model_server, "/m/1", GOOD, faults=(Fault(wrong_length=-100),))
    with pytest.raises(hubcache.CorruptArchiveError, match="truncated"):
        hubcache.resolve(url)
    assert_no_entry(cache_root)


def test_zip_is_checked_too(model_server: ModelServer, cache_root: Path) -> None:
    good = make_zip(MEMBERS)
    model_server.add("/m.zip", flip_byte(good, 200))
    with pytest.raises(hubcache.ArchiveError):
        hubcache.resolve(model_server.url("/m.zip"))
    assert_no_entry(cache_root)


def test_empty_archive_is_refused(model_server: ModelServer, cache_root: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz"):
        pass
    url = serve(model_server, "/m/1", buf.getvalue())
    with pytest.raises(hubcache.CorruptArchiveError, match="no files"):
        hubcache.resolve(url)
    assert_no_entry(cache_root)
