"""The real tensorflow_hub resolves and loads a model through ``hubcache serve --upstream``.

Like the other interop tests, TensorFlow runs only in subprocesses of
``$HUBCACHE_TF_PYTHON`` (the environment ``.ci/tf-env.sh`` builds); without that variable
the module is skipped. The upstream is ``hubcache serve`` on a folder holding the packaged
sample SavedModel; the mirror sits in front of it; tensorflow_hub is given the mirror's URL
as the handle, in two processes with two caches: one upstream fetch, two loaded models.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from tests.support.mirror import ServeProcess
from tests.support.tfenv import SAMPLE_MODEL, interop_marks, run_result

pytestmark = interop_marks(600)

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
    return run_result(TF_SCRIPT, [handle], env, 300, "hub.load through the mirror")[0]


def test_tensorflow_hub_loads_through_the_mirror(tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream" / "models" / "sample"
    upstream_dir.mkdir(parents=True)
    with tarfile.open(upstream_dir / "1.tar.gz", "w:gz") as tar:
        for path in sorted(SAMPLE_MODEL.rglob("*")):
            tar.add(path, arcname=path.relative_to(SAMPLE_MODEL).as_posix(), recursive=False)
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
    expected = sorted(
        p.relative_to(SAMPLE_MODEL).as_posix() for p in SAMPLE_MODEL.rglob("*") if p.is_file()
    )
    assert first["files"] == second["files"] == expected
    assert first["loaded"] and second["loaded"]
    assert (store / "models" / "sample" / "1.tar.gz").is_file()
    assert 'hubcache_mirror_fills_total{result="stored"} 1.0' in metrics
    assert "hubcache_mirror_hits_total 1.0" in metrics
