"""``hubcache gc``: debris of dead or silent holders goes, anything a live process may use
stays; ``--dry-run`` prints the same plan and removes nothing. Resolve does the same for
its own key when it takes the lock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hubcache
from hubcache.local.lock import new_uid
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import ARCHIVE, EXPECTED, child_env, run_cli, tree

OLD = time.time() - 2 * 3600  # older than the default grace period (one hour)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age(path: Path, when: float = OLD) -> None:
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), (when, when))
    os.utime(path, (when, when))


def key(n: int) -> str:
    return f"{n:040x}"


def staging(root: Path, k: str, uid: str, old: bool = False) -> Path:
    path = root / f"{k}.{uid}.tmp"
    (path / "variables").mkdir(parents=True)
    (path / "variables" / "data").write_bytes(b"x" * 1000)
    if old:
        age(path)
    return path


def populate(root: Path) -> tuple[set[str], set[str]]:
    """A cache with every kind of debris; returns (names that must go, names that stay)."""
    host = socket.gethostname()
    goes, stays = set(), set()
    # 1: a dead holder on this host: lock and staging go at once, however fresh
    uid = uuid.uuid4().hex
    (root / f"{key(1)}.lock").write_text(f"{host}.{dead_pid()}.{uid}")
    goes |= {f"{key(1)}.lock", staging(root, key(1), uid).name}
    # 2: a live holder on this host (this process), silent for hours: stays
    uid = new_uid()
    lock = root / f"{key(2)}.lock"
    lock.write_text(f"{host}.{os.getpid()}.{uid}")
    age(lock)
    stays |= {lock.name, staging(root, key(2), uid, old=True).name}
    # 3: a holder on another host: kept while recent, taken when silent past the grace
    uid = uuid.uuid4().hex
    (root / f"{key(3)}.lock").write_text(f"elsewhere.example.123.{uid}")
    stays |= {f"{key(3)}.lock", staging(root, key(3), uid).name}
    uid = uuid.uuid4().hex
    lock = root / f"{key(4)}.lock"
    lock.write_text(f"elsewhere.example.123.{uid}")
    age(lock)
    goes |= {lock.name, staging(root, key(4), uid, old=True).name}
    uid = uuid.uuid4().hex
    lock = root / f"{key(5)}.lock"
    lock.write_text(f"elsewhere.example.123.{uid}")
    age(lock)
    stays |= {lock.name, staging(root, key(5), uid).name}  # its staging still grows
    # 5: orphan staging, trash, half-written and broken-lock files: by age
    for n, suffix in enumerate(("a.tmp", "b.trash", "lock.c.broken", "manifest.json.77.part")):
        for old in (True, False):
            path = root / f"{key(10 + n)}.{suffix}"
            if suffix.endswith(("tmp", "trash")):
                (path / "sub").mkdir(parents=True)
                (path / "sub" / "f").write_bytes(b"y" * 10)
            else:
                path.write_text("z")
            if old:
                age(path)
            (goes if old else stays).add(path.name)
            path.rename(root / f"{key(20 + n + 10 * old)}.{suffix}")
            (goes if old else stays).discard(path.name)
            (goes if old else stays).add(f"{key(20 + n + 10 * old)}.{suffix}")
    # never touched: entries, their files, anything that is not ours
    entry = root / key(50)
    entry.mkdir()
    (entry / "saved_model.pb").write_bytes(b"pb")
    for name in (f"{key(50)}.manifest.json", f"{key(50)}.descriptor.txt", "CACHEDIR.TAG",
                 "notes.txt", "other.tmp"):  # fmt: skip
        (root / name).write_text("keep")
        age(root / name)
    age(entry)
    stays |= {key(50), f"{key(50)}.manifest.json", f"{key(50)}.descriptor.txt", "CACHEDIR.TAG",
              "notes.txt", "other.tmp"}  # fmt: skip
    return goes, stays


def test_dry_run_then_gc(cache_root: Path) -> None:
    goes, stays = populate(cache_root)
    before = set(os.listdir(cache_root))
    assert before == goes | stays

    dry = run_cli(["gc", "--dry-run"], child_env(cache_root))
    assert dry.returncode == 0, dry.stderr
    planned = {Path(line.split()[2]).name for line in dry.stdout.splitlines()}
    assert all(line.startswith("would remove ") for line in dry.stdout.splitlines())
    assert planned == goes
    assert set(os.listdir(cache_root)) == before  # nothing removed
    assert len(goes) > 1 and f"would remove {len(goes)} items, " in dry.stderr

    done = run_cli(["gc"], child_env(cache_root))
    assert done.returncode == 0, done.stderr
    assert {Path(line.split()[1]).name for line in done.stdout.splitlines()} == goes
    assert set(os.listdir(cache_root)) == stays
    again = run_cli(["gc"], child_env(cache_root))
    assert again.stdout == "" and "removed 0 items, 0 bytes" in again.stderr


def test_grace_option(cache_root: Path) -> None:
    path = cache_root / f"{key(7)}.x.tmp"
    path.mkdir()
    age(path, time.time() - 120)
    assert run_cli(["gc"], child_env(cache_root)).stdout == ""
    assert path.exists()
    done = run_cli(["gc", "--grace", "60"], child_env(cache_root))
    assert "orphan, unchanged for" in done.stdout
    assert not path.exists()


def test_resolve_removes_debris_of_its_key(model_server: ModelServer, cache_root: Path) -> None:
    url = serve(model_server, "/gc/m/1", ARCHIVE)
    k = hubcache.cache_key(url)
    old = staging(cache_root, k, uuid.uuid4().hex, old=True)
    fresh = staging(cache_root, k, uuid.uuid4().hex)
    trash = cache_root / f"{k}.{uuid.uuid4().hex}.trash"
    trash.mkdir()
    age(trash)
    other = staging(cache_root, key(99), uuid.uuid4().hex, old=True)
    path = hubcache.resolve(url)
    assert tree(path) == EXPECTED
    assert not old.exists() and not trash.exists()
    assert fresh.exists()  # may belong to a live process whose lock was taken over
    assert other.exists()  # another key's debris waits for `hubcache gc`
