"""The tensorflow_hub plug-in against the real tensorflow_hub 0.16.1 (issue 11).

Every tensorflow_hub action runs as a subprocess of a throwaway virtual environment made from
the TF environment's python (``HUBCACHE_TF_PYTHON``, see .ci/tf-env.sh): its site-packages
holds one ``.pth`` of paths (the TF environment's site-packages and this checkout's ``src``,
standing for an installed hubcache) and, after ``hubcache tfhub enable`` run with that
python, our ``hubcache-tfhub.pth``. So the user code below is unmodified tensorflow_hub code
with only the ``.pth`` active, and no real environment is ever written to. The model is the
demo SavedModel shipped in hubcache/_data, served on 127.0.0.1 by a recording server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import HOSTILE_TAR_CASES, M, flip_byte, make_tar
from tests.support.procs import run_cli
from tests.support.tfenv import (
    SAMPLE_EXPECTED,
    SAMPLE_MODEL,
    SRC,
    TF_PYTHON,
    interop_marks,
    run_result,
)

EXPECTED = SAMPLE_EXPECTED
TF_TIMEOUT = 300

pytestmark = interop_marks(900)

# Unmodified user code: argv[1] is a JSON spec {"url", "ops"}; prints one RESULT line.
USER_CODE = r"""
import json, os, sys, time, urllib.request, warnings

spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
import tensorflow as tf
import tensorflow_hub as hub
from tensorflow_hub import config, registry

x = tf.constant([1.0, 2.0, 3.0], tf.float32)
result = {"import_s": time.perf_counter() - t0, "errors": {}}


def impls():
    return [type(i).__module__ + "." + type(i).__name__ for i in registry.resolver._impls]


def run_model(model):
    out = model.signatures["serving_default"](x=x)
    return {
        "y": [float(v) for v in out["y"].numpy()],
        "total": float(out["total"].numpy()),
        "labels": model.labels().numpy().decode("utf-8"),
    }


result["impls"] = impls()
result["run_module"] = config._run.__module__ + "." + config._run.__qualname__
result["run_wrapped"] = hasattr(config._run, "_hubcache_original")
for op in spec["ops"]:
    if op == "forbid_network":
        def refuse(*args, **kwargs):
            raise AssertionError("network use after forbid_network")
        urllib.request.urlopen = refuse
    elif op == "hub_resolve":
        t = time.perf_counter()
        result["hub_resolve"] = hub.resolve(spec["url"])
        result["hub_resolve_s"] = time.perf_counter() - t
    elif op == "hub_load":
        t = time.perf_counter()
        model = hub.load(spec["url"])
        result["hub_load_s"] = time.perf_counter() - t
        result["hub_load"] = run_model(model)
    elif op == "keras_layer":
        layer = hub.KerasLayer(spec["url"])
        result["keras_layer"] = [float(v) for v in layer(x).numpy()]
    elif op == "clear_run":
        registry._clear()
        config._run()
        result["impls_after_clear_run"] = impls()
    elif op == "uninstall":
        import hubcache.tensorflow_hub as plugin

        result["uninstalled"] = plugin.uninstall()
        result["impls_after_uninstall"] = impls()
        result["run_after_uninstall"] = config._run.__module__ + "." + config._run.__qualname__
        result["wrapped_after_uninstall"] = hasattr(config._run, "_hubcache_original")
    elif op == "hostile":
        for name, url in spec["cases"].items():
            try:
                hub.load(url)
            except Exception as exc:
                result["errors"][name] = {
                    "os_error": isinstance(exc, OSError),
                    "types": [c.__name__ for c in type(exc).__mro__],
                    "message": str(exc),
                }
            else:
                result["errors"][name] = None
    else:
        raise SystemExit("unknown op %r" % op)
result["modules"] = sorted(m for m in sys.modules if m.startswith(("hubcache", "_hubcache")))
print("RESULT " + json.dumps(result))
"""


# ------------------------------------------------------------------------------ helpers


class Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves files of a folder (the query string is ignored) and records each GET."""

    requests: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("User-Agent", "")))
        self.path = self.path.split("?", 1)[0]
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


