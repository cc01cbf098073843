"""SIGTERM and Ctrl-C (SIGINT) while ``python -m hubcache resolve`` downloads or extracts:
staging and lock removed, exit 143 / 130, and the next run works.

Signals come from outside, as a user's or a scheduler's would, at three moments: while the
archive streams in (the reader thread is receiving), while the server has gone silent
(the reader thread is blocked in a socket read: cleanup must not wait for the read
timeout), and while the main thread is inside the extraction (a fault point holds it there).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import hubcache
from tests.support.httpserver import Fault, ModelServer, serve
from tests.support.procs import (
    ARCHIVE,
    EXPECTED,
    child_env,
    debris,
    finish,
    run_cli,
    staging_bytes,
    start_cli,
    tree,
    wait_for,
)

EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}
MOMENTS = {
    "streaming": (Fault(rate_limit=len(ARCHIVE) // 4, times=1), ""),
    "stalled": (Fault(stall_after=len(ARCHIVE) // 3, times=1), ""),
    "extracting": (None, "mid-extraction=sleep:60"),
}


@pytest.mark.parametrize("moment", sorted(MOMENTS))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_cleans_up(
    signum: signal.Signals, moment: str, model_server: ModelServer, cache_root: Path
) -> None:
    fault, faults = MOMENTS[moment]
    path = f"/sig/{signum.name}/{moment}"
    url = serve(model_server, path, ARCHIVE, faults=(fault,) if fault else ())
    key = hubcache.cache_key(url)
    env = child_env(cache_root, faults, HUBCACHE_READ_TIMEOUT="60")
    proc = start_cli(["resolve", url], env, interruptible=True)
    if moment == "stalled":  # nothing reaches the disk: wait for the request instead
        wait_for(lambda: model_server.count(path) == 1, what="the request")
        time.sleep(0.5)
    else:
        wait_for(lambda: staging_bytes(cache_root, key) > 0, what="the download to start")
    started = time.monotonic()
    proc.send_signal(signum)
    code, out, err = finish(proc, timeout=30)
    assert code == EXIT[signum], err
    assert time.monotonic() - started < 10  # a correctness bound: far below the read timeout
    assert out == ""
    assert debris(cache_root, key) == set()  # no staging, no lock
    assert not (cache_root / key).exists()

    again = run_cli(["resolve", url], child_env(cache_root))
    assert again.returncode == 0, again.stderr
    assert tree(again.stdout.strip()) == EXPECTED
    assert debris(cache_root, key) == set()
