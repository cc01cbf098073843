"""Real processes for the concurrency, crash and fault tests.

Every worker is a fresh ``python`` running hubcache against a loopback server, started with
``subprocess`` and stopped by its own PID. Faults are asked for through
``HUBCACHE_TEST_FAULTS``, read by ``tests/support/faults/sitecustomize.py`` (put on the
child's ``PYTHONPATH``), which fills the hook points of ``hubcache._faults``; the package
itself carries only those points, so the code under test is the code users run.
Workers that must start together wait for a "go" file after importing hubcache,
which makes the race window as wide as the download itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional

from tests.support.archives import M, make_tar
from tests.support.trees import tree

MEMBERS = [
    M("saved_model.pb", b"graph" * 2000),
    M("variables", type="dir"),
    M("variables/variables.index", b"index" * 10),
    M("variables/variables.data-00000-of-00001", bytes(range(256)) * 1200),
    M("assets", type="dir"),  # tensorflow_hub creates only the folders an archive lists
    M("assets/vocab.txt", b"word\n" * 2000),
]
EXPECTED = {m.name: m.data for m in MEMBERS if m.type == "file"}
ARCHIVE = make_tar(MEMBERS, compression=None)  # uncompressed: a wide, steady download
FAULTS_SITE = str(Path(__file__).parent / "faults")  # its sitecustomize injects the faults
ENTRY_FILES = {"CACHEDIR.TAG"}  # plus <key>, <key>.descriptor.txt, <key>.manifest.json

# Imports hubcache first, then waits for the go file, so N workers race on the resolve only.
WORKER = r"""
import os, sys, time
import hubcache
go = sys.argv[2]
while go and not os.path.exists(go):
    time.sleep(0.005)
print(hubcache.resolve(sys.argv[1]), flush=True)
"""


def child_env(root: Path, faults: str = "", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TFHUB_CACHE_DIR"] = str(root)
    env["HUBCACHE_RETRY_BACKOFF"] = "0.05"
    if faults:
        env["HUBCACHE_TEST_FAULTS"] = faults
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (FAULTS_SITE, os.environ.get("PYTHONPATH", "")) if p
        )
    env.update(extra)
    return env


def start_worker(url: str, env: dict[str, str], go: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, go],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_cli(
    args: Iterable[str], env: dict[str, str], *, interruptible: bool = False
) -> subprocess.Popen[str]:
    """``python -m hubcache ARGS``. ``interruptible``: for a test that sends SIGINT, the
    child starts with SIGINT's default disposition, as a terminal's foreground job has it. A
    shell starts background jobs with SIGINT ignored, so a pytest run with ``&`` would pass
    that on and the child would never see the Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "hubcache", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint if interruptible else None,  # noqa: PLW1509 - one sigaction
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    args: Iterable[str],
    env: Optional[Mapping[str, str]] = None,
    timeout: float = 60,
    *,
    extra_env: Optional[Mapping[str, str]] = None,
    stdout: Optional[int] = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """``python -m hubcache ARGS`` in a child process, bounded by ``timeout``: the one CLI
    runner of the tests. ``env`` is the child's whole environment (None: this process's),
    ``extra_env`` variables laid over it; ``stdout`` another target than a pipe (say, the
    write end of a closed pipe); ``python`` another interpreter (a venv's)."""
    base = os.environ if env is None else env
    return subprocess.run(
        [python, "-m", "hubcache", *args],
        env={**base, **(extra_env or {})},
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing it by PID if it overstays) and return (code, out, err)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"worker {proc.pid} did not finish in {timeout}s: {err}") from None
    return proc.returncode, out, err


def outputs(procs: list[subprocess.Popen[str]]) -> list[str]:
    """Each process's stdout, stripped, once all have finished; each must exit 0."""
    found = []
    for proc in procs:
        code, out, err = finish(proc)
        assert code == 0, err
        found.append(out.strip())
    return found


def debris(root: Path, key: str) -> set[str]:
    """Names in ``root`` other than a published entry's (and CACHEDIR.TAG)."""
    ok = ENTRY_FILES | {key, f"{key}.descriptor.txt", f"{key}.manifest.json"}
    if not root.exists():  # a failed resolve removes the root it made
        return set()
    return set(os.listdir(root)) - ok


def assert_entry_whole_or_absent(root: Path, key: str) -> None:
    """The invariant of every crash: ``<key>/`` is absent or holds the whole archive."""
    path = root / key
    if path.exists():
        assert tree(str(path)) == EXPECTED, "a partial entry is visible"


def wait_for(predicate: object, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def staging_dirs(root: Path, key: str) -> list[Path]:
    return [p for p in root.glob(f"{key}.*.tmp") if p.is_dir()]


def staging_bytes(root: Path, key: str) -> int:
    total = 0
    for stage in staging_dirs(root, key):
        for dirpath, _dirs, files in os.walk(stage):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
    return total


def lock_holder_pid(root: Path, key: str) -> Optional[int]:
    try:
        text = (root / f"{key}.lock").read_text()
    except OSError:
        return None
    parts = text.rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def run_with_site(
    site: Path, code: str, *paths: Path, bare: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter right after ``site.addsitedir(site)``: exactly what
    ``site`` does with site-packages, so a plug-in's ``.pth`` is tested without writing to a
    real environment. ``paths`` become ``PYTHONPATH``; no ``HUBCACHE_*`` or ``PYTHON*``
    variable is inherited. ``bare`` (``python -S``): not even this environment's
    site-packages, as if hubcache were not installed."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HUBCACHE_", "PYTHON"))}
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    environ.update(env)
    flags = ["-S"] if bare else []
    return subprocess.run(
        [sys.executable, *flags, "-c", f"import site; site.addsitedir({str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
