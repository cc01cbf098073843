"""The real tensorflow_hub resolves and loads a model through ``hubcache serve --upstream``.

Like the other interop tests, TensorFlow runs only in subprocesses of
``$HUBCACHE_TF_PYTHON`` (the environment ``.ci/tf-env.sh`` builds); without that variable
the module is skipped. The upstream is ``hubcache serve`` on a folder holding the packaged
sample SavedModel; the mirror sits in front of it; tensorflow_hub is given the mirror's URL
as the handle, in two processes with two caches: one upstream fetch, two loaded models.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.mirror import ServeProcess

TF_PYTHON = os.environ.get("HUBCACHE_TF_PYTHON", "")
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "hubcache" / "_data" / "sample_model"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not TF_PYTHON,
        reason="HUBCACHE_TF_PYTHON is unset: set it to the python of the tensorflow + "
        "tensorflow_hub env, e.g. export HUBCACHE_TF_PYTHON=$(bash .ci/tf-env.sh | tail -1)",
    ),
]

TF_SCRIPT = r"""
import json, os, sys
import tensorflow as tf
import tensorflow_hub as hub

path = hub.resolve(sys.argv[1])
model = hub.load(sys.argv[1])
files = sorted(
    os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
)
print("RESULT " + json.dumps({"path": path, "files": files, "loaded": model is not None}))
"""


def run_tf(handle: str, cache: Path) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TFHUB_", "HUBCACHE_")) and k not in {"PYTHONPATH", "PYTHONHOME"}
    }
    env.update(TFHUB_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="2", NO_PROXY="127.0.0.1")
    proc = subprocess.run(
        [TF_PYTHON, "-c", TF_SCRIPT, handle],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result: dict[str, object] = json.loads(lines[-1][len("RESULT ") :])
    return result


def test_tensorflow_hub_loads_through_the_mirror(tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream" / "models" / "sample"
    upstream_dir.mkdir(parents=True)
    with tarfile.open(upstream_dir / "1.tar.gz", "w:gz") as tar:
        for path in sorted(SAMPLE.rglob("*")):
            tar.add(path, arcname=path.relative_to(SAMPLE).as_posix(), recursive=False)
    store = tmp_path / "mirror"
    store.mkdir()
    with (
        ServeProcess(str(tmp_path / "upstream")) as upstream,
        ServeProcess(str(store), "--upstream", upstream.url) as mirror,
    ):
        handle = mirror.url + "models/sample/1"
        first = run_tf(handle, tmp_path / "cache1")
        second = run_tf(handle, tmp_path / "cache2")
        metrics = mirror.get("/metrics").data.decode()
    expected = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file())
    assert first["files"] == second["files"] == expected
    assert first["loaded"] and second["loaded"]
    assert (store / "models" / "sample" / "1.tar.gz").is_file()
    assert 'hubcache_mirror_fills_total{result="stored"} 1.0' in metrics
    assert "hubcache_mirror_hits_total 1.0" in metrics
