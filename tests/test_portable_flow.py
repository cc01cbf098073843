"""The whole resolve flow as on macOS and Windows, run here with the POSIX-only calls removed.

Each child process loads ``tests/support/portable/sitecustomize.py``: the names of :mod:`os`
that those platforms lack are deleted, ``hubcache._platform`` takes that platform's
definitions, ``os.kill`` from hubcache is forbidden on "Windows", and optionally psutil and
``/proc`` are gone too. So these tests exercise the fallbacks themselves (not only their
presence): cold and warm resolves with a file past the early-writeback size, cache
management, a dead or reused lock holder judged through psutil, a live one honoured, the
lease when nothing can tell, and the Windows rule for the default root.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import ARCHIVE, EXPECTED, debris, run_cli, tree

psutil = pytest.importorskip("psutil")

SITE = str(Path(__file__).parent / "support" / "portable")
PLATFORMS = ["win32", "darwin"]
BIG = 33 * 1024 * 1024  # past the 32 MiB early writeback (fdatasync on Linux only)
RECOVERY_BOUND = 30.0


def sim_env(
    root: Optional[Path], platform: str, *, with_psutil: bool = True, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    if root is not None:
        env["TFHUB_CACHE_DIR"] = str(root)
    env["HUBCACHE_TEST_PLATFORM"] = platform
    env["HUBCACHE_RETRY_BACKOFF"] = "0.05"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE, env.get("PYTHONPATH", "")) if p)
    if not with_psutil:
        env["HUBCACHE_TEST_NO_PSUTIL"] = "1"
    env.update(extra)
    return env


def probe(env: dict[str, str]) -> str:
    """What the child really runs as: proves the simulation is in force."""
    code = (
        "import os, hubcache._platform as p; "
        "print(p.SYSTEM, hasattr(os, 'fdatasync'), hasattr(os, 'geteuid'), "
        "p.pid_alive(os.getpid()), p.start_token(os.getpid()) is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("with_psutil", [True, False], ids=["psutil", "no-psutil"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_resolve_and_manage_without_posix_calls(
    platform: str, with_psutil: bool, model_server: ModelServer, cache_root: Path
) -> None:
    flushes = cache_root.parent / "fullfsync.log"
    env = sim_env(
        cache_root, platform, with_psutil=with_psutil, HUBCACHE_TEST_FULLFSYNC_LOG=str(flushes)
    )
    system = {"win32": "windows", "darwin": "macos"}[platform]
    # Windows without psutil (and no kernel32 here) cannot tell; signal 0 is fine on macOS
    alive = {"win32": "True" if with_psutil else "None", "darwin": "True"}[platform]
    geteuid = platform == "darwin"
    assert probe(env) == f"{system} False {geteuid} {alive} {with_psutil}"

    big = os.urandom(1024) * (BIG // 1024)
    members = [*(m for m in _members()), M("variables/big.data", big)]
    url = serve(model_server, "/m/1", make_tar(members, compression=None))
    key = hubcache.cache_key(url)

    cold = run_cli(["resolve", url], env, timeout=120)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.strip() == str(cache_root / key)
    assert tree(str(cache_root / key)) == {**EXPECTED, "variables/big.data": big}
    manifest = json.loads((cache_root / f"{key}.manifest.json").read_text())
    assert manifest["files"]["variables/big.data"][0] == BIG
    assert (
        (cache_root / f"{key}.descriptor.txt").read_bytes().startswith(b"Module: " + url.encode())
    )
    assert debris(cache_root, key) == set()
    # macOS: one drive flush before the publishing rename (fsync alone stops at the drive)
    assert (flushes.read_text() if flushes.exists() else "") == (
        "F_FULLFSYNC\n" if platform == "darwin" else ""
    )

    # the cold resolve may have used ranged parts (a loaded machine answers slowly enough to
    # look far away); the warm one makes no request at all
    asked = model_server.count("/m/1")
    warm = run_cli(["resolve", url], env)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.strip() == str(cache_root / key)
    assert model_server.count("/m/1") == asked

    for args in (["ls"], ["verify"], ["gc"], ["info", url]):
        result = run_cli(args, env)
        assert result.returncode == 0, (args, result.stderr)
    removed = run_cli(["rm", url, "--yes"], env)
    assert removed.returncode == 0, removed.stderr
    assert not (cache_root / key).exists()


def _members() -> list[M]:
    from tests.support.procs import MEMBERS

    return list(MEMBERS)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant_lock(root: Path, key: str, pid: int, token: str = "") -> str:
    uid = "ab" * 16 + token
    (root / f"{key}.lock").write_text(f"{socket.gethostname()}.{pid}.{uid}")
    (root / f"{key}.{uid}.tmp").mkdir()
    return uid


def _psutil_token(pid: int) -> str:
    return f"p{int(psutil.Process(pid).create_time() * 1000):x}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dead_holder_is_broken_at_once(
    platform: str, model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(model_server, "/dead/1", ARCHIVE)
    key = hubcache.cache_key(url)
    _plant_lock(cache_root, key, _dead_pid())
    env = sim_env(cache_root, platform, HUBCACHE_LOCK_LEASE="300", HUBCACHE_LOCK_TIMEOUT="60")
    started = time.monotonic()
    result = run_cli(["resolve", url], env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < RECOVERY_BOUND
    assert "is dead" in result.stderr
    assert debris(cache_root, key) == set()  # its lock and staging are gone


@pytest.mark.parametrize("platform", PLATFORMS)
def test_reused_pid_is_told_apart_by_psutil(
    platform: str, model_server: ModelServer, cache_root: Path
) -> None:
    """This test's own PID is alive, but the lock says it started 10 s later: reused."""
    url = serve(model_server, "/reused/1", ARCHIVE)
    key = hubcache.cache_key(url)
    token = _psutil_token(os.getpid())
    _plant_lock(cache_root, key, os.getpid(), f"p{int(token[1:], 16) + 10_000:x}")
    env = sim_env(cache_root, platform, HUBCACHE_LOCK_LEASE="300", HUBCACHE_LOCK_TIMEOUT="60")
    result = run_cli(["resolve", url], env)
    assert result.returncode == 0, result.stderr
    assert "is dead" in result.stderr
    assert debris(cache_root, key) == set()


