"""Disk full, for real and by fault: a clear CacheDirError (exit 6) naming the filesystem,
the bytes written and needed; staging removed, lock released, no entry.

Real: a 2 MB tmpfs (needs root and mount; skipped otherwise) gives ENOSPC, and
RLIMIT_FSIZE in the child gives EFBIG (SIGXFSZ ignored, as the kernel would otherwise kill
it). By fault: ENOSPC/EDQUOT/EFBIG at the write, close or fsync of a staging file.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer, serve
from tests.support.procs import ARCHIVE, EXPECTED, child_env, debris, run_cli, tree

BIG = make_tar(
    [M("saved_model.pb", b"pb"), M("variables/data", bytes(3_000_000))], compression=None
)

LIMITED = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from hubcache.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], root: Path, key: str, *, too_large: bool = False
) -> None:
    assert result.returncode == 6, result.stderr
    if too_large:  # EFBIG: a file size limit, not a full disk ("no space left" with 70 GB free)
        assert "reached the largest file this process may write" in result.stderr
        assert "no space left" not in result.stderr
    else:
        assert "no space left on the filesystem mounted at" in result.stderr
    assert "after writing" in result.stderr
    assert result.stdout == ""
    assert not (root / key).exists()
    assert debris(root, key) == set()  # staging removed, lock released


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_enospc_on_a_full_tmpfs(model_server: ModelServer, tmp_path: Path) -> None:
    url = serve(model_server, "/full/m/1", BIG)
    key = hubcache.cache_key(url)
    with tmpfs(tmp_path / "small", "2m") as root:
        result = run_cli(["resolve", url], child_env(root))
        assert_clean_failure(result, root, key)
        assert f"mounted at {root} " in result.stderr
        assert "more bytes needed" in result.stderr
        # the same cache still serves what fits
        small = serve(model_server, "/full/small/1", ARCHIVE)
        fits = run_cli(["resolve", small], child_env(root))
        assert fits.returncode == 0, fits.stderr
        assert tree(fits.stdout.strip()) == EXPECTED


def test_efbig_under_rlimit_fsize(model_server: ModelServer, cache_root: Path) -> None:
    url = serve(model_server, "/fsize/m/1", BIG)
    key = hubcache.cache_key(url)
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, "1000000", "resolve", url],
        env=child_env(cache_root),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_failure(result, cache_root, key, too_large=True)
    assert "File too large" in result.stderr
    written = int(re.search(r"after writing (\d+) bytes", result.stderr).group(1))  # type: ignore[union-attr]
    assert abs(written - 1_000_000) < 50_000  # about the bytes that fit under the limit


@pytest.mark.parametrize(
    ("op", "errno_name", "text"),
    [
        ("write", "ENOSPC", "No space left on device"),
        ("close", "EDQUOT", "Disk quota exceeded"),
        ("fsync", "ENOSPC", "No space left on device"),
        ("write", "EFBIG", "File too large"),
    ],
)
def test_disk_full_at_each_call(
    op: str, errno_name: str, text: str, model_server: ModelServer, cache_root: Path
) -> None:
    url = serve(model_server, f"/fault/{op}/{errno_name}", ARCHIVE)
    key = hubcache.cache_key(url)
    log = cache_root.parent / f"{uuid.uuid4().hex}.log"
    clean = run_cli(["resolve", url], child_env(cache_root.parent / "clean", f"fs-log={log}"))
    assert clean.returncode == 0, clean.stderr
    calls = [line for line in log.read_text().splitlines() if line.startswith(op + " ")]
    k = 1 + next(i for i, line in enumerate(calls) if "variables.data" in line)
    result = run_cli(["resolve", url], child_env(cache_root, f"fs={op}#{k}/{errno_name}"))
    assert_clean_failure(result, cache_root, key, too_large=errno_name == "EFBIG")
    assert text in result.stderr
    again = run_cli(["resolve", url], child_env(cache_root))
    assert again.returncode == 0, again.stderr


def test_disk_full_while_publishing_names_the_handle(
    model_server: ModelServer, cache_root: Path
) -> None:
    """Full at the last step (the publishing rename): every file was written, so the message
    names the handle and does not claim that nothing was written."""
    url = serve(model_server, "/fault/publish/1", ARCHIVE)
    key = hubcache.cache_key(url)
    result = run_cli(["resolve", url], child_env(cache_root, "fs=rename#1/ENOSPC"))
    assert result.returncode == 6, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"hubcache: error: cannot store {url}: no space left")
    assert "after writing 0 bytes" not in line
    assert not (cache_root / key).exists() and debris(cache_root, key) == set()


def test_export_past_a_file_size_limit_says_so(model_server: ModelServer, cache_root: Path) -> None:
    """EFBIG while writing an export is a size limit, not "no space left" (x3)."""
    url = serve(model_server, "/fsize/export/1", BIG)
    assert run_cli(["resolve", url], child_env(cache_root)).returncode == 0
    out = cache_root.parent / "out.tar"
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, "1000000", "export", str(out), "--all"],
        env=child_env(cache_root),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 6, result.stderr
    assert "reached the largest file this process may write" in result.stderr
    assert "no space left" not in result.stderr
    assert not out.exists() and list(cache_root.parent.glob("out.tar.*")) == []
