"""The CLI as users run it: real processes, stdout holds paths only, exit codes as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer
from tests.support.procs import run_cli

ARCHIVE = make_tar([M("saved_model.pb", b"graph"), M("variables/v", b"0" * 5000)], compression="gz")


def test_resolve_prints_one_path_per_line_and_nothing_else(
    model_server: ModelServer, cache_root: Path
) -> None:
    a = model_server.add("/a/1", ARCHIVE)
    b = model_server.add("/b/1", ARCHIVE)
    result = run_cli(["resolve", a, b, "--cache-dir", str(cache_root), "-v"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(cache_root / hubcache.cache_key(a)),
        str(cache_root / hubcache.cache_key(b)),
    ]
    assert "downloading" in result.stderr  # -v logs go to stderr, never stdout


def test_tfhub_cache_dir_alias(model_server: ModelServer, tmp_path: Path) -> None:
    url = model_server.add("/a/1", ARCHIVE)
    result = run_cli(["resolve", url, "--tfhub_cache_dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path / hubcache.cache_key(url)}\n"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/missing/1", None, 3),
        ("/html/1", b"<!doctype html><html>login</html>", 5),
        ("/corrupt/1", ARCHIVE[: len(ARCHIVE) // 2], 5),
    ],
)
def test_exit_codes_and_one_line_on_stderr(
    model_server: ModelServer, cache_root: Path, path: str, body: bytes | None, code: int
) -> None:
    url = model_server.add(path, body) if body is not None else model_server.url(path)
    result = run_cli(["resolve", url])
    assert result.returncode == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubcache: error: ") and url in lines[0]


def test_usage_errors_exit_2(cache_root: Path) -> None:
    missing = run_cli(["resolve"])
    assert missing.returncode == 2 and missing.stderr.startswith("usage: hubcache resolve ")
    assert "the following arguments are required: HANDLE" in missing.stderr
    scheme = run_cli(["resolve", "ftp://host/model"])
    assert scheme.returncode == 2
    assert scheme.stderr.startswith("hubcache: error: ") and "ftp://host/model" in scheme.stderr
    unknown = run_cli(["frobnicate"])
    assert unknown.returncode == 2 and "invalid choice: 'frobnicate'" in unknown.stderr
    assert os.listdir(cache_root) == []


def test_progress_bar_forced_on_goes_to_stderr(model_server: ModelServer, cache_root: Path) -> None:
    url = model_server.add("/a/1", ARCHIVE)
    result = run_cli(["resolve", url], extra_env={"TFHUB_DOWNLOAD_PROGRESS": "1"})
    assert result.returncode == 0
    assert result.stdout.strip() == str(cache_root / hubcache.cache_key(url))
    bar = f"{url}:   0%|"  # a tqdm bar named after the handle, sized from Content-Length
    assert bar in result.stderr and f"/{len(ARCHIVE)} [" in result.stderr


def test_cache_dir_command_says_which_rule_chose(tmp_path: Path) -> None:
    result = run_cli(["cache-dir"], extra_env={"TFHUB_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout == f"{tmp_path}\n"
    assert result.stderr == "hubcache: chosen by TFHUB_CACHE_DIR\n"


def test_demo_runs_offline_and_cleans_up() -> None:
    result = run_cli(["demo"])
    assert result.returncode == 0, result.stderr
    assert "cold resolve" in result.stdout and "warm resolve" in result.stdout
    assert "server requests: 1" in result.stdout
    listing = result.stdout.split("cache contents:\n")[1].splitlines()
    listing.remove("  CACHEDIR.TAG")  # sorted among the keys, where depends on the key
    key = next(line.strip()[:-1] for line in listing if line.endswith("/"))
    at = listing.index(f"  {key}/")
    assert listing[at + 1 : at + 6] == [  # the model's files, right under its entry folder
        "    fingerprint.pb (97 bytes)",
        "    saved_model.pb (18235 bytes)",
        "    assets/labels.txt (13 bytes)",
        "    variables/variables.data-00000-of-00001 (337 bytes)",
        "    variables/variables.index (238 bytes)",
    ]
    assert listing[at + 6 :] == [
        f"  {key}.descriptor.txt",
        f"  {key}.manifest.json",
        f"removed the temporary cache root {result.stdout.split('cache root: ')[1].split()[0]}",
    ]


def test_serve_announces_its_url_and_serves(tmp_path: Path, cache_root: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "1.tar.gz").write_bytes(ARCHIVE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubcache", "serve", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"serving {tmp_path} at http://127.0.0.1:")
        url = line.split(" at ", 1)[1].strip() + "m/1"
        path = hubcache.resolve(url)
        assert Path(path, "saved_model.pb").read_bytes() == b"graph"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_load_without_tensorflow_names_the_extra(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = model_server.add("/a/1", ARCHIVE)
    code = (
        "import sys, hubcache\n"
        "sys.modules['tensorflow'] = None  # as if it were not installed\n"
        "try:\n"
        f"    hubcache.load({url!r})\n"
        "except hubcache.MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert "pip install 'hubcache[tf]'" in result.stdout, result.stderr
