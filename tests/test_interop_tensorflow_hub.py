"""Interop with the real tensorflow_hub 0.16.1: each side must read the cache the other wrote.

TensorFlow is never imported in the pytest process: every tensorflow_hub action runs in a
subprocess of ``$HUBCACHE_TF_PYTHON``, the python of a separate environment made by
``.ci/tf-env.sh`` (``export HUBCACHE_TF_PYTHON=$(bash .ci/tf-env.sh | tail -1)``). Without
that variable the whole module is skipped.

The model is a tiny real SavedModel made by ``scripts/make_sample_model.py`` (``y = x*w + b``
with ``w = [1, 2, 3]``, ``b = 0.5``), packed as .tar.gz and served on 127.0.0.1 by
``python -m hubcache serve`` (or, for the test that pins tensorflow_hub's own behaviour, by a
plain ``http.server`` in a thread).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.tfenv import (
    REPO,
    SAMPLE_EXPECTED,
    SAMPLE_MODEL,
    SRC,
    TF_PYTHON,
    interop_marks,
    run_result,
)

MAKE_SAMPLE_MODEL = REPO / "scripts" / "make_sample_model.py"
MODEL_PATH = "models/tiny/1"  # served as DIR/models/tiny/1.tar.gz

EXPECTED = SAMPLE_EXPECTED
TF_TIMEOUT = 240  # seconds for one TF subprocess (import alone is ~4 s)

pytestmark = interop_marks(600)

# tensorflow_hub writes exactly this (resolver._write_module_descriptor_file), no final newline.
DESCRIPTOR_RE = re.compile(
    r"Module: (?P<handle>[^\n]*)\n"
    r"Download Time: (?P<time>[^\n]*)\n"
    r"Downloader Hostname: (?P<host>[^\n]*) \(PID:(?P<pid>\d+)\)"
)

# Runs in the TF env. argv[1] is a JSON spec: {"url", "ops": [...], "cache_dir"?, "path"?}.
# Ops run in order; after "forbid_network" any urllib.request.urlopen call (the only way
# tensorflow_hub downloads over http) fails and is recorded in "blocked".
TF_SCRIPT = r"""
import json, os, sys, urllib.request

spec = json.loads(sys.argv[1])
blocked = []


def forbidden_urlopen(*args, **kwargs):
    target = args[0] if args else kwargs.get("url")
    blocked.append(getattr(target, "full_url", str(target)))
    raise AssertionError("network use after forbid_network: %r" % blocked[-1])


import tensorflow as tf
import tensorflow_hub as hub

x = tf.constant([1.0, 2.0, 3.0], tf.float32)


def run_model(model):
    out = model.signatures["serving_default"](x=x)
    return {
        "y": [float(v) for v in out["y"].numpy()],
        "total": float(out["total"].numpy()),
        "labels": model.labels().numpy().decode("utf-8"),
    }


result = {"tensorflow_hub": hub.__version__, "pid": os.getpid()}
for op in spec["ops"]:
    if op == "forbid_network":
        urllib.request.urlopen = forbidden_urlopen
    elif op == "hub_resolve":
        result["hub_resolve"] = hub.resolve(spec["url"])
    elif op == "hub_load":
        result["hub_load"] = run_model(hub.load(spec["url"]))
    elif op == "hubcache_load":
        import hubcache

        model = hubcache.load(spec["url"], cache_dir=spec["cache_dir"])
        result["hubcache_load"] = run_model(model)
    elif op == "saved_model_load":
        result["saved_model_load"] = run_model(tf.saved_model.load(spec["path"]))
    else:
        raise SystemExit("unknown op %r" % op)
