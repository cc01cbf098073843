"""TLS and proxies against real loopback servers: trustme certificates, a forwarding proxy.

Verification is on by default; ``SSL_CERT_FILE`` and the usual CA variables are honoured;
``TFHUB_DISABLE_CERT_VALIDATION=true`` (exactly) turns it off for hubcache alone, with one
loud warning and no urllib3 warning spam (pytest runs with warnings as errors, so a leaked
``InsecureRequestWarning`` fails these tests). Environment changes between two calls are
honoured although connection pools are cached.
"""

from __future__ import annotations

import logging
import os
import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
import urllib3

import hubcache
from hubcache.fetch import pool as _http
from tests.support.archives import M, make_tar
from tests.support.httpserver import Fault, ModelServer
from tests.support.proxy import ProxyServer
from tests.support.tlsserver import ca_bundle

ARCHIVE = make_tar([M("saved_model.pb", b"graph" * 100)], compression="gz")


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> None:
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("HUBCACHE_RETRIES", "2")
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, tls_ca: Any, tmp_path: Path) -> str:
    bundle = ca_bundle(tls_ca, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", bundle)
    return bundle


def test_untrusted_ca_fails_at_once_with_exit_4(https_model_server: ModelServer) -> None:
    url = https_model_server.add("/m.tar.gz", ARCHIVE)
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(url)
    message = str(info.value)
    assert info.value.exit_code == 4 and "TLS error" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message and "SSL_CERT_FILE" in message
    assert info.value.attempts == 1  # type: ignore[attr-defined]  # not retried
    assert https_model_server.count("/m.tar.gz") == 0  # no request went through


def test_ssl_cert_file_is_honoured_and_env_changes_are_seen(
    https_model_server: ModelServer, tls_ca: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = https_model_server.add("/m.tar.gz", ARCHIVE)
    with pytest.raises(hubcache.DownloadError, match="TLS error"):
        hubcache.resolve(url)  # builds and caches a pool with the default trust store
    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle(tls_ca, tmp_path))
    assert os.path.isdir(hubcache.resolve(url))
    monkeypatch.delenv("SSL_CERT_FILE")
    other = https_model_server.add("/n.tar.gz", ARCHIVE)
    with pytest.raises(hubcache.DownloadError, match="TLS error"):  # trust withdrawn: seen
        hubcache.resolve(other)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_other_ca_bundle_variables(
    https_model_server: ModelServer,
    tls_ca: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, ca_bundle(tls_ca, tmp_path))
    assert os.path.isdir(hubcache.resolve(https_model_server.add("/m.tar.gz", ARCHIVE)))


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
@pytest.mark.parametrize("bundle", ["missing.pem", "not-a-bundle.txt"])
def test_a_ca_bundle_that_cannot_be_loaded_is_named_as_a_usage_error(
    https_model_server: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    bundle: str,
) -> None:
    """The variable and its value are named, as a usage error (exit 2), not taken for the
    cache folder's failure (exit 6), and nothing is cached."""
    (tmp_path / "not-a-bundle.txt").write_text("no certificate here\n")
    monkeypatch.setenv(variable, str(tmp_path / bundle))
    url = https_model_server.add("/m.tar.gz", ARCHIVE)
    with pytest.raises(hubcache.ConfigurationError, match=f"{variable}=.*{bundle}"):
        hubcache.resolve(url)
    assert https_model_server.count("/m.tar.gz") == 0


def test_wrong_hostname_fails(tls_ca: Any, trusted: str) -> None:
    with ModelServer(tls=tls_ca.issue_cert("models.example.org")) as server:
        url = server.add("/m.tar.gz", ARCHIVE)
        with pytest.raises(hubcache.DownloadError) as info:
            hubcache.resolve(url)
    assert "TLS error" in str(info.value) and info.value.attempts == 1  # type: ignore[attr-defined]
    assert "127.0.0.1" in str(info.value)  # the mismatch is named


@pytest.mark.parametrize("value", ["1", "True", "TRUE", "yes", " true"])
def test_only_the_exact_string_true_disables_verification(
    https_model_server: ModelServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # tensorflow_hub would keep verifying for these; we refuse them outright (exit 2) so a
    # user who meant "off" learns the rule, and nothing is fetched unverified either way
    monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", value)
    with pytest.raises(hubcache.ConfigurationError, match="exactly 'true'"):
        hubcache.resolve(https_model_server.add("/m.tar.gz", ARCHIVE))
    assert https_model_server.requests == []


def test_opt_out_works_warns_loudly_and_does_not_leak(
    https_model_server: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_http, "_WARNED_INSECURE", False)
    filters_before = list(warnings.filters)
    https_context_before = ssl._create_default_https_context
    monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", "true")
    url = https_model_server.add("/m.tar.gz", ARCHIVE)
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert os.path.isdir(hubcache.resolve(url))
        assert os.path.isdir(hubcache.resolve(https_model_server.add("/n.tar.gz", ARCHIVE)))
    assert [w for w in seen if issubclass(w.category, urllib3.exceptions.HTTPWarning)] == []
    loud = [r for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelno == logging.WARNING  # once per process
    # nothing global changed: other clients in the process still verify
    assert warnings.filters == filters_before
    assert ssl._create_default_https_context is https_context_before
    with urllib3.PoolManager() as other, pytest.raises(urllib3.exceptions.SSLError):
        other.request("GET", https_model_server.url("/m.tar.gz"), retries=False)
    # and hubcache itself verifies again as soon as the variable is gone
    monkeypatch.delenv("TFHUB_DISABLE_CERT_VALIDATION")
    with pytest.raises(hubcache.DownloadError, match="TLS error"):
        hubcache.resolve(https_model_server.add("/o.tar.gz", ARCHIVE))


def test_urllib3_insecure_warning_is_intact_for_user_pools(
    https_model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", "true")
    hubcache.resolve(https_model_server.add("/m.tar.gz", ARCHIVE))
    with (
        urllib3.PoolManager(cert_reqs="CERT_NONE") as theirs,
        pytest.warns(urllib3.exceptions.InsecureRequestWarning),
    ):
        theirs.request("GET", https_model_server.url("/m.tar.gz"), retries=False)


# -- proxies --------------------------------------------------------------------------------


def test_http_proxy_is_used_and_env_changes_are_honoured(
    model_server: ModelServer, proxy_server: ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE)
    monkeypatch.setenv("http_proxy", proxy_server.url())
    hubcache.resolve(url)
    assert [r.target for r in proxy_server.requests] == [url]
    monkeypatch.delenv("http_proxy")
    hubcache.resolve(model_server.add("/n.tar.gz", ARCHIVE))
    assert proxy_server.count() == 1  # the cached proxy pool was not reused


def test_https_goes_through_connect_tunnel(
    https_model_server: ModelServer,
    proxy_server: ProxyServer,
    trusted: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", proxy_server.url())
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # wrong on purpose: not for https
    assert os.path.isdir(hubcache.resolve(https_model_server.add("/m.tar.gz", ARCHIVE)))
    assert [r.method for r in proxy_server.requests] == ["CONNECT"]
    assert proxy_server.requests[0].target == f"127.0.0.1:{https_model_server.port}"


def test_no_proxy_bypasses_the_proxy(
    model_server: ModelServer, proxy_server: ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy_server.url())
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    hubcache.resolve(model_server.add("/m.tar.gz", ARCHIVE))
    assert proxy_server.count() == 0 and model_server.count("/m.tar.gz") == 1


def test_resume_through_the_proxy(
    model_server: ModelServer, proxy_server: ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_tar([M("v", os.urandom(200_000))], compression="gz")
    url = model_server.add("/m.tar.gz", body, faults=(Fault(drop_after=50_000, times=1),))
    monkeypatch.setenv("http_proxy", proxy_server.url())
    hubcache.resolve(url)
    assert proxy_server.count() == 2
    assert proxy_server.requests[1].headers.get("Range", "").startswith("bytes=50000-")


def test_dead_proxy_is_a_network_error(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(model_server.add("/m.tar.gz", ARCHIVE))
    assert info.value.exit_code == 4 and "3 attempts" in str(info.value)
    assert model_server.count("/m.tar.gz") == 0
