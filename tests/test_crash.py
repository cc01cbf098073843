"""``kill -9`` at every step of a download: nothing partial is ever visible, and the next
resolve recovers at once (the dead holder is on this host: its PID is checked, not a lease).

The fault points (``hubcache._faults``) make the child SIGKILL itself exactly at a step, in
publish order: after taking the lock, mid-download (first chunk), mid-extraction (first
file written), before the publishing rename (descriptor written), right after the rename
(manifest not yet written) and after the manifest (lock not yet released).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

import hubcache
from hubcache.local.lock import new_uid
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import (
    ARCHIVE,
    EXPECTED,
    assert_entry_whole_or_absent,
    child_env,
    debris,
    run_cli,
    tree,
)

STEPS = [
    "after-lock",
    "mid-download",
    "mid-extraction",
    "before-rename",
    "after-rename",
    "after-manifest",
]
RECOVERY_BOUND = 30.0  # seconds: a correctness bound (tensorflow_hub waits ~20 minutes)


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step(step: str, model_server: ModelServer, cache_root: Path) -> None:
    url = serve(model_server, f"/crash/{step}/1", ARCHIVE)
    key = hubcache.cache_key(url)
    crashed = run_cli(["resolve", url], child_env(cache_root, f"{step}=kill"))
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout == ""
    assert_entry_whole_or_absent(cache_root, key)
    assert (cache_root / f"{key}.lock").exists()  # the dead holder's lock is still there

    started = time.monotonic()
    after = run_cli(["resolve", url], child_env(cache_root))
    recovery = time.monotonic() - started
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == str(cache_root / key)
    assert recovery < RECOVERY_BOUND
    print(f"recovery after kill -9 {step}: {recovery:.2f}s")
    assert tree(str(cache_root / key)) == EXPECTED
    # one GET by the crashed process (none when it died before fetching), one to recover
    crashed_get = step != "after-lock"
    recovered_get = step not in ("after-rename", "after-manifest")
    assert model_server.count(f"/crash/{step}/1") == crashed_get + recovered_get
    if step not in ("after-rename", "after-manifest"):
        assert debris(cache_root, key) == set()  # resolve removed the lock and staging
    gc = run_cli(["gc"], child_env(cache_root))
    assert gc.returncode == 0, gc.stderr
    assert debris(cache_root, key) == set()
    assert hubcache.resolve(url) == str(cache_root / key)


def test_lock_of_reused_pid_is_broken(model_server: ModelServer, cache_root: Path) -> None:
    """A live PID whose start time differs from the one in the lock is a reused PID."""
    url = serve(model_server, "/reused/1", ARCHIVE)
    key = hubcache.cache_key(url)
    uid = new_uid()
    body, _, start = uid.partition("t")
    stale_uid = f"{body}t{int(start, 16) + 12345:x}"  # this PID, another start time
    (cache_root / f"{key}.lock").write_text(f"{socket.gethostname()}.{os.getpid()}.{stale_uid}")
    (cache_root / f"{key}.{stale_uid}.tmp").mkdir()
    started = time.monotonic()
    result = run_cli(["resolve", url], child_env(cache_root))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < RECOVERY_BOUND
    assert "is dead" in result.stderr
    assert debris(cache_root, key) == set()
