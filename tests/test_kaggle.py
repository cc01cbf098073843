"""Kaggle Models as a source: handles, the API as kagglehub 1.x uses it, credentials,
signed URLs, tfhub.dev redirects, equivalent handles and kagglehub's cache.

Everything runs against tests/support/kaggle.py: a Kaggle API server reached as
``KAGGLE_API_ENVIRONMENT=LOCALHOST`` through ``http_proxy``, a signed-URL storage server and
a tfhub.dev-like redirector, all on 127.0.0.1 and stopped at the end of each test.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

import hubcache
from hubcache import cache_key
from tests.support.kaggle import KaggleModel, KaggleWorld, saved_model_files

NNLM = "google/nnlm/tensorFlow2/en-dim128"
BIG = "google/bignet/tensorFlow2/default"
GATED = "google/gemma/keras/gemma-2b"
TOKEN = "tok-" + "a" * 20
USER, KEY = "alice", "k" * 32


@pytest.fixture
def world(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, cache_root: pathlib.Path
) -> Iterator[KaggleWorld]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")
    with KaggleWorld() as w:
        for name, value in w.env().items():
            monkeypatch.setenv(name, value)
        w.kaggle.add(KaggleModel("google", "nnlm", "tensorFlow2", "en-dim128",
                                 {1: saved_model_files("v1"), 2: saved_model_files("v2")}))
        w.kaggle.add(KaggleModel("google", "bignet", "tensorFlow2", "default",
                                 {1: saved_model_files("big", extra=30)}))
        w.kaggle.add(KaggleModel("google", "gemma", "keras", "gemma-2b",
                                 {1: {"model.weights.h5": b"w" * 5000, "config.json": b"{}"}},
                                 gated=True))
        w.kaggle.accounts.tokens.add(TOKEN)
        w.kaggle.accounts.keys[USER] = KEY
        w.kaggle.accounts.accepted_terms.update({TOKEN, USER})
        yield w
    assert not (w.kaggle.errors or w.storage.errors or w.tfhub.errors)


def tree(path: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, path).replace(os.sep, "/")] = pathlib.Path(full).read_bytes()
    return out


def test_smoke(world: KaggleWorld) -> None:
    path = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert tree(path) == saved_model_files("v2")
    path = hubcache.resolve(f"kaggle:{BIG}/1")
    assert tree(path) == saved_model_files("big", extra=30)


def kagglehub_download(handle: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real kagglehub client, in its own process (it keeps global state)."""
    code = "import kagglehub, sys; print(kagglehub.model_download(sys.argv[1]))"
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, handle], capture_output=True, text=True,
                          env=env, timeout=120)


def test_kagglehub_smoke(world: KaggleWorld) -> None:
    out = kagglehub_download(f"{NNLM}/2")
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip().splitlines()[-1]
    assert tree(path) == saved_model_files("v2")
    out = kagglehub_download(f"{BIG}/1")
    assert out.returncode == 0, out.stderr
    assert tree(out.stdout.strip().splitlines()[-1]) == saved_model_files("big", extra=30)
    print(world.kaggle.seen)
