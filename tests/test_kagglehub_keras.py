"""The kagglehub plug-in under the real KerasHub (keras-hub 0.32, which brings kagglehub 1.0.2)
and its ``from_preset("kaggle://...")``: one ``kagglehub.model_download(handle, path)`` per
file, through hubcache, against the local Kaggle test server.

KerasHub needs the full TensorFlow, so it lives in an environment of its own, built by
``.ci/keras-env.sh`` and named by ``HUBCACHE_KERAS_PYTHON``; without it these tests skip.
User code runs there unmodified: the only change is our ``.pth`` in a temporary site folder
(``site.addsitedir``), standing for ``hubcache kagglehub enable``, with this checkout's
``src`` on the path standing for an installed hubcache. The preset is a tiny
``BertTextClassifier`` the test makes with ``save_to_preset``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

import hubcache
from hubcache.kagglehub import PTH
from tests.support.kaggle import KaggleModel, KaggleWorld

Presets = tuple[dict[str, bytes], dict[str, bytes], Any]  # classifier, backbone-only, logits
KERAS_PYTHON = os.environ.get("HUBCACHE_KERAS_PYTHON", "")
SRC = str(pathlib.Path(hubcache.__file__).resolve().parent.parent)
TIMEOUT = 300

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not KERAS_PYTHON,
        reason="HUBCACHE_KERAS_PYTHON is unset: set it to the python of the keras-hub env, "
        "e.g. export HUBCACHE_KERAS_PYTHON=$(bash .ci/keras-env.sh | tail -1)",
    ),
]

# Makes the presets: argv[1] the full classifier's folder, argv[2] a backbone-only one.
MAKE = r"""
import json, sys
import keras_hub
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "model"]
tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
backbone = keras_hub.models.BertBackbone(
    vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8,
    intermediate_dim=16, max_sequence_length=512)
pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
task = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=pre)
task.save_to_preset(sys.argv[1])
backbone.save_to_preset(sys.argv[2])
tokenizer.save_to_preset(sys.argv[2])
print("RESULT " + json.dumps(task.predict(["hello world"], verbose=0).tolist()))
"""

# Unmodified KerasHub user code: argv[1] the preset, argv[2] (for a backbone-only preset,
# whose classifier head is new) the number of classes; prints the logits of one sentence.
LOAD = r"""
import json, sys
import keras_hub
extra = {"num_classes": int(sys.argv[2])} if len(sys.argv) > 2 else {}
task = keras_hub.models.BertTextClassifier.from_preset(sys.argv[1], **extra)
print("RESULT " + json.dumps(task.predict(["hello world"], verbose=0).tolist()))
"""


def start(code: str, args: list[str], env: dict[str, str], site: pathlib.Path) -> Any:
    """``code`` in the keras env, after ``site`` (our .pth, when there) is processed."""
    return subprocess.Popen(
        [KERAS_PYTHON, "-c", f"import site; site.addsitedir({str(site)!r})\n{code}", *args],
        env={**env, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: Any) -> Any:
    """Its RESULT line; the ends of both streams when it failed (TensorFlow's reason is
    usually at the end)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{out[-3000:]}\n{err[-6000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def run(code: str, args: list[str], env: dict[str, str], site: pathlib.Path) -> Any:
    return finish(start(code, args, env, site))


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def presets(
    tmp_path_factory: pytest.TempPathFactory,
) -> Presets:
    base = tmp_path_factory.mktemp("presets")
    env = {**os.environ, "TMPDIR": str(base)}
    logits = run(MAKE, [str(base / "task"), str(base / "backbone")], env, base)
    return files(base / "task"), files(base / "backbone"), logits


@pytest.fixture
def world(
    tmp_path: pathlib.Path, presets: Presets
) -> Iterator[tuple[KaggleWorld, dict[str, str], pathlib.Path]]:
    task, backbone, _ = presets
    site = tmp_path / "site"
    site.mkdir()
    PTH.write(str(site))
    (tmp_path / "home").mkdir()
    with KaggleWorld() as w:
        w.kaggle.add(KaggleModel("keras", "bert", "keras", "tiny", {1: backbone, 2: task}))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("HUBCACHE_", "PYTHON"))},
            **w.env(),
            "HOME": str(tmp_path / "home"),
            "KAGGLEHUB_CACHE": str(tmp_path / "kagglehub"),
            "TFHUB_CACHE_DIR": str(tmp_path / "hubcache"),
            "HUBCACHE_PROGRESS": "0",
            "TMPDIR": str(tmp_path),  # TensorFlow leaves files in it: gone with the test's
        }
        yield w, env, site
    assert not (w.kaggle.errors or w.storage.errors)


def blobs(w: KaggleWorld) -> list[str]:
    return [s.path.split("?")[0] for s in w.storage.seen]


def test_presets_load_online_then_offline_versioned_unversioned_and_backbone_only(
    world: tuple[KaggleWorld, dict[str, str], pathlib.Path],
    presets: Presets,
) -> None:
    w, env, site = world
    task, backbone, logits = presets
    assert run(LOAD, ["kaggle://keras/bert/keras/tiny/2"], env, site) == logits
    assert sorted(blobs(w)) == sorted(set(blobs(w))) and len(blobs(w)) == len(task)
    agents = {s.headers.get("user-agent", "") for s in w.kaggle.seen + w.storage.seen}
    assert all(a.startswith("hubcache/") for a in agents), agents
    run(LOAD, ["kaggle://keras/bert/keras/tiny/1", "2"], env, site)  # backbone only: no task.json
    assert len(blobs(w)) == len(task) + len(backbone)

    w.stop()
    offline = {**env, "HUBCACHE_OFFLINE": "1"}
    assert run(LOAD, ["kaggle://keras/bert/keras/tiny/2"], offline, site) == logits
    assert run(LOAD, ["kaggle://keras/bert/keras/tiny"], offline, site) == logits  # newest: 2
    run(LOAD, ["kaggle://keras/bert/keras/tiny/1", "2"], offline, site)  # task.json: not there


def test_four_processes_loading_one_preset_make_one_download_of_each_file(
    world: tuple[KaggleWorld, dict[str, str], pathlib.Path],
    presets: Presets,
) -> None:
    w, env, site = world
    task, _, logits = presets
    procs = [start(LOAD, ["kaggle://keras/bert/keras/tiny/2"], env, site) for _ in range(4)]
    assert [finish(proc) for proc in procs] == [logits] * 4
    assert sorted(blobs(w)) == sorted(set(blobs(w))) and len(blobs(w)) == len(task)
