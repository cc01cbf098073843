"""ls, info, verify, rm, prune, prefetch on a local root and on ``memory://`` (the storage
seam: the same code serves gs:// and s3://); last-used records; auto-eviction."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hubcache
from hubcache.manage.prune import Candidate, disk_usage, plan_prune, plan_remove
from hubcache.store import storage as _storage
from tests.support.cachehelp import DAY, Root, age, fill, model, run, run_json
from tests.support.httpserver import ModelServer, serve

AGES = {"old": 40.0, "mid": 10.0, "new": 3.0, "hot": 0.0}  # days since last use


@pytest.fixture(params=["local", "memory"])
def root(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Root]:
    """A fresh cache root, as TFHUB_CACHE_DIR: a folder, or its own memory:// prefix."""
    made = Root(request.param, tmp_path)
    monkeypatch.setenv("TFHUB_CACHE_DIR", made.url)
    yield made
    made.cleanup()


@pytest.fixture
def filled(model_server: ModelServer, root: Root) -> dict[str, str]:
    return fill(model_server, AGES, root)


def holder(pid: int) -> bytes:
    return f"{socket.gethostname()}.{pid}.holderuid".encode()


def dead_pid() -> int:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(dead.stdout)


def key(url: str) -> str:
    return hubcache.cache_key(url)


def test_ls_json_lists_every_entry_with_its_facts(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "ls")
    rows = {row["handle"]: row for row in data["entries"]}
    assert set(rows) == set(filled.values())
    assert [r["handle"] for r in data["entries"]] == [filled[n] for n in AGES]  # LRU first
    for name, url in filled.items():
        row = rows[url]
        assert row["key"] == key(url) and row["state"] == "complete" and row["files"] == 3
        assert row["path"] == f"{root.url}/{key(url)}" and row["size"] == root.tree_size(key(url))
        assert abs(time.time() - AGES[name] * DAY - row["last_used"]) < 60
        # a store has no mtime of its own: the manifest's time, which root.age moved back too
        downloaded = time.time() - (AGES[name] * DAY if root.kind == "memory" else 0.0)
        assert abs(downloaded - row["downloaded"]) < 60
    assert data["count"] == 4 and data["total_bytes"] == sum(r["size"] for r in rows.values())
    assert data["root"] == root.url
    if root.kind == "local":  # a bucket gets no tag: backup tools do not walk buckets
        assert root.read("CACHEDIR.TAG").startswith(b"Signature: 8a477f597d28d17")