result["blocked"] = blocked
print("RESULT " + json.dumps(result))
"""


# ---------------------------------------------------------------------------- helpers


def cache_key(handle: str) -> str:
    return hashlib.sha1(handle.encode("utf8"), usedforsecurity=False).hexdigest()


def parse_descriptor(text: str) -> dict[str, Any]:
    match = DESCRIPTOR_RE.fullmatch(text)
    assert match, f"descriptor is not tensorflow_hub's 3-line format: {text!r}"
    fields: dict[str, Any] = match.groupdict()
    fields["time"] = datetime.datetime.fromisoformat(fields["time"])
    fields["pid"] = int(fields["pid"])
    return fields


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of the content (or "<dir>") for everything under directory."""
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            out[rel] = "<symlink>"
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_is_sample_model(model_dir: Path) -> None:
    files = snapshot(model_dir)
    for name in (
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
        "assets/labels.txt",
    ):
        assert name in files and files[name] != "<dir>", f"{name} missing in {model_dir}"
    assert (model_dir / "assets" / "labels.txt").read_text() == EXPECTED["labels"]


def tf_env(cache_dir: Path, *, with_hubcache: bool = False) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TFHUB_", "HUBCACHE_")) and k not in {"PYTHONPATH", "PYTHONHOME"}
    }
    env.update(
        TFHUB_CACHE_DIR=str(cache_dir),
        TF_CPP_MIN_LOG_LEVEL="2",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONNOUSERSITE="1",
    )
    # TensorFlow leaves autograph's generated modules in the temp folder: one of the test's
    tmp = cache_dir.parent / "tf-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    if with_hubcache:
        env["PYTHONPATH"] = str(SRC)
    return env


def run_tf(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run TF_SCRIPT in the TF env and return its result dict."""
    return run_result(TF_SCRIPT, [json.dumps(spec)], env, TF_TIMEOUT, f"TF ops {spec['ops']}")[0]


def pack_tar_gz(model_dir: Path, archive: Path) -> None:
    """Pack model_dir's content (regular files and dirs only, as tfhub.dev archives are)."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(
                path,
                arcname=path.relative_to(model_dir).as_posix(),
                recursive=False,
                filter=normalize,
            )


