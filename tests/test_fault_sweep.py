"""Fail the k-th filesystem call, for every k of a clean run; and the fsync discipline.

A clean run logs every open, write, close, fsync, rename, replace, mkdir, unlink and link
hubcache makes on the cache (``fs-log``). Then, for each k, a fresh process has exactly its
k-th call fail with EIO (``fs=*#k``). After each: the entry is absent or whole, no staging
is left, the process either succeeded or reported a cache error (exit 6, never a
traceback), and a clean resolve afterwards works.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hubcache
from hubcache.local.entry import Entry
from hubcache.local.gc import execute, plan
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import (
    ARCHIVE,
    EXPECTED,
    assert_entry_whole_or_absent,
    child_env,
    debris,
    run_cli,
    staging_dirs,
    tree,
)


def logged_run(url: str, root: Path, log: Path, faults: str = "") -> tuple[int, str, list[str]]:
    spec = f"fs-log={log}" + (f",{faults}" if faults else "")
    result = run_cli(["resolve", url], child_env(root, spec))
    lines = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, lines


def test_fault_sweep_every_call(model_server: ModelServer, tmp_path: Path) -> None:
    url = serve(model_server, "/sweep/m/1", ARCHIVE)
    key = hubcache.cache_key(url)
    code, err, calls = logged_run(url, tmp_path / "clean", tmp_path / "clean.log")
    assert code == 0, err
    n = len(calls)
    assert n > 20, calls  # the sweep covers lock, staging, files, fsyncs, publish, unlock
    ops = {line.split()[0] for line in calls}
    assert {"open", "write", "close", "fsync", "rename", "replace", "mkdir", "unlink"} <= ops
    # every layer that writes goes through the hook: the lock (created, then removed), the
    # staging folder, the model files, the publishing rename, the manifest and descriptor
    lock = f"{tmp_path / 'clean'}/{key}.lock"
    assert f"open {lock}" in calls and f"unlink {lock}" in calls, calls
    assert any(line.startswith("rename ") and f"/{key}." in line for line in calls), calls
    assert any(line.startswith("replace ") and line.endswith(".manifest.json") for line in calls)

    def one(k: int) -> tuple[int, int, str]:
        root = tmp_path / f"k{k}"
        result = run_cli(["resolve", url], child_env(root, f"fs=*#{k}"))
        return k, result.returncode, result.stderr

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(1, n + 2)))
    failed = []
    for k, code, err in outcomes:
        root = tmp_path / f"k{k}"
        assert code in (0, 6), f"k={k}: exit {code}\n{err}"
        assert "Traceback" not in err, f"k={k}\n{err}"
        assert_entry_whole_or_absent(root, key)
        assert staging_dirs(root, key) == [], f"k={k}: staging left"
        if code == 0:
            assert Entry(str(root), key).state().name in ("complete", "legacy"), k
        else:
            failed.append(k)
            assert "injected fault" in err, f"k={k}\n{err}"
        # a clean run afterwards works and leaves nothing behind (after gc: a lock whose
        # unlink was the failed call names a dead holder)
        assert tree(hubcache.resolve(url, cache_dir=str(root))) == EXPECTED
        execute(plan(str(root)))
        assert debris(root, key) == set(), f"k={k}"
    print(f"fault sweep: k = 1..{n + 1} ({n} calls in a clean run), {len(failed)} failed runs")
    print("succeeded despite the fault at k =", [k for k, c, _ in outcomes if c == 0 and k <= n])
    assert failed  # the sweep really injected faults
    assert outcomes[-1][1] == 0  # k = n + 1: no call failed


def _index(lines: list[str], op: str, path: str) -> int:
    return next(i for i, line in enumerate(lines) if line == f"{op} {path}")


def test_everything_synced_before_the_publishing_rename(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = serve(model_server, "/fsync/m/1", ARCHIVE)
    key = hubcache.cache_key(url)
    code, err, lines = logged_run(url, cache_root, tmp_path / "fs.log")
    assert code == 0, err
    entry = str(cache_root / key)
    rename = next(i for i, x in enumerate(lines) if x.startswith("rename ") and x.endswith(entry))
    staging = lines[rename].split()[1]
    assert staging.endswith(".tmp")
    before = lines[:rename]
    for rel in EXPECTED:
        assert f"fsync {os.path.join(staging, rel)}" in before, rel
    for rel in ("", "variables", "assets"):
        assert f"fsync {os.path.join(staging, rel) if rel else staging}" in before, rel
    descriptor = f"{entry}.descriptor.txt"
    assert (
        _index(lines, "replace", f"{descriptor}.{_pid_of(lines, descriptor)}.part {descriptor}")
        < rename
    )
    # the root's first entry brings its CACHEDIR.TAG, synced, and the root's own name synced
    tag = f"{cache_root}/CACHEDIR.TAG"
    tag_part = next(x.split()[1] for x in before if x.startswith(f"open {tag}."))
    assert _index(lines, "fsync", tag_part) < _index(lines, "replace", f"{tag_part} {tag}")
    assert _index(lines, "replace", f"{tag_part} {tag}") < _index(lines, "fsync", str(tmp_path))
    assert _index(lines, "fsync", str(tmp_path)) < rename
    after = lines[rename:]
    assert f"fsync {cache_root}" in after  # the rename itself made durable
    manifest = f"{entry}.manifest.json"
    part = next(x.split()[1] for x in after if x.startswith("open ") and manifest in x)
    assert _index(lines, "fsync", part) < _index(lines, "replace", f"{part} {manifest}")


def _pid_of(lines: list[str], path: str) -> str:
    opened = next(x for x in lines if x.startswith(f"open {path}."))
    return opened.split()[1][len(path) + 1 : -len(".part")]


def test_failed_fsync_is_never_retried_into_a_publish(
    model_server: ModelServer, tmp_path: Path
) -> None:
    url = serve(model_server, "/fsyncfail/m/1", ARCHIVE)
    key = hubcache.cache_key(url)
    _code, _err, clean = logged_run(url, tmp_path / "clean", tmp_path / "clean.log")
    fsyncs = [x for x in clean if x.startswith("fsync ")]
    last_before_rename = max(
        i for i, x in enumerate(fsyncs) if ".tmp" in x
    )  # the staging folder itself, synced last
    for k, errno_name in ((1, "EIO"), (last_before_rename + 1, "ENOSPC")):
        root = tmp_path / f"f{k}"
        code, err, lines = logged_run(
            url, root, tmp_path / f"f{k}.log", f"fs=fsync#{k}/{errno_name}"
        )
        assert code == 6, err
        assert not (root / key).exists()
        assert not any(x.startswith("rename ") for x in lines)  # nothing was published
        assert debris(root, key) == set()
        if errno_name == "ENOSPC":
            assert "no space left on the filesystem" in err