def test_ls_sorts_filters_and_prints_totals(
    filled: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    by_size = run_json(capsys, "ls", "--sort", "size")["entries"]
    assert [r["handle"] for r in by_size] == [filled[n] for n in ("hot", "new", "mid", "old")]
    stale = run_json(capsys, "ls", "--older-than", "7d")["entries"]
    assert {r["handle"] for r in stale} == {filled["old"], filled["mid"]}
    code, out, _err = run(capsys, "ls")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["HANDLE", "KEY", "SIZE"]
    assert "40 days ago" in out and out.splitlines()[-1].startswith("4 entries, ")


def test_ls_does_not_count_as_a_use(
    filled: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_json(capsys, "ls")["entries"]
    run(capsys, "info", filled["old"])
    run(capsys, "verify", "--deep")
    assert run_json(capsys, "ls")["entries"] == before


def test_legacy_damaged_and_in_progress_states(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = "a" * 40
    root.write(f"{legacy}/variables/variables.index", b"index")
    root.write(f"{legacy}/saved_model.pb", b"pb")
    root.write(f"{legacy}.descriptor.txt", b"Module: https://legacy/m/1\n")
    root.remove(f"{key(filled['mid'])}/saved_model.pb")
    root.write(f"{'b' * 40}.lock", holder(os.getpid()))
    rows = {r["key"]: r for r in run_json(capsys, "ls")["entries"]}
    assert rows[legacy]["handle"] == "https://legacy/m/1"
    if root.kind == "local":
        assert rows[legacy]["state"] == "legacy"
    else:  # no manifest on a store: cannot be told from an unfinished upload
        assert rows[legacy]["state"] == "damaged" and "no manifest" in rows[legacy]["reason"]
    assert rows[key(filled["mid"])]["state"] == "damaged"
    assert "saved_model.pb" in rows[key(filled["mid"])]["reason"]
    assert rows["b" * 40]["state"] == "in progress"
    assert rows[key(filled["old"])]["state"] == "complete"


def test_info_by_handle_and_key_and_root(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    by_handle = run_json(capsys, "info", filled["old"])
    assert by_handle == run_json(capsys, "info", key(filled["old"]))
    assert by_handle["source"].endswith("/old/1?tf-hub-format=compressed")
    assert len(by_handle["archive"]["sha256"]) == 64
    assert by_handle["descriptor"].startswith(f"Module: {filled['old']}\n")
    assert by_handle["manifest_path"] == f"{root.url}/{key(filled['old'])}.manifest.json"
    assert run_json(capsys, "info", "--root") == {
        "root": root.url,
        "chosen_by": "TFHUB_CACHE_DIR",
    }
    code, _out, err = run(capsys, "info", "https://nowhere.example/m/1")
    assert code == 3 and "not in the cache" in err


def test_info_never_shows_the_password_tensorflow_hub_wrote_in_its_descriptor(
    root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://alice:pa55word@127.0.0.1:9/m/1"
    k = key(url)
    root.write(f"{k}/saved_model.pb", b"by hand")
    root.write(f"{k}.descriptor.txt", f"Module: {url}\n".encode())  # as given, by tensorflow_hub
    for argv in (["info", k], ["info", k, "--json"], ["ls"], ["ls", "--json"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv, err)
        assert "pa55word" not in out + err, (argv, out, err)
    assert "Module: http://alice:***@127.0.0.1:9/m/1" in run_json(capsys, "info", k)["descriptor"]


def test_verify_stat_deep_and_fix(
    filled: dict[str, str],
    root: Root,
    model_server: ModelServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "verify")[0] == 0
    data = f"{key(filled['new'])}/variables/variables.data-00000-of-00001"
    blob = bytearray(root.read(data))
    blob[5] ^= 1  # same size: only --deep can see it
    root.write(data, bytes(blob))
    assert run(capsys, "verify")[0] == 0
    result = run(capsys, "verify", "--deep", "--json")
    assert result[0] == 5
    import json

    report = json.loads(result[1])
    assert report["damaged"] == [key(filled["new"])]
    assert "sha256 differs" in next(r for r in report["results"] if not r["ok"])["problems"][0]
    before = model_server.count("/new/1")
    code, out, _err = run(capsys, "verify", "--deep", "--fix", filled["new"])
    assert code == 0 and out.startswith("fixed")
    assert model_server.count("/new/1") == before + 1
    assert run(capsys, "verify", "--deep")[0] == 0


def test_rm_asks_refuses_without_a_terminal_and_removes_siblings(
    filled: dict[str, str],
    root: Root,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    k = key(filled["old"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    code, _out, err = run(capsys, "rm", filled["old"])
    assert code == 2 and root.exists(f"{k}.manifest.json")
    assert err.endswith(
        "hubcache: error: not a terminal, so nothing was removed: add --yes to confirm\n"
    )
    sibling = f"{k}.deadbeef.tmp/x" if root.kind == "local" else f"{k}.used"
    root.write(sibling, b"")
    code, out, _err = run(capsys, "rm", "--yes", filled["old"])
    assert code == 0 and k[:12] in out
    assert not {n for n in root.names() if n.startswith(k)}
    assert {r["handle"] for r in run_json(capsys, "ls")["entries"]} == {
        filled[n] for n in ("mid", "new", "hot")
    }


def test_rm_refuses_while_a_live_process_holds_the_lock(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = f"{key(filled['old'])}.lock"
    root.write(lock, holder(os.getpid()))
    code, _out, err = run(capsys, "rm", "--yes", filled["old"])
    assert code == 8 and "lock is held" in err and root.exists(key(filled["old"]))
    root.write(lock, holder(dead_pid()))
    assert run(capsys, "rm", "--yes", filled["old"])[0] == 0
    assert not root.exists(key(filled["old"])) and not root.exists(lock)


def test_prune_plan_entry_by_entry(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = f"{key(filled['mid'])}.lock"
    root.write(lock, holder(os.getpid()))
    plan = run_json(capsys, "prune", "--older-than", "2d", "--dry-run")["plan"]
    assert [i["handle"] for i in plan["remove"]] == [filled["old"], filled["new"]]
    spared = {i["handle"]: i["reason"] for i in plan["spared"]}
    assert "lock is held" in spared[filled["mid"]] and "idle less than" in spared[filled["hot"]]
    root.remove(lock)
    before = root.names()
    sizes = {r["handle"]: r["size"] for r in run_json(capsys, "ls")["entries"]}
    limit = sizes[filled["hot"]] + sizes[filled["new"]]  # LRU first: old, then mid must go
    plan = run_json(
        capsys, "prune", "--max-size", str(limit), "--keep", filled["old"], "--dry-run"
    )["plan"]
    assert [i["handle"] for i in plan["remove"]] == [filled["mid"], filled["new"]]
    assert plan["bytes_freed"] == sizes[filled["mid"]] + sizes[filled["new"]]
    assert root.names() == before  # dry runs removed nothing
    code, out, _err = run(capsys, "prune", "--older-than", "5d", "--yes")
    assert code == 0 and out.startswith("prune: remove 2 entries")
    left = {r["handle"] for r in run_json(capsys, "ls")["entries"]}
    assert left == {filled["new"], filled["hot"]}


def test_prune_rules_are_pure_and_lru_first() -> None:
    now = 1_000_000_000.0
    c = [
        Candidate(k, k, size, now - days * DAY, "complete")
        for k, size, days in (("a", 5, 1), ("b", 5, 9), ("c", 5, 30), ("d", 5, 0.01))
    ]
    plan = plan_prune(c, now=now, max_size=6)
    assert [i.key for i in plan.remove] == ["c", "b", "a"] and plan.total_after == 5
    assert [i.key for i in plan.spared] == ["d"]
    assert plan_prune(c, now=now, older_than=20 * DAY).remove[0].key == "c"
    assert not plan_prune(c, now=now, older_than=20 * DAY, keep=frozenset("c")).remove


def test_files_shared_through_hard_links_count_once() -> None:
    """Two spellings of one model linked to one set of files: the total counts them once,
    removing one spelling frees only its own files, removing both frees the shared ones."""
    now = 1_000_000_000.0
    shared = (("1:10", 70), ("1:11", 20))
    c = [
        Candidate("a", "a", 100, now - 30 * DAY, "complete", links=shared),  # 10 of its own
        Candidate("b", "b", 90, now - 20 * DAY, "complete", links=shared),
        Candidate("c", "c", 50, now - 10 * DAY, "complete"),
    ]
    assert disk_usage(c) == 10 + 90 + 50
    plan = plan_prune(c, now=now, max_size=100)
    assert [(i.key, i.freed) for i in plan.remove] == [("a", 10), ("b", 90)]
    assert (plan.total_before, plan.bytes_freed, plan.total_after) == (150, 100, 50)
    one = plan_remove(c[:1], others=c)
    assert (one.bytes_freed, one.total_before, one.total_after) == (10, 150, 140)
    both = plan_remove(c[:2], others=c)
    assert [i.freed for i in both.remove] == [10, 90] and both.total_after == 50
    assert plan_remove(c[:1]).bytes_freed == 100  # alone in what it was told: all of it


def test_prune_refuses_a_tty_less_run_without_yes_and_needs_a_rule(
    filled: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert run(capsys, "prune", "--older-than", "1d")[0] == 2
    assert len(run_json(capsys, "ls")["entries"]) == 4
    code, _out, err = run(capsys, "prune")
    assert code == 2 and err == (
        "hubcache: error: say what to prune: --older-than DURATION and/or --max-size SIZE\n"
    )
    code, _out, err = run(capsys, "prune", "--max-size", "lots")
    assert code == 2 and err.startswith("hubcache: error: 'lots' is not a size")


def test_a_hit_records_last_use_at_most_hourly_keeping_mtime(
    model_server: ModelServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled = fill(model_server, AGES)
    path = hubcache.resolve(filled["old"])
    manifest = path + ".manifest.json"
    st = os.stat(manifest)
    assert time.time() - st.st_atime < 60 and st.st_mtime_ns == os.stat(manifest).st_mtime_ns
    age(path, used_days_ago=1 / 48)  # 30 minutes ago: not refreshed yet
    recorded = os.stat(manifest).st_atime
    hubcache.resolve(filled["old"])
    assert os.stat(manifest).st_atime == recorded
    age(filled_path := hubcache.resolve(filled["mid"]), used_days_ago=2)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "read-only file system")

    monkeypatch.setattr(os, "utime", refuse)
    assert hubcache.resolve(filled["mid"]) == filled_path  # a read-only cache still serves


def test_a_remote_hit_records_last_use_in_a_used_object_at_most_hourly(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = Root("memory", tmp_path)
    monkeypatch.setenv("TFHUB_CACHE_DIR", root.url)
    url = serve(model_server, "/used/1", model(1000))
    k = key(url)
    try:
        hubcache.resolve(url)  # the download: no record, last use is the download time
        assert not root.exists(f"{k}.used")
        hubcache.resolve(url)  # the first hit records it
        assert root.exists(f"{k}.used")
        (row,) = hubcache.Cache().entries()
        assert row.last_used >= row.downloaded and time.time() - row.last_used < 60
        root.remove(f"{k}.used")
        hubcache.resolve(url)  # within the hour: not even checked again in this process
        assert not root.exists(f"{k}.used")
        _storage._USE_NOTED.clear()  # a new process, a fresh record: left as it is
        root.age(k, 1 / 48)  # 30 minutes ago
        stamp = root.fs.modified(root._p(f"{k}.used"))
        hubcache.resolve(url)
        assert root.fs.modified(root._p(f"{k}.used")) == stamp
        _storage._USE_NOTED.clear()
        root.age(k, 2)  # two days ago: rewritten by the next hit
        hubcache.resolve(url)
        assert root.fs.modified(root._p(f"{k}.used")) > stamp

        def refuse(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "read-only bucket")

        _storage._USE_NOTED.clear()
        root.age(k, 2)
        monkeypatch.setattr(root.fs, "pipe_file", refuse)
        assert hubcache.resolve(url) == f"{root.url}/{k}"  # a read-only store still serves
        assert model_server.count("/used/1") == 1
    finally:
        monkeypatch.undo()
        root.cleanup()


def test_auto_eviction_beyond_max_size(
    model_server: ModelServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = fill(model_server, {"one": 20.0, "two": 10.0})
    monkeypatch.setenv("HUBCACHE_MAX_SIZE", "40kB")
    three = serve(model_server, "/three/1", model(15_000))  # sizes: 10, 20, 15 kB
    hubcache.resolve(three)
    present = {e.handle for e in hubcache.Cache().entries()}
    assert present == {urls["two"], three}


def test_prefetch_file_summary_and_exit_code(
    model_server: ModelServer, root: Root, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    a = serve(model_server, "/a/1", model(1000))
    b = serve(model_server, "/b/1", model(2000, b"b"))
    hubcache.resolve(a)
    import hashlib

    pin = hashlib.sha256(model(2000, b"b")).hexdigest()
    listing = tmp_path / "models.txt"
    listing.write_text(f"# models\n{a}\n\n{b} sha256={pin}  # pinned\n{model_server.url('/c/1')}\n")
    code, _out, err = run(capsys, "prefetch", str(listing))
    assert code == 3
    assert "3 handles: 1 downloaded, 1 already cached, 1 failed" in err and "/c/1" in err
    assert model_server.count("/a/1") == 1 and model_server.count("/b/1") == 1
    listing.write_text(f"{a} sha256=nothex\n")
    assert run(capsys, "prefetch", str(listing))[0] == 2


def test_the_key_prefix_ls_prints_is_accepted_by_info_rm_and_verify(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    k = key(filled["old"])
    code, out, _err = run(capsys, "ls")
    assert code == 0 and k[:12] in out
    assert run_json(capsys, "info", k[:12])["key"] == k
    code, out, _err = run(capsys, "verify", k[:12])
    assert code == 0 and out.startswith("ok")
    code, _out, _err = run(capsys, "rm", "--yes", k[:12])
    assert code == 0 and not root.exists(k)


def test_an_ambiguous_key_prefix_lists_the_candidates(
    filled: dict[str, str], root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in ("abcdef" + "0" * 34, "abcdef" + "1" * 34):  # two legacy entries
        root.write(f"{k}/saved_model.pb", b"pb")
    before = root.names()
    for command in ("info", "verify", "rm"):
        code, out, err = run(capsys, command, *(["--yes"] if command == "rm" else []), "abcdef")
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "abcdef000000" in lines[0] and "abcdef111111" in lines[0]
        assert "matches 2 entries" in lines[0]
    assert root.names() == before


def test_verify_of_an_uncached_handle_says_not_found_like_info(
    filled: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "https://nowhere.example/m/1"
    info = run(capsys, "info", missing)
    verify = run(capsys, "verify", filled["old"], missing)
    assert info[0] == verify[0] == 3
    assert verify[1] == "" and "DAMAGED" not in verify[2]
    assert verify[2].strip() == info[2].strip()


def test_rm_prints_the_caches_totals_plurals_and_a_declined_answer_exits_0(
    filled: dict[str, str],
    root: Root,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from hubcache._units import format_size

    sizes = {r["handle"]: r["size"] for r in run_json(capsys, "ls")["entries"]}
    total, old = sum(sizes.values()), sizes[filled["old"]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "rm", filled["old"])
    assert code == 0
    assert out.splitlines()[0] == (
        f"remove 1 entry, freeing {format_size(old)} "
        f"({format_size(total)} -> {format_size(total - old)})"
    )
    assert "remove 1 entry?" in err and "declined: nothing removed" in err
    assert root.exists(key(filled["old"]))
    code, out, err = run(capsys, "rm", "--yes", filled["old"], filled["mid"])
    assert code == 0 and out.startswith("remove 2 entries, ")
    assert "removed 2 entries, freed" in err
    code, out, err = run(capsys, "ls")
    assert out.splitlines()[-1].startswith("2 entries, ")
    run(capsys, "rm", "--yes", filled["new"])
    code, out, err = run(capsys, "ls")
    assert out.splitlines()[-1].startswith("1 entry, ")