class HubcacheServer:
    """``python -m hubcache serve DIR`` on 127.0.0.1, port chosen by the OS."""

    def __init__(self, directory: Path, log_dir: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
        )
        self._stderr = tempfile.TemporaryFile(dir=log_dir)  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hubcache",
                "serve",
                str(directory),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.stdout_lines: list[str] = []
        self.stderr_tail = ""
        first: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(first,), daemon=True)
        self._reader.start()
        try:
            line = first.get(timeout=60)
        except queue.Empty:
            line = ""
        match = re.fullmatch(r"serving (.+) at (http://127\.0\.0\.1:\d+/)", line.strip())
        if not match:
            self.stop()
            raise AssertionError(
                f"hubcache serve did not announce itself; first stdout line {line!r}, "
                f"exit {self.proc.returncode}, stderr:\n{self.stderr_tail}"
            )
        self.url = match.group(2)

    def _read(self, first: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        announced = False
        for line in self.proc.stdout:
            self.stdout_lines.append(line)
            if not announced:
                first.put(line)
                announced = True
        if not announced:
            first.put("")

    def stop(self) -> None:
        """Terminate the server (by its Popen handle) and keep the tail of its stderr."""
        if self._stderr.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._reader.join(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.seek(0)
        self.stderr_tail = self._stderr.read().decode("utf-8", "replace")[-4000:]
        self._stderr.close()


@contextmanager
def hubcache_server(directory: Path, log_dir: Path) -> Iterator[HubcacheServer]:
    server = HubcacheServer(directory, log_dir)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Make every socket connect in this process fail, and record the attempts."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"network use is forbidden here (connect to {address!r})")

    with monkeypatch.context() as m:
        m.setattr(socket.socket, "connect", refuse)
        m.setattr(socket.socket, "connect_ex", refuse)
        yield attempts


def hubcache_leftovers(root: Path, key: str) -> set[str]:
    """Top-level names in root other than those a finished entry may have (no lock, no
    staging dir: a leftover ``<key>.lock`` makes tensorflow_hub wait ten minutes on a miss).
    ``CACHEDIR.TAG`` is hubcache's root-level marker for backup tools."""
    allowed = {key, f"{key}.descriptor.txt", f"{key}.manifest.json", "CACHEDIR.TAG"}
    return set(os.listdir(root)) - allowed


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tf_python() -> str:
    assert os.access(TF_PYTHON, os.X_OK), (
        f"HUBCACHE_TF_PYTHON={TF_PYTHON!r} is not an executable python; "
        "make it with: bash .ci/tf-env.sh | tail -1"
    )
    return TF_PYTHON


@pytest.fixture(scope="module")
def served_dir(tf_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for ``hubcache serve`` holding models/tiny/1.tar.gz (a fresh real model)."""
    work = tmp_path_factory.mktemp("interop-model")
    model = work / "model"
    proc = subprocess.run(
        [tf_python, str(MAKE_SAMPLE_MODEL), str(model), "--check"],
        env=tf_env(work / "unused-cache"),
        capture_output=True,
        text=True,
        timeout=TF_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"make_sample_model.py failed:\n{proc.stderr[-8000:]}"
    served = work / "served"
    pack_tar_gz(model, served / f"{MODEL_PATH}.tar.gz")
    return served


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TFHUB_", "HUBCACHE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ---------------------------------------------------------------------------- tests


def test_packaged_sample_model_loads_in_tensorflow(tf_python: str, tmp_path: Path) -> None:
    """The SavedModel shipped in hubcache/_data loads with plain tf.saved_model.load."""
    assert_is_sample_model(SAMPLE_MODEL)
    model = tmp_path / "copy"
    shutil.copytree(SAMPLE_MODEL, model)
    result = run_tf(
        {"url": "", "path": str(model), "ops": ["forbid_network", "saved_model_load"]},
        tf_env(tmp_path / "cache"),
    )
    assert result["saved_model_load"] == EXPECTED


class _Recorder(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


def test_tensorflow_hub_layout_from_plain_server(
    tf_python: str, served_dir: Path, tmp_path: Path
) -> None:
    """Pins what tensorflow_hub 0.16.1 itself does, with no hubcache code involved."""
    www = tmp_path / "www"
    (www / MODEL_PATH).parent.mkdir(parents=True)
    # http.server ignores the query string: GET /models/tiny/1?tf-hub-format=... -> file "1".
    shutil.copyfile(served_dir / f"{MODEL_PATH}.tar.gz", www / MODEL_PATH)
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(www))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{MODEL_PATH}"
        root = tmp_path / "cache"
        result = run_tf({"url": url, "ops": ["hub_resolve", "hub_load"]}, tf_env(root))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    key = cache_key(url)
    assert result["tensorflow_hub"] == "0.16.1"
    assert requests == [f"/{MODEL_PATH}?tf-hub-format=compressed"]
    assert result["hub_resolve"] == os.path.join(str(root), key)
    assert result["hub_load"] == EXPECTED
    assert sorted(os.listdir(root)) == [key, f"{key}.descriptor.txt"]  # no .lock, no .tmp
    assert_is_sample_model(root / key)
    fields = parse_descriptor((root / f"{key}.descriptor.txt").read_text())
    assert fields["handle"] == url
    assert fields["host"] == socket.gethostname()
    assert fields["pid"] == result["pid"]


def test_hubcache_fills_cache_tensorflow_hub_reads_it(
    tf_python: str, served_dir: Path, tmp_path: Path, clean_env: None
) -> None:
    """(a) hubcache downloads; then, server down, tensorflow_hub finds it with no download."""
    import hubcache

    root = tmp_path / "cache"
    with hubcache_server(served_dir, tmp_path) as server:
        url = server.url + MODEL_PATH
        path = hubcache.resolve(url, cache_dir=str(root))
    key = cache_key(url)
    assert path == os.path.join(str(root), key)
    assert_is_sample_model(root / key)
    assert hubcache_leftovers(root, key) == set()
    before = snapshot(root / key)

    result = run_tf(
        {"url": url, "ops": ["forbid_network", "hub_resolve", "hub_load"]}, tf_env(root)
    )
    assert result["blocked"] == []
    assert result["hub_resolve"] == path
    assert result["hub_load"] == EXPECTED
    assert snapshot(root / key) == before


def test_tensorflow_hub_fills_cache_hubcache_reads_it_offline(
    tf_python: str,
    served_dir: Path,
    tmp_path: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(b) tensorflow_hub downloads; then, server down, hubcache finds it offline, intact."""
    import hubcache

    root = tmp_path / "cache2"
    with hubcache_server(served_dir, tmp_path) as server:
        url = server.url + MODEL_PATH
        result = run_tf({"url": url, "ops": ["hub_resolve"]}, tf_env(root))
    key = cache_key(url)
    assert result["hub_resolve"] == os.path.join(str(root), key)
    assert sorted(os.listdir(root)) == [key, f"{key}.descriptor.txt"]
    descriptor = (root / f"{key}.descriptor.txt").read_bytes()
    parse_descriptor(descriptor.decode("utf-8"))
    before = snapshot(root / key)

    with no_network(monkeypatch) as attempts:
        path = hubcache.resolve(url, cache_dir=str(root), offline=True)
    assert attempts == []
    assert path == os.path.join(str(root), key)
    assert_is_sample_model(root / key)
    assert snapshot(root / key) == before, "hubcache changed tensorflow_hub's files"
    assert (root / f"{key}.descriptor.txt").read_bytes() == descriptor
    assert hubcache_leftovers(root, key) == set()

    # A second, online-allowed call is a cache hit as well (the server is down).
    with no_network(monkeypatch) as attempts:
        assert hubcache.resolve(url, cache_dir=str(root)) == path
    assert attempts == []


def test_hubcache_load_inside_tensorflow_env(
    tf_python: str, served_dir: Path, tmp_path: Path
) -> None:
    """(c) hubcache.load in the TF env returns a working model; tensorflow_hub then hits it."""
    root = tmp_path / "cache3"
    with hubcache_server(served_dir, tmp_path) as server:
        url = server.url + MODEL_PATH
        result = run_tf(
            {
                "url": url,
                "cache_dir": str(root),
                "ops": ["hubcache_load", "forbid_network", "hub_resolve", "hub_load"],
            },
            tf_env(root, with_hubcache=True),
        )
    key = cache_key(url)
    assert result["hubcache_load"] == EXPECTED
    assert result["blocked"] == []
    assert result["hub_resolve"] == os.path.join(str(root), key)
    assert result["hub_load"] == EXPECTED
    assert hubcache_leftovers(root, key) == set()


def test_descriptor_matches_tensorflow_hub_format(
    tf_python: str, served_dir: Path, tmp_path: Path, clean_env: None
) -> None:
    """(d) hubcache's <key>.descriptor.txt has tensorflow_hub's exact 3-line format."""
    import hubcache

    root = tmp_path / "cache4"
    with hubcache_server(served_dir, tmp_path) as server:
        url = server.url + MODEL_PATH
        started = datetime.datetime.now()
        hubcache.resolve(url, cache_dir=str(root))
        finished = datetime.datetime.now()
    key = cache_key(url)
    fields = parse_descriptor((root / f"{key}.descriptor.txt").read_text(encoding="utf-8"))
    assert fields["handle"] == url
    assert fields["host"] == socket.gethostname()
    assert fields["pid"] == os.getpid()
    # tensorflow_hub writes str(datetime.today()): local time, no zone.
    assert fields["time"].tzinfo is None
    slack = datetime.timedelta(seconds=5)
    assert started - slack <= fields["time"] <= finished + slack
