"""Offline mode (no request on hit or miss) and mirrors (ordered fall-through, same key)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import hubcache
from hubcache._config import parse_mirrors
from tests.support.cachehelp import model, run
from tests.support.httpserver import Fault, ModelServer, serve


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down/"


def test_offline_hit_and_miss_make_no_request(
    model_server: ModelServer, cache_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(model_server, "/m/1", model(1000))
    path = hubcache.resolve(url)
    seen = len(model_server.requests)
    code, out, _err = run(capsys, "resolve", "--offline", url)
    assert code == 0 and out.strip() == path
    missing = serve(model_server, "/absent/1", model(10))
    with pytest.raises(hubcache.OfflineError) as info:
        hubcache.resolve(missing, offline=True)
    assert missing in str(info.value) and "hubcache prefetch" in str(info.value)
    code, _out, err = run(capsys, "resolve", "--offline", missing)
    assert code == 7 and missing in err
    assert len(model_server.requests) == seen


def test_offline_from_the_environment(
    model_server: ModelServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_OFFLINE", "1")
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(serve(model_server, "/m/1", model(10)))
    assert model_server.requests == []


def test_mirrors_fall_through_in_order_and_keep_the_key(
    model_server: ModelServer, cache_root: Path
) -> None:
    origin = serve(model_server, "/origin/m/1", model(1000))
    model_server.add("/broken/m/1", b"", faults=(Fault(status=503),))
    serve(model_server, "/good/m/1", model(1000))
    base = model_server.url("/")
    mirrors = [
        f"{base}origin/={dead_url()}",
        f"{base}origin/={base}broken/",
        f"{base}origin/={base}missing/",
        f"{base}origin/={base}good/",
    ]
    path = hubcache.resolve(origin, mirrors=mirrors)
    assert Path(path).name == hubcache.cache_key(origin)
    served = [r.path.split("?")[0] for r in model_server.requests]
    assert served == ["/broken/m/1", "/broken/m/1", "/missing/m/1", "/good/m/1"]
    assert hubcache.Cache().info(origin).handle == origin


def test_the_origin_is_last_and_the_error_lists_every_place(
    model_server: ModelServer,
    cache_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origin = serve(model_server, "/origin/m/1", model(1000))
    base = model_server.url("/")
    monkeypatch.setenv("HUBCACHE_MIRRORS", f"{base}origin/={base}missing/")
    hubcache.resolve(origin)
    assert [r.path.split("?")[0] for r in model_server.requests] == [
        "/missing/m/1",
        "/origin/m/1",
    ]
    other = model_server.url("/origin/gone/1")
    down = dead_url()
    code, _out, err = run(
        capsys, "resolve", other, "--mirror", f"{base}origin/={down}", "--no-origin"
    )
    assert code == 4 and f"mirror {down}gone/1" in err and "origin" not in err.split("tried")[1]
    with pytest.raises(hubcache.ModelNotFoundError) as info:
        hubcache.resolve(other, mirrors=[f"{base}origin/={base}missing/"])
    assert info.value.tried[0].startswith(f"mirror {base}missing/gone/1")  # type: ignore[attr-defined]
    assert info.value.tried[1].startswith(f"origin {other}")  # type: ignore[attr-defined]


def test_mirror_specs_are_validated() -> None:
    assert parse_mirrors("https://tfhub.dev/=http://m/a/, https://x/=https://y/") == (
        ("https://tfhub.dev/", "http://m/a/"),
        ("https://x/", "https://y/"),
    )
    with pytest.raises(hubcache.ConfigurationError):
        parse_mirrors("tfhub.dev")