class Server:
    def __init__(self, directory: Path) -> None:
        self.requests: list[tuple[str, str]] = []
        handler = type("Handler", (Recorder,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    www = tmp_path / "www"
    www.mkdir()
    srv = Server(www)
    try:
        yield srv
    finally:
        srv.stop()


def pack(model_dir: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)


class Venv:
    """A throwaway environment: the TF env's packages and hubcache's src on its path."""

    def __init__(self, root: Path) -> None:
        subprocess.run(
            [TF_PYTHON, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
        )
        self.python = str(root / "bin" / "python")
        self.site = self.ask("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        tf_site = subprocess.run(
            [TF_PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # "00-" sorts before hubcache-tfhub.pth, as an installed hubcache would come first.
        Path(self.site, "00-paths.pth").write_text(f"{SRC}\n{tf_site}\n")
        self.pth = Path(self.site, "hubcache-tfhub.pth")

    def ask(self, code: str) -> str:
        return subprocess.run(
            [self.python, "-c", code], capture_output=True, text=True, check=True, env=clean()
        ).stdout.strip()

    def hubcache(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(args, clean(), timeout=120, python=self.python)

    def user_code(self, spec: dict[str, Any], **env: str) -> tuple[dict[str, Any], str]:
        what = f"user code {spec['ops']}"
        return run_result(
            USER_CODE, [json.dumps(spec)], clean(**env), TF_TIMEOUT, what, python=self.python
        )


def clean(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TFHUB_", "HUBCACHE_")) and k not in {"PYTHONPATH", "PYTHONHOME"}
    }
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONNOUSERSITE="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    assert os.access(TF_PYTHON, os.X_OK), f"HUBCACHE_TF_PYTHON={TF_PYTHON!r} is not executable"
    root = tmp_path_factory.mktemp("plugin-venv") / "venv"
    env = Venv(root)
    proc = env.hubcache("tfhub", "enable")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(env.pth)  # the running interpreter's purelib
    try:
        yield env
    finally:
        proc = env.hubcache("tfhub", "disable")
        assert proc.returncode == 0, proc.stderr
        assert not env.pth.exists()
        shutil.rmtree(root, ignore_errors=True)


DEFAULTS = [
    "tensorflow_hub.resolver.PathResolver",
    "tensorflow_hub.uncompressed_module_resolver.HttpUncompressedFileResolver",
    "tensorflow_hub.compressed_module_resolver.GcsCompressedFileResolver",
    "tensorflow_hub.compressed_module_resolver.HttpCompressedFileResolver",
]
OURS = "hubcache.tensorflow_hub._resolver.HubcacheResolver"


# ------------------------------------------------------------------------------ tests


def test_status_reports_the_pth_and_the_tensorflow_hub_version(venv: Venv) -> None:
    proc = venv.hubcache("tfhub", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert state["active"] is True
    assert state["pth_path"] == str(venv.pth) and state["pth_present"] is True
    assert state["tensorflow_hub_version"] == "0.16.1"
    assert state["registry"] == "compatible"
    off = subprocess.run(
        [venv.python, "-m", "hubcache", "tfhub", "status"],
        capture_output=True,
        text=True,
        env=clean(HUBCACHE_TFHUB_PLUGIN="0"),
        check=True,
    )
    assert "active: no" in off.stdout and "switch: off" in off.stdout


def test_unmodified_code_resolve_load_keras_layer_then_tensorflow_hub_alone(
    venv: Venv, server: Server, tmp_path: Path
) -> None:
    pack(SAMPLE_MODEL, tmp_path / "www" / "models" / "tiny" / "1")
    url = server.url + "models/tiny/1"
    root = tmp_path / "cache"
    result, _ = venv.user_code(
        {"url": url, "ops": ["hub_resolve", "hub_load", "keras_layer"]},
        TFHUB_CACHE_DIR=str(root),
    )
    assert result["impls"] == [*DEFAULTS, OURS]
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    assert result["hub_resolve"] == os.path.join(str(root), key)  # tensorflow_hub's path
    assert result["hub_load"] == EXPECTED
    assert result["keras_layer"] == EXPECTED["y"]
    assert (root / f"{key}.manifest.json").is_file()  # hubcache did the download
    archive_gets = [r for r in server.requests if r[0].startswith("/models/tiny/1")]
    assert len(archive_gets) == 1, server.requests
    assert archive_gets[0][0] == "/models/tiny/1?tf-hub-format=compressed"
    assert archive_gets[0][1].startswith("hubcache/"), archive_gets

    # A second process with the plug-in off: tensorflow_hub alone, from the same cache.
    alone, _ = venv.user_code(
        {"url": url, "ops": ["forbid_network", "hub_resolve", "hub_load"]},
        TFHUB_CACHE_DIR=str(root),
        HUBCACHE_TFHUB_PLUGIN="0",
    )
    assert alone["impls"] == DEFAULTS
    assert alone["hub_resolve"] == result["hub_resolve"]
    assert alone["hub_load"] == EXPECTED
    assert len(server.requests) == 1, server.requests


def test_plugin_survives_clear_and_run_and_uninstall_restores_exactly(
    venv: Venv, tmp_path: Path
) -> None:
    result, _ = venv.user_code(
        {"url": "", "ops": ["clear_run", "clear_run", "uninstall"]},
        TFHUB_CACHE_DIR=str(tmp_path / "c"),
    )
    assert result["impls_after_clear_run"] == [*DEFAULTS, OURS]
    assert result["uninstalled"] is True
    assert result["impls_after_uninstall"] == DEFAULTS
    assert result["run_after_uninstall"] == "tensorflow_hub.config._run"
    assert result["wrapped_after_uninstall"] is False

    off, _ = venv.user_code({"url": "", "ops": []}, HUBCACHE_TFHUB_PLUGIN="0")
    assert off["impls"] == DEFAULTS and off["run_wrapped"] is False
    assert off["run_module"] == "tensorflow_hub.config._run"


def test_disable_gives_tensorflow_hub_its_own_resolvers_back(venv: Venv) -> None:
    proc = venv.hubcache("tfhub", "disable")
    try:
        assert proc.returncode == 0 and proc.stdout.strip() == str(venv.pth), proc.stderr
        assert not venv.pth.exists()
        result, _ = venv.user_code({"url": "", "ops": []})
        assert result["impls"] == DEFAULTS
        assert result["run_module"] == "tensorflow_hub.config._run"
        assert result["run_wrapped"] is False
        assert result["modules"] == []  # not even the hook was imported
        status = venv.hubcache("tfhub", "status")
        assert "active: no" in status.stdout and "(absent)" in status.stdout
    finally:
        assert venv.hubcache("tfhub", "enable").returncode == 0
    result, _ = venv.user_code({"url": "", "ops": []})
    assert result["impls"] == [*DEFAULTS, OURS]


def test_kill_switch_and_a_bad_switch_value_leave_tensorflow_hub_alone(
    venv: Venv, server: Server, tmp_path: Path
) -> None:
    pack(SAMPLE_MODEL, tmp_path / "www" / "m" / "1")
    url = server.url + "m/1"
    result, _ = venv.user_code(
        {"url": url, "ops": ["hub_resolve"]},
        TFHUB_CACHE_DIR=str(tmp_path / "c1"),
        HUBCACHE_TFHUB_PLUGIN="no",
    )
    assert result["impls"] == DEFAULTS
    assert server.requests[-1][1].startswith("Python-urllib/"), server.requests
    assert not list((tmp_path / "c1").glob("*.manifest.json"))

    result, stderr = venv.user_code(
        {"url": url, "ops": []}, TFHUB_CACHE_DIR=str(tmp_path / "c2"), HUBCACHE_TFHUB_PLUGIN="maybe"
    )
    assert result["impls"] == DEFAULTS
    assert "HUBCACHE_TFHUB_PLUGIN='maybe' is neither yes nor no" in stderr
    assert stderr.count("HUBCACHE_TFHUB_PLUGIN") == 1  # one warning, no traceback
    assert "Traceback" not in stderr


def test_a_process_that_never_imports_tensorflow_hub_is_unaffected(venv: Venv) -> None:
    code = "import sys; print(sorted(sys.modules))"
    with_pth = set(json.loads(venv.ask(code).replace("'", '"')))
    venv.pth.rename(venv.pth.with_suffix(".off"))
    try:
        without = set(json.loads(venv.ask(code).replace("'", '"')))
    finally:
        venv.pth.with_suffix(".off").rename(venv.pth)
    assert with_pth - without == {"_hubcache_tfhub", "_hubcache_hook"}  # the shared finder
    assert without - with_pth == set()
    meta = venv.ask("import sys; print([type(f).__name__ for f in sys.meta_path])")
    assert meta.startswith("['_Finder'"), meta


def test_hostile_archives_through_hub_load_fail_safely(
    venv: Venv, server: Server, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    cases: dict[str, str] = {}
    for name, members in sorted(HOSTILE_TAR_CASES.items()):
        (www / "hostile" / name).parent.mkdir(parents=True, exist_ok=True)
        (www / "hostile" / name).write_bytes(make_tar(members, compression="gz"))
        cases[name] = server.url + f"hostile/{name}"
    gz = make_tar([M("a", os.urandom(5000))], compression="gz")
    corrupt = flip_byte(gz, len(gz) // 2)
    (www / "hostile" / "corrupt").write_bytes(corrupt)
    cases["corrupt"] = server.url + "hostile/corrupt"
    (www / "hostile" / "html").write_bytes(b"<!doctype html><html>log in</html>")
    cases["html"] = server.url + "hostile/html"
    # tensorflow_hub's own test style: the folder, then every file once more: accepted.
    with tarfile.open(www / "hostile" / "repeated", "w:gz") as tar:
        tar.add(SAMPLE_MODEL, arcname="")
        for path in sorted(SAMPLE_MODEL.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(SAMPLE_MODEL).as_posix())
    cases["repeated"] = server.url + "hostile/repeated"
    root = tmp_path / "cache"
    result, _ = venv.user_code(
        {"url": "", "ops": ["hostile"], "cases": cases}, TFHUB_CACHE_DIR=str(root)
    )
    assert result["errors"].pop("repeated") is None
    for name in result["errors"]:
        error = result["errors"][name]
        assert error is not None, f"{name} was loaded"
        assert error["os_error"], (name, error)  # what tensorflow_hub code catches
        assert "ArchiveError" in error["types"], (name, error)
    key = hashlib.sha1(cases["repeated"].encode(), usedforsecurity=False).hexdigest()
    # nothing published but the accepted one, no debris
    assert sorted(os.listdir(root)) == sorted(
        ["CACHEDIR.TAG", key, f"{key}.descriptor.txt", f"{key}.manifest.json"]
    )
    assert not os.path.lexists("/tmp/hubcache-escape-test")
