"""TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED: tensorflow_hub's 303 protocol, plus our fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.httpserver import Fault, ModelServer

MEMBERS = [M("saved_model.pb", b"graph"), M("variables/variables.index", b"i")]


@pytest.fixture
def uncompressed(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> Path:
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "uncompressed")  # case-insensitive
    return cache_root


def test_303_body_is_returned_and_nothing_cached(
    uncompressed: Path, model_server: ModelServer
) -> None:
    model_server.add("/google/u/1", b"unused")
    model_server.faults(
        "/google/u/1",
        Fault(status=303, body_override=b"gs://tfhub-modules/google/u/1/uncompressed"),
    )
    url = model_server.url("/google/u/1")
    assert hubcache.resolve(url) == "gs://tfhub-modules/google/u/1/uncompressed"
    (request,) = model_server.requests
    assert request.path == "/google/u/1?tf-hub-format=uncompressed"
    assert os.listdir(uncompressed) == []
    hubcache.resolve(url)
    assert model_server.count("/google/u/1") == 2  # asked every time, as tensorflow_hub does


def test_303_with_a_non_gcs_body_is_an_error(uncompressed: Path, model_server: ModelServer) -> None:
    model_server.add("/m/1", b"unused")
    model_server.faults("/m/1", Fault(status=303, body_override=b"https://elsewhere/m"))
    with pytest.raises(hubcache.DownloadError, match="Expected server to return a GCS location"):
        hubcache.resolve(model_server.url("/m/1"))


@pytest.mark.parametrize(
    ("status", "error"), [(404, hubcache.ModelNotFoundError), (403, hubcache.HTTPStatusError)]
)
def test_error_statuses(
    uncompressed: Path, model_server: ModelServer, status: int, error: type
) -> None:
    model_server.add("/m/1", b"unused")
    model_server.faults("/m/1", Fault(status=status))
    with pytest.raises(error):
        hubcache.resolve(model_server.url("/m/1"))


def test_200_with_something_else_is_tensorflow_hubs_error(
    uncompressed: Path, model_server: ModelServer
) -> None:
    model_server.add("/m/1", b"<html>hello</html>", content_type="text/html")
    with pytest.raises(
        hubcache.HTTPStatusError, match="Expected 303 for GCS location lookup but got HTTP 200"
    ):
        hubcache.resolve(model_server.url("/m/1"))


def test_200_with_an_archive_falls_back_to_compressed(
    uncompressed: Path, model_server: ModelServer
) -> None:
    model_server.add("/m/1", make_tar(MEMBERS, compression="gz"))  # answers any query
    url = model_server.url("/m/1")
    path = hubcache.resolve(url)
    assert Path(path, "saved_model.pb").read_bytes() == b"graph"
    queries = [r.path.split("?", 1)[1] for r in model_server.requests]
    assert queries == ["tf-hub-format=uncompressed", "tf-hub-format=compressed"]
