"""Processes: the child environment, the model server, timed pipelines, result checks."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Optional

from .children import RESULT_PREFIX


def child_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment of every child: no inherited cache/hubcache settings, no proxy,
    bytecode written and used as an installed package's would be."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUBCACHE_", "TFHUB_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        # an installed package has its bytecode; without it every import compiles anew
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class Server:
    """``python -m hubcache serve DIR`` on 127.0.0.1 with an OS-chosen port."""

    def __init__(
        self, python: str, root: str, log_path: str, rate_limit: Optional[int] = None
    ) -> None:
        self.argv = [python, "-m", "hubcache", "serve", root, "--host", "127.0.0.1", "--port", "0"]
        if rate_limit:
            self.argv += ["--rate-limit", str(rate_limit)]
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen[str]] = None
        self.base = ""

    def start(self, timeout: float = 30.0) -> str:
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=child_env(),
                start_new_session=True,
            )
        finally:
            log.close()
        lines: queue.Queue[Optional[str]] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def drain() -> None:  # keep reading so the server never blocks on a full pipe
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            first = None
        m = re.match(r"serving .* at (http://127\.0\.0\.1:\d+)/", first or "")
        if not m:
            self.stop()
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(
                f"server did not start: {' '.join(self.argv[1:])!r}\n"
                f"first stdout line: {first!r}\nstderr tail:\n{tail}"
            )
        self.base = m.group(1)
        return self.base

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FarServer(Server):
    """``benchmarks/_farlink.py DIR``: a far CDN on loopback (per-connection cap, one link
    for all connections, a wait before each answer); same start-up line as ``Server``."""

    def __init__(self, python: str, root: str, log_path: str, spec: FarLink) -> None:
        super().__init__(python, root, log_path)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
        script = os.path.join(here, "_farlink.py")
        self.argv = [python, script, root, "--per-conn", str(spec.per_conn), "--link",
                     str(spec.link), "--delay", str(spec.delay)]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FarLink:
    per_conn: int  # bytes/s of each connection
    link: int  # bytes/s of all connections together
    delay: float  # seconds before each answer

    def describe(self) -> str:
        mib = 1024 * 1024
        return (
            f"{self.per_conn / mib:g} MiB/s per connection, {self.link / mib:g} MiB/s link, "
            f"{self.delay * 1e3:g} ms before each answer"
        )


@dataclasses.dataclass
class RunResult:
    wall: float
    rss_kb: int  # sum over the pipeline's processes of each one's peak RSS
    returncode: int
    stdout: str
    stderr: str


def run_pipeline(
    cmds: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: Optional[str] = None,
) -> RunResult:
    """Run ``cmds[0] | cmds[1] | ...``; wall time and per-process peak RSS via wait4."""
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    timed_out = threading.Event()

    def kill_all() -> None:
        for p in procs:
            if p.returncode is None:
                try:
                    p.kill()
                except OSError:
                    pass

    t0 = time.perf_counter()

    def on_timeout() -> None:
        timed_out.set()
        kill_all()

    timer = threading.Timer(timeout, on_timeout)
    timer.start()
    rss = 0
    codes: list[int] = []
    out = b""
    try:
        prev: Optional[IO[bytes]] = None
        for i, cmd in enumerate(cmds):
            err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
            errs.append(err)
            last = i == len(cmds) - 1
            p = subprocess.Popen(
                list(cmd),
                stdin=prev if prev is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=dict(env),
                cwd=cwd,
            )
            if prev is not None:
                prev.close()  # the child holds its own copy; keep SIGPIPE semantics
            procs.append(p)
            prev = None if last else p.stdout
        assert procs[-1].stdout is not None
        out = procs[-1].stdout.read()
        procs[-1].stdout.close()
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            rss += usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)
        wall = time.perf_counter() - t0
    finally:
        timer.cancel()
        kill_all()
    stderr = b""
    for err in errs:
        err.seek(0)
        stderr += err.read()
        err.close()
    code = next((c for c in codes if c != 0), 0)
    if timed_out.is_set():
        code = code or -9
        stderr += f"\n[bench] killed after {timeout:.0f} s timeout".encode()
    return RunResult(
        wall, rss, code, out.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def parse_child(res: RunResult) -> dict[str, Any]:
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise RuntimeError(f"exit code {res.returncode}; stderr tail:\n{res.stderr[-2500:].strip()}")


def rmtree(path: str) -> None:
    """Remove a tree even when the cache made files or directories read-only."""
    if not os.path.lexists(path):
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path)


def check_tree(root: str, manifest: Mapping[str, int]) -> Optional[str]:
    """None when ``root`` holds the archive's files with the right sizes, else a message."""
    for member, size in manifest.items():
        p = os.path.join(root, *member.split("/"))
        try:
            got = os.path.getsize(p)
        except OSError:
            return f"missing {member} under the result directory"
        if got != size:
            return f"{member}: {got} bytes, expected {size}"
    return None


def environment() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        if shutil.which(argv[0]) is None:
            return "not installed"
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "curl": version(["curl", "--version"]),
        "pigz": version(["pigz", "--version"]),
        "tar": version(["tar", "--version"]),
    }