@pytest.mark.parametrize("with_psutil", [True, False], ids=["psutil", "no-psutil"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_live_holder_is_honoured(
    platform: str, with_psutil: bool, model_server: ModelServer, cache_root: Path
) -> None:
    """A live holder (this test process, its true start time) is waited for, never broken
    (and on Windows never signalled: the simulation forbids os.kill)."""
    url = serve(model_server, "/live/1", ARCHIVE)
    key = hubcache.cache_key(url)
    uid = _plant_lock(cache_root, key, os.getpid(), _psutil_token(os.getpid()))
    env = sim_env(
        cache_root,
        platform,
        with_psutil=with_psutil,
        HUBCACHE_LOCK_LEASE="300",
        HUBCACHE_LOCK_TIMEOUT="1",
    )
    result = run_cli(["resolve", url], env)
    assert result.returncode == 8, result.stderr
    assert "gave up" in result.stderr and "Traceback" not in result.stderr
    assert (cache_root / f"{key}.lock").read_text().endswith(uid)
    assert model_server.count("/live/1") == 0


def test_windows_without_psutil_waits_for_the_lease(
    model_server: ModelServer, cache_root: Path
) -> None:
    """No psutil and no kernel32 (this is Linux): liveness cannot be told, so a dead
    holder's lock is taken over by the lease, not by a guess."""
    url = serve(model_server, "/lease/1", ARCHIVE)
    key = hubcache.cache_key(url)
    _plant_lock(cache_root, key, _dead_pid())
    env = sim_env(cache_root, "win32", with_psutil=False, HUBCACHE_LOCK_LEASE="1")
    result = run_cli(["resolve", url], env)
    assert result.returncode == 0, result.stderr
    assert "no progress for" in result.stderr and "is dead" not in result.stderr
    assert tree(str(cache_root / key)) == EXPECTED


@pytest.mark.parametrize("in_profile", [True, False], ids=["temp-in-profile", "shared-temp"])
def test_windows_default_root_is_inside_the_profile(in_profile: bool, tmp_path: Path) -> None:
    home = tmp_path / "home"
    temp = home / "AppData" / "Local" / "Temp" if in_profile else tmp_path / "shared-temp"
    temp.mkdir(parents=True)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(make_tar(_members(), compression="gz"))
    env = sim_env(None, "win32", HOME=str(home), TMPDIR=str(temp), HUBCACHE_FSYNC="0")
    env.pop("TFHUB_CACHE_DIR", None)
    result = run_cli(["resolve", str(archive)], env)
    assert result.returncode == 0, result.stderr
    key = hubcache.cache_key(str(archive))
    if in_profile:
        assert result.stdout.strip() == str(temp / "tfhub_modules" / key)
        assert "not using" not in result.stderr
    else:
        fallback = home / "AppData" / "Local" / "hubcache" / "cache"
        assert result.stdout.strip() == str(fallback / key)
        assert "outside your user profile" in result.stderr
        assert not (temp / "tfhub_modules" / key).exists()
    assert tree(result.stdout.strip()) == EXPECTED
