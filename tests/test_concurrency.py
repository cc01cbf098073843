"""Many real processes, one handle: one download, one complete entry, nothing left over.

Workers are separate ``python`` processes (tests/support/procs.py) against a throttled
loopback server, so the race window is the whole download. The lock only saves work:
with it turned into a no-op (``no-lock=1``) every answer must still be complete.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import hubcache
from hubcache.local.lock import new_uid
from tests.support.httpserver import Fault, ModelServer, serve
from tests.support.procs import (
    ARCHIVE,
    EXPECTED,
    child_env,
    debris,
    finish,
    lock_holder_pid,
    outputs,
    run_cli,
    staging_bytes,
    start_cli,
    start_worker,
    tree,
    wait_for,
)
from tests.support.tfenv import TF_PYTHON

RATE = len(ARCHIVE)  # bytes per second: about one second per download


def race(url: str, root: Path, tmp_path: Path, n: int, faults: str = "") -> list[str]:
    go = tmp_path / "go"
    env = child_env(root, faults)
    workers = [start_worker(url, env, str(go)) for _ in range(n)]
    time.sleep(0.3)  # let them import; a late one only takes the fast path
    go.touch()
    return outputs(workers)


@pytest.mark.parametrize("n", [8, 16])
def test_n_processes_download_once(
    n: int, model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = serve(model_server, "/race/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE),))
    paths = race(url, cache_root, tmp_path, n)
    key = hubcache.cache_key(url)
    assert model_server.count("/race/m/1") == 1
    assert set(paths) == {str(cache_root / key)}
    assert tree(paths[0]) == EXPECTED
    assert debris(cache_root, key) == set()


def test_without_the_lock_every_answer_is_complete(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = serve(model_server, "/nolock/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE),))
    paths = race(url, cache_root, tmp_path, 6, faults="no-lock=1")
    key = hubcache.cache_key(url)
    assert model_server.count("/nolock/m/1") > 1  # the switch really removed the lock
    assert set(paths) == {str(cache_root / key)}
    assert tree(paths[0]) == EXPECTED
    assert debris(cache_root, key) == set()  # losers removed their staging
    assert hubcache.resolve(url) == paths[0]


def _foreign_lock(root: Path, key: str) -> tuple[Path, Path]:
    uid = uuid.uuid4().hex
    lock = root / f"{key}.lock"
    lock.write_text(f"build-host-7.example.{os.getpid() + 100000}.{uid}")
    stage = root / f"{key}.{uid}.tmp"
    stage.mkdir()
    return lock, stage


def test_other_host_holder_honoured_while_it_progresses_then_taken_over(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(model_server, "/foreign/m/1", ARCHIVE)
    key = hubcache.cache_key(url)
    lock, stage = _foreign_lock(cache_root, key)
    proc = start_cli(["resolve", url], child_env(cache_root, HUBCACHE_LOCK_LEASE="1.5"))
    # Three lease periods of progress: staging grows, then only the lock is refreshed.
    for i in range(15):
        if i < 8:
            (stage / f"part{i}").write_bytes(b"x" * 1000)
        else:
            os.utime(lock)
        time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()
        assert model_server.count("/foreign/m/1") == 0
    code, out, err = finish(proc)  # silent from now on: taken over after the lease
    assert code == 0, err
    assert out.strip() == str(cache_root / key)
    assert model_server.count("/foreign/m/1") == 1
    assert "no progress" in err
    assert tree(out.strip()) == EXPECTED
    # the holder elsewhere may still come back: its staging is left for it (or gc)
    assert debris(cache_root, key) == {stage.name}


def test_stopped_holder_resumes_after_takeover_and_loses_cleanly(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(
        model_server, "/stopped/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE // 3, times=1),)
    )
    key = hubcache.cache_key(url)
    env = child_env(cache_root, HUBCACHE_LOCK_LEASE="1")
    first = start_cli(["resolve", url], env)
    try:
        wait_for(lambda: staging_bytes(cache_root, key) > 0, what="the first download")
        first.send_signal(signal.SIGSTOP)
        code, out, err = finish(start_cli(["resolve", url], env))
        assert code == 0, err
        assert "no progress" in err
        assert out.strip() == str(cache_root / key)
    finally:
        first.send_signal(signal.SIGCONT)
    code, first_out, err = finish(first)
    assert code == 0, err
    assert first_out.strip() == out.strip()
    assert tree(out.strip()) == EXPECTED
    assert model_server.count("/stopped/m/1") == 2
    assert debris(cache_root, key) == set()


def test_waiting_is_visible_and_rate_limited(model_server: ModelServer, cache_root: Path) -> None:
    """A live holder on this host (this test process) that keeps growing its staging."""
    url = serve(model_server, "/wait/m/1", ARCHIVE)
    key = hubcache.cache_key(url)
    uid = new_uid()
    (cache_root / f"{key}.lock").write_text(f"{socket.gethostname()}.{os.getpid()}.{uid}")
    stage = cache_root / f"{key}.{uid}.tmp"
    stage.mkdir()
    (stage / "f").write_bytes(b"x" * 2_500_000)
    env = child_env(cache_root, HUBCACHE_LOCK_TIMEOUT="6")
    started = time.monotonic()
    proc = run_cli(["resolve", "-v", url], env)
    waited = time.monotonic() - started
    assert proc.returncode == 8, proc.stderr  # LockTimeoutError: the holder never finished
    status = [x for x in proc.stderr.splitlines() if x.startswith("hubcache: waiting for")]
    expected = f"pid {os.getpid()} on {socket.gethostname()}, 2.5 MB extracted so far"
    assert any(line.endswith(expected) for line in status), proc.stderr  # the CLI status
    assert any(f"{expected} to download {url}" in line for line in status)  # the INFO log
    assert len(status) <= 2 * (waited / 5 + 1)  # at most one of each every five seconds
    assert model_server.count("/wait/m/1") == 0
    assert f"{key}.lock" in os.listdir(cache_root)  # a live holder's lock is never broken


def test_holder_killed_while_others_wait(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = serve(
        model_server, "/killed/m/1", ARCHIVE, faults=(Fault(rate_limit=RATE // 4, times=1),)
    )
    key = hubcache.cache_key(url)
    env = child_env(cache_root)
    holder = start_cli(["resolve", url], env)
    wait_for(lambda: staging_bytes(cache_root, key) > 0, what="the download")
    assert lock_holder_pid(cache_root, key) == holder.pid
    waiters = [start_cli(["resolve", url], env) for _ in range(3)]
    time.sleep(0.5)
    killed = time.monotonic()
    holder.kill()
    holder.communicate()
    for waiter in waiters:
        code, out, err = finish(waiter, timeout=30)  # a correctness bound, not a benchmark
        assert code == 0, err
        assert out.strip() == str(cache_root / key)
    print(f"recovery after kill -9 of the holder: {time.monotonic() - killed:.2f}s")
    assert model_server.count("/killed/m/1") == 2
    assert tree(str(cache_root / key)) == EXPECTED
    assert debris(cache_root, key) == set()


# -- tensorflow_hub and hubcache racing on one cache -------------------------------------

# Runs in the TF env: import (slow), say so, wait for the go file, then hub.resolve.
TF_WORKER = r"""
import os, pathlib, sys, time
import tensorflow_hub as hub
pathlib.Path(sys.argv[3]).touch()
while sys.argv[2] and not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
print("RESULT " + hub.resolve(sys.argv[1]), flush=True)
"""


def start_tf(url: str, root: Path, go: str, ready: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFHUB_", "HUBCACHE_"))}
    env.update(TFHUB_CACHE_DIR=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    return subprocess.Popen(
        [TF_PYTHON, "-c", TF_WORKER, url, go, str(ready)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tf_result(proc: subprocess.Popen[str]) -> str:
    code, out, err = finish(proc, timeout=240)
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    assert code == 0 and lines, err[-4000:]
    return lines[-1][len("RESULT ") :]


@pytest.mark.interop
@pytest.mark.timeout(300)
@pytest.mark.skipif(not TF_PYTHON, reason="HUBCACHE_TF_PYTHON is unset (.ci/tf-env.sh)")
@pytest.mark.parametrize("first", ["hubcache", "tensorflow_hub"])
def test_tensorflow_hub_and_hubcache_race(
    first: str, model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = serve(
        model_server, f"/interop/{first}/1", ARCHIVE, faults=(Fault(rate_limit=RATE // 2, times=1),)
    )
    key = hubcache.cache_key(url)
    lock = cache_root / f"{key}.lock"
    go, ready = tmp_path / "go", tmp_path / "ready"
    tf = start_tf(url, cache_root, str(go) if first == "hubcache" else "", ready)
    try:
        wait_for(ready.exists, timeout=120, what="tensorflow_hub to import")
        if first == "hubcache":
            ours = start_cli(["resolve", url], child_env(cache_root))
            wait_for(lambda: staging_bytes(cache_root, key) > 0, what="our download")
            go.touch()  # tensorflow_hub now finds our lock and must wait for it
        else:
            wait_for(lambda: staging_bytes(cache_root, key) > 0, what="its download")
            assert str(tf.pid) in lock.read_text()
            ours = start_cli(["resolve", "-v", url], child_env(cache_root))
        code, out, err = finish(ours)
        theirs = tf_result(tf)
    finally:
        if tf.poll() is None:
            tf.kill()
            tf.communicate()
    assert code == 0, err
    assert out.strip() == theirs == str(cache_root / key)
    assert model_server.count(f"/interop/{first}/1") == 1  # each waited for the other
    assert tree(theirs) == EXPECTED
    assert debris(cache_root, key) == set()
    if first == "tensorflow_hub":
        assert f"waiting for pid {tf.pid}" in err


def test_a_root_removed_by_a_failed_resolve_is_made_again_for_the_next(tmp_path: Path) -> None:
    """A failed resolve removes the root it made; another resolve that found that root
    before (and is about to take its lock in it) makes it again rather than failing with
    "cannot create the lock file". The two processes' steps, interleaved by hand."""
    from hubcache._config import load_config
    from hubcache.local.entry import Entry
    from hubcache.local.target import LocalTarget

    root = tmp_path / "new" / "cache"
    config = load_config(cache_dir=str(root))
    failing = LocalTarget(Entry(str(root), "a" * 40), "h1", config).lock(None)  # makes it
    other = LocalTarget(Entry(str(root), "b" * 40), "h2", config).lock(None)  # finds it
    assert root.is_dir()
    failing.release()  # its download failed before its lock was taken: the root goes
    assert not (tmp_path / "new").exists()
    assert other.wait_for_turn(lambda: False)  # the lock file: the root made again
    assert os.listdir(root) == ["b" * 40 + ".lock"]
    other.release()
    assert os.listdir(tmp_path) == []
