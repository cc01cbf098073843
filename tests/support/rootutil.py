"""Helpers for tests that need another user or a read-only filesystem, while running as root.

Root ignores permission bits, so "another user" is made real two ways: folders chowned to
a uid that is not ours, and a child Python process that drops to ``nobody`` (65534) with
``os.setuid``. The child imports everything and warms the whole resolve path *before*
dropping privileges: the interpreter may live in a folder ``nobody`` cannot read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534

_CHILD = """
import json, os, sys
import hubcache, hubcache.cli.main
args = json.loads(sys.argv[1])
hubcache.resolve(args["warm_archive"], cache_dir=args["warm_root"])  # imports the whole path
hubcache.cli.main.build_parser()
os.setgroups([])
os.setgid(args["uid"])
os.setuid(args["uid"])
os.chdir("/")
sys.exit(hubcache.cli.main.main(args["argv"]))
"""


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to chown folders to another uid or drop privileges)")


@contextlib.contextmanager
def shared_tmp() -> Iterator[Path]:
    """A sticky, world-writable folder like /tmp that ``nobody`` can reach (pytest's
    tmp_path sits under a 0700 folder of root)."""
    path = Path(tempfile.mkdtemp(prefix="hubcache-shared-"))
    try:
        path.chmod(0o1777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as(
    uid: int, argv: list[str], warm_archive: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``hubcache <argv>`` as ``uid`` in a child process; returns the finished process."""
    need_root()
    warm_root = tempfile.mkdtemp(prefix="hubcache-warm-")
    try:
        payload = json.dumps(
            {"uid": uid, "argv": argv, "warm_archive": warm_archive, "warm_root": warm_root}
        )
        return subprocess.run(
            [sys.executable, "-c", _CHILD, payload],
            env={**env, "TFHUB_DOWNLOAD_PROGRESS": "0", "HUBCACHE_FSYNC": "0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(warm_root, ignore_errors=True)


@contextlib.contextmanager
def read_only_view(source: Path) -> Iterator[Path]:
    """A read-only bind mount of ``source`` (a mounted volume, as in a container image);
    skips the test when this machine does not allow mounting."""
    need_root()
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    target = Path(tempfile.mkdtemp(prefix="hubcache-ro-"))
    try:
        bind = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
        if bind.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
        try:
            ro = subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True
            )
            if ro.returncode != 0:
                pytest.skip(f"cannot remount read-only: {ro.stderr.decode().strip()}")
            yield target
        finally:
            subprocess.run(["umount", str(target)], check=True)
    finally:
        target.rmdir()
