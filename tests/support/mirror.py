"""``hubcache serve`` as a real process for the server and mirror tests.

:class:`ServeProcess` starts ``python -m hubcache serve ...``, waits for its ``serving DIR
at URL`` line, keeps its stderr (the access log) in a file, and is stopped by its own PID
(SIGTERM, then SIGKILL if it overstays). ``port`` may be fixed so a mirror killed with -9
can come back at the same address.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

import urllib3

SRC = Path(__file__).resolve().parents[2] / "src"


class ServeProcess:
    def __init__(
        self,
        directory: str,
        *args: str,
        port: int = 0,
        env: Optional[dict[str, str]] = None,
        timeout: float = 60,
    ) -> None:
        full_env = dict(os.environ if env is None else env)
        full_env.setdefault("HUBCACHE_RETRY_BACKOFF", "0.05")
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SRC), full_env.get("PYTHONPATH", "")) if p
        )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "hubcache", "serve", directory, "--port", str(port), *args]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=full_env
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        match = re.fullmatch(r"serving (.+) at (http://\S+/)", line.strip())
        if not match:
            self.stop()
            raise AssertionError(f"hubcache serve did not start: {line!r}\n{self.stderr}")
        self.url = match.group(2)
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put("")

    @property
    def stderr(self) -> str:
        if self._stderr.closed:
            return self._final_stderr
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def get(
        self,
        path: str,
        headers: Optional[dict[str, str]] = None,
        method: str = "GET",
        timeout: float = 30,
    ) -> urllib3.BaseHTTPResponse:
        """One request with a fresh pool (no retries, no redirects)."""
        with urllib3.PoolManager(retries=False, timeout=timeout) as http:
            return http.request(method, self.url.rstrip("/") + path, headers=headers)

    def kill(self) -> None:
        """SIGKILL, then release our ends of its pipes (its stderr stays readable)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.stop()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._stderr.closed:
            self._final_stderr = self.stderr
            self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
