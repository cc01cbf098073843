"""Careless inputs, tried as a new user would: each gets one line naming what was wrong and
what to do, with the documented exit code; never a traceback, never a silent wrong result.
One test (or a few) per row of the table in issue 21, in its order.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import run_cli


def cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, with this (hermetic) environment plus ``variables``."""
    return run_cli(args, {**os.environ, **variables})


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- 1: a cache root that is a regular file -------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["ls"], ["verify"], ["prune", "--older-than", "1d", "--dry-run"], ["gc"], ["gc", "--dry-run"]],
)
def test_a_cache_root_that_is_a_file_is_exit_6(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"x")
    done = cli(*command, "--cache-dir", str(root))
    assert done.returncode == 6, (done.returncode, done.stderr)
    assert str(root) in one_line(done) and "not a folder" in done.stderr
    assert done.stdout == ""
