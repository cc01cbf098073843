"""Fixtures every test module may use. Tests are hermetic: no variable of the developer's shell
(cache dir, offline mode, proxies) may change what hubcache does under test."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.support.httpserver import ModelServer
from tests.support.proxy import ProxyServer

# CI runs the property tests derandomized, so a red run can be reproduced exactly;
# locally they explore new examples each run. No profile keeps an example database: it
# would be written to .hypothesis/ in the checkout, which the README's flags keep clean.
settings.register_profile("local", database=None)
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_KEEP = {"HUBCACHE_TF_PYTHON"}  # configures the interop tests, not hubcache


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear TFHUB_*, HUBCACHE_* (but HUBCACHE_TF_PYTHON), KAGGLE_*, KAGGLEHUB_* and proxy
    variables; disable the progress bar. Proxies go too: hubcache may honour them, and
    loopback tests must not depend on the developer's NO_PROXY."""
    for name in list(os.environ):
        if name in _KEEP:
            continue
        if name.startswith(("TFHUB_", "HUBCACHE_", "KAGGLE_", "KAGGLEHUB_")) or (
            name.lower() in _PROXY_VARS
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TFHUB_DOWNLOAD_PROGRESS", "0")


@pytest.fixture
def cache_root(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, hermetic_env: None
) -> pathlib.Path:
    """A fresh, empty cache directory, also exported as TFHUB_CACHE_DIR."""
    root = tmp_path / "tfhub_cache"
    root.mkdir()
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root))
    return root


def _check_clean(server: Any) -> None:
    if server.errors:
        pytest.fail(f"test server handler crashed: {server.errors}")


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started plain-HTTP :class:`ModelServer`, stopped (and checked) at teardown."""
    with ModelServer() as server:
        yield server
    _check_clean(server)


@pytest.fixture(scope="session")
def tls_ca() -> Any:
    """A throwaway trustme CA (session-wide: key generation is the slow part)."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def https_model_server(tls_ca: Any) -> Iterator[ModelServer]:
    """Like ``model_server`` over HTTPS, with a certificate from ``tls_ca``."""
    from tests.support.tlsserver import https_server

    with https_server(tls_ca) as server:
        yield server
    _check_clean(server)


@pytest.fixture
def proxy_server() -> Iterator[ProxyServer]:
    """A started forwarding proxy (CONNECT and absolute-URI GET) to loopback servers."""
    with ProxyServer() as proxy:
        yield proxy
    _check_clean(proxy)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Any]:
    """A GCS emulator subprocess for the session (tests/support/emulators.py)."""
    from tests.support.emulators import start_gcs

    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # read when gcsfs is imported
    emulator = start_gcs()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Any]:
    """moto's S3 server subprocess for the session."""
    from tests.support.emulators import start_s3

    emulator = start_s3()
    yield emulator
    emulator.stop()
