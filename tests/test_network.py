"""The network policy of docs/architecture.md against a real, misbehaving loopback server (issue 4).

Timeouts and stalls, retries with backoff and Retry-After, resume with Range + If-Range,
the redirect policy, credentials and redaction, and the errors users actually meet. Every
test keeps delays tiny through the environment; none asserts on elapsed time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import hubcache
from hubcache.fetch import retry as _retry
from tests.support.archives import M, make_tar
from tests.support.httpserver import Fault, ModelServer
from tests.support.procs import run_cli
from tests.support.trees import assert_no_entry, tree

MEMBERS = [
    M("saved_model.pb", b"graph" * 200),
    M("variables/variables.data-00000-of-00001", os.urandom(300_000)),
]
ARCHIVE = make_tar(MEMBERS, compression="gz")
FILES = {m.name: m.data for m in MEMBERS}


@pytest.fixture(autouse=True)
def fast_network(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> Path:
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("HUBCACHE_RETRIES", "2")
    monkeypatch.setenv("HUBCACHE_READ_TIMEOUT", "2")
    monkeypatch.setenv("HUBCACHE_FSYNC", "0")
    return cache_root


def fail(url: str, error: type[BaseException], **kw: object) -> str:
    with pytest.raises(error) as info:
        hubcache.resolve(url, **kw)  # type: ignore[arg-type]
    return str(info.value)


def record_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry waits instead of sleeping them (only hubcache's retry pause is
    replaced, not ``time.sleep`` for the whole process)."""
    waits: list[float] = []
    monkeypatch.setattr(_retry, "_sleep", lambda seconds, stop: waits.append(seconds))
    return waits


# -- 1. timeouts ----------------------------------------------------------------------------


def test_never_answering_server_fails_in_bounded_time_with_exit_4_and_lock_released(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(never_answer=True),))
    env = {
        **os.environ,
        "HUBCACHE_READ_TIMEOUT": "0.3",
        "HUBCACHE_RETRIES": "1",
        "HUBCACHE_LOCK_TIMEOUT": "0",
    }
    done = run_cli(["resolve", url], env)
    assert done.returncode == 4, done.stderr
    assert "2 attempts" in done.stderr and "ReadTimeoutError" in done.stderr
    assert model_server.count("/m.tar.gz") == 2
    assert not list(cache_root.glob("*.lock")), "the lock was not released"
    assert_no_entry(cache_root)
    # the next call is not blocked by a leftover lock: it downloads at once
    model_server.faults("/m.tar.gz")
    assert tree(hubcache.resolve(url)) == FILES


def test_silence_mid_body_is_a_read_timeout_then_resumed(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_READ_TIMEOUT", "0.3")
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(stall_after=50_000, times=1),))
    assert tree(hubcache.resolve(url)) == FILES
    ranges = [r.headers.get("Range") for r in model_server.requests]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:].split("-")[0]) > 0  # bytes already received were kept


def test_drip_feed_below_the_read_timeout_is_caught_by_the_stall_detector(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 200 bytes/s in small pieces: never silent for the 2 s read timeout, yet hopeless.
    monkeypatch.setenv("HUBCACHE_STALL_TIMEOUT", "0.3")
    monkeypatch.setenv("HUBCACHE_MIN_SPEED", "100000")
    monkeypatch.setenv("HUBCACHE_RETRIES", "1")
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(drip=200),))
    message = fail(url, hubcache.DownloadError)
    assert "stalled" in message and "HUBCACHE_STALL_TIMEOUT" in message
    assert model_server.count("/m.tar.gz") == 2  # the first request and one resume


def test_drip_then_recovery_resumes(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_STALL_TIMEOUT", "0.3")
    monkeypatch.setenv("HUBCACHE_MIN_SPEED", "100000")
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(drip=200, times=1),))
    assert tree(hubcache.resolve(url, sha256=hashlib.sha256(ARCHIVE).hexdigest())) == FILES
    assert model_server.requests[1].headers.get("If-Range")


# -- 2. retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(model_server: ModelServer, status: int) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(status=status, times=2),))
    assert tree(hubcache.resolve(url)) == FILES
    assert model_server.count("/m.tar.gz") == 3


@pytest.mark.parametrize("status", [400, 401, 403, 405, 451])
def test_other_4xx_are_not_retried(model_server: ModelServer, status: int) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(status=status),))
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(url)
    assert info.value.exit_code == 4 and info.value.status == status  # type: ignore[attr-defined]
    assert model_server.count("/m.tar.gz") == 1


def test_final_error_names_the_last_cause_and_the_attempts(model_server: ModelServer) -> None:
    url = model_server.add(
        "/m.tar.gz", ARCHIVE, faults=(Fault(status=500, times=1), Fault(status=503))
    )
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(url)
    assert "after 3 attempts" in str(info.value) and "HTTP 503" in str(info.value)
    assert info.value.attempts == 3  # type: ignore[attr-defined]
    assert info.value.exit_code == 4


def test_connection_refused_is_retried_then_reported() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = fail(f"http://127.0.0.1:{port}/m.tar.gz", hubcache.DownloadError)
    assert "after 3 attempts" in message and "NewConnectionError" in message


def test_retry_after_is_honoured_and_capped(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = record_waits(monkeypatch)
    monkeypatch.setenv("HUBCACHE_RETRIES", "3")
    url = model_server.add(
        "/m.tar.gz",
        ARCHIVE,
        faults=(
            Fault(status=503, retry_after="7", times=1),
            Fault(status=429, retry_after="86400", times=1),
            Fault(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", times=1),
        ),
    )
    assert tree(hubcache.resolve(url)) == FILES
    assert waits == [7.0, _retry.MAX_RETRY_AFTER, 0.0]


def test_a_server_always_asking_to_retry_after_a_second_is_given_up_on_within_the_budget(
    model_server: ModelServer, cache_root: Path
) -> None:
    """Every answer is 503 + Retry-After: 1. Each wait the server asks for is one of the
    HUBCACHE_RETRIES retries (2 here), so the CLI gives up after 3 requests and about 2 s
    with exit 4 and one line; a wait not counted would retry until the run's timeout."""
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(status=503, retry_after="1"),))
    done = run_cli(["resolve", url], dict(os.environ), timeout=20)
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "after 3 attempts" in done.stderr, done.stderr
    assert model_server.count("/m.tar.gz") == 3
    assert_no_entry(cache_root)


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", "1e999", "Wed, 99 Foo", ""])
def test_an_unusable_retry_after_falls_back_to_our_backoff(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    waits = record_waits(monkeypatch)
    url = model_server.add(
        "/m.tar.gz", ARCHIVE, faults=(Fault(status=503, retry_after=value, times=1),)
    )
    assert tree(hubcache.resolve(url)) == FILES
    assert len(waits) == 1 and 0.005 <= waits[0] <= 0.015  # HUBCACHE_RETRY_BACKOFF=0.01


def test_backoff_grows_with_jitter(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = record_waits(monkeypatch)
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "1")
    monkeypatch.setenv("HUBCACHE_RETRIES", "3")
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(status=502, times=3),))
    hubcache.resolve(url)
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 0.5 * 2**n <= wait <= 1.5 * 2**n


# -- 3. resume ------------------------------------------------------------------------------


def test_drop_resumes_with_range_and_keeps_the_bytes(model_server: ModelServer) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(drop_after=100_000, times=1),))
    path = hubcache.resolve(url, sha256=hashlib.sha256(ARCHIVE).hexdigest())
    assert tree(path) == FILES
    first, second = model_server.requests
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes=100000-{len(ARCHIVE) - 1}"
    etag = hashlib.sha1(ARCHIVE, usedforsecurity=False).hexdigest()
    assert second.headers["If-Range"] == f'"{etag}"'


def test_reset_mid_body_resumes_with_last_modified(model_server: ModelServer) -> None:
    url = model_server.add(
        "/m.tar.gz",
        ARCHIVE,
        etag="",
        last_modified=1_600_000_000,
        faults=(Fault(drop_after=64_000, reset=True, times=1),),
    )
    assert tree(hubcache.resolve(url)) == FILES
    assert model_server.requests[1].headers["If-Range"].endswith("GMT")


def test_range_ignored_restarts_from_zero(model_server: ModelServer) -> None:
    url = model_server.add(
        "/m.tar.gz",
        ARCHIVE,
        faults=(Fault(drop_after=100_000, times=1), Fault(ignore_range=True)),
    )
    assert tree(hubcache.resolve(url, sha256=hashlib.sha256(ARCHIVE).hexdigest())) == FILES
    ranges = [r.headers.get("Range") for r in model_server.requests]
    assert ranges[0] is None and ranges[1] is not None and ranges[2] is None


def test_wrong_content_range_restarts_from_zero(model_server: ModelServer) -> None:
    url = model_server.add(
        "/m.tar.gz",
        ARCHIVE,
        faults=(Fault(drop_after=100_000, times=1), Fault(wrong_content_range=True, times=1)),
    )
    assert tree(hubcache.resolve(url)) == FILES
    assert [r.headers.get("Range") is not None for r in model_server.requests] == [
        False,
        True,
        False,
    ]


def test_changed_etag_restarts_and_the_new_archive_is_checked(
    model_server: ModelServer, cache_root: Path
) -> None:
    # the object changes between the first request and the resume: If-Range fails, the
    # server sends the whole object again (200), and we start over rather than mix versions
    url = model_server.add(
        "/m.tar.gz",
        ARCHIVE,
        faults=(Fault(drop_after=100_000, times=1), Fault(change_etag_after=1)),
    )
    assert tree(hubcache.resolve(url)) == FILES
    assert model_server.count("/m.tar.gz") == 3
    assert model_server.requests[2].headers.get("Range") is None


def test_body_shorter_than_announced_without_resume_support(model_server: ModelServer) -> None:
    url = model_server.add(
        "/m.tar.gz", ARCHIVE, etag="", accept_ranges=False, faults=(Fault(drop_after=1000),)
    )
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(url)
    assert info.value.exit_code == 4 and "could not be completed" in str(info.value)


def test_longer_announced_length_is_a_truncated_body(
    model_server: ModelServer, cache_root: Path
) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE, faults=(Fault(wrong_length=500),))
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(url)
    assert "416" in str(info.value)
    assert_no_entry(cache_root)


# -- 4. redirects, credentials, redaction ---------------------------------------------------


def test_https_to_http_redirect_is_refused(
    https_model_server: ModelServer,
    model_server: ModelServer,
    tls_ca: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.tlsserver import ca_bundle

    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle(tls_ca, tmp_path))
    plain = model_server.add("/m.tar.gz", ARCHIVE)
    url = https_model_server.redirect("/m.tar.gz", plain)
    message = fail(url, hubcache.DownloadError)
    assert "https to plain http" in message
    assert model_server.count("/m.tar.gz") == 0
    # http -> https is an upgrade and is followed
    secure = https_model_server.add("/s.tar.gz", ARCHIVE)
    assert tree(hubcache.resolve(model_server.redirect("/up.tar.gz", secure))) == FILES


@pytest.mark.parametrize(
    "target", ["ftp://127.0.0.1/m.tar.gz", "file:///etc/passwd", "data:,hello", "gopher://x/"]
)
def test_non_http_redirect_targets_are_refused(model_server: ModelServer, target: str) -> None:
    url = model_server.redirect("/m.tar.gz", target)
    message = fail(url, hubcache.DownloadError)
    assert "refused" in message and target.split(":", maxsplit=1)[0] + ":" in message
    assert model_server.count("/m.tar.gz") == 1  # refused, not retried


def test_at_most_ten_redirects(model_server: ModelServer) -> None:
    model_server.add("/m.tar.gz", ARCHIVE)
    for hop in range(11):
        model_server.redirect(f"/r{hop}", f"/r{hop + 1}" if hop < 10 else "/m.tar.gz")
    assert tree(hubcache.resolve(model_server.url("/r1"))) == FILES  # 10 hops: fine
    message = fail(model_server.url("/r0"), hubcache.DownloadError)  # 11 hops
    assert "more than 10 times" in message
    model_server.redirect("/loop", "/loop")
    assert "more than 10 times" in fail(model_server.url("/loop"), hubcache.DownloadError)


def test_user_headers_go_to_the_origin_only(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HUBCACHE_HTTP_HEADERS", '{"Authorization": "Bearer s3cret", "X-Team": "ml"}'
    )
    with ModelServer() as other:  # another port: another host as far as credentials go
        target = other.add("/blob.tar.gz", ARCHIVE)
        model_server.redirect("/m.tar.gz", target)
        model_server.redirect("/back.tar.gz", other.redirect("/bounce", model_server.url("/x")))
        model_server.add("/x", ARCHIVE)
        assert tree(hubcache.resolve(model_server.url("/m.tar.gz"))) == FILES
        hubcache.resolve(model_server.url("/back.tar.gz"))
        for request in other.requests:
            assert "Authorization" not in request.headers and "X-Team" not in request.headers
        assert other.count("/blob.tar.gz") == 1 and other.count("/bounce") == 1
    first = model_server.requests[0].headers
    assert first["Authorization"] == "Bearer s3cret" and first["X-Team"] == "ml"
    # once a chain left the origin, coming back does not restore the credentials
    back = [r for r in model_server.requests if r.path == "/x"]
    assert back and "Authorization" not in back[0].headers


def test_our_own_headers_carry_no_credentials(model_server: ModelServer) -> None:
    url = model_server.add("/m.tar.gz", ARCHIVE)
    hubcache.resolve(url)
    sent = {k.lower() for k in model_server.requests[0].headers}
    assert not sent & {"authorization", "cookie", "proxy-authorization"}


def test_bad_header_setting_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_HTTP_HEADERS", "Authorization: Bearer x")
    with pytest.raises(hubcache.ConfigurationError, match="HUBCACHE_HTTP_HEADERS"):
        hubcache.resolve("https://127.0.0.1:9/m.tar.gz")


def test_signed_url_query_is_redacted_everywhere(
    model_server: ModelServer, cache_root: Path
) -> None:
    signed = "/bucket/m.tar.gz?X-Goog-Signature=SIGSECRET&X-Goog-Credential=CREDSECRET"
    model_server.add("/bucket/m.tar.gz", ARCHIVE, faults=(Fault(status=403),))
    url = model_server.redirect("/m/1", signed)
    env = {**os.environ, "TFHUB_DOWNLOAD_PROGRESS": "1"}
    done = run_cli(["resolve", "-vv", "--progress", url], env)
    assert done.returncode == 4
    assert "403" in done.stderr and "127.0.0.1" in done.stderr  # the final host is named
    assert "X-Goog-Signature=..." in done.stderr
    assert "SIGSECRET" not in done.stderr + done.stdout
    assert "CREDSECRET" not in done.stderr + done.stdout
    # and in the library's exception, as raised
    message = fail(url, hubcache.HTTPStatusError)
    assert "SIGSECRET" not in message and "CREDSECRET" not in message


def test_progress_and_logs_of_a_good_signed_download_are_redacted(
    model_server: ModelServer, cache_root: Path
) -> None:
    model_server.add("/bucket/m.tar.gz", ARCHIVE, faults=(Fault(drop_after=9000, times=1),))
    url = model_server.redirect("/m/1", "/bucket/m.tar.gz?sig=SIGSECRET")
    done = run_cli(["resolve", "-vv", "--progress", url], {**os.environ, "HUBCACHE_FSYNC": "0"})
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr  # the log line about the resume was written ...
    assert "SIGSECRET" not in done.stderr  # ... without the signature


# -- 7. clear errors ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_mention_credentials_and_final_host(model_server: ModelServer, status: int) -> None:
    with ModelServer() as cdn:
        target = cdn.add("/obj", ARCHIVE, faults=(Fault(status=status),))
        url = model_server.redirect("/m.tar.gz", target + "?Expires=1&Signature=abc")
        with pytest.raises(hubcache.HTTPStatusError) as info:
            hubcache.resolve(url)
        port = cdn.port
    message = str(info.value)
    assert "final host 127.0.0.1" in message and f":{port}/obj" in message
    assert "Signature=abc" not in message
    assert "credentials" in message and "expired" in message
    assert info.value.status == status and info.value.exit_code == 4  # type: ignore[attr-defined]


def test_404_is_not_found_exit_3(model_server: ModelServer, cache_root: Path) -> None:
    with pytest.raises(hubcache.ModelNotFoundError) as info:
        hubcache.resolve(model_server.url("/nope/1"))
    assert info.value.exit_code == 3 and "404" in str(info.value)
    assert model_server.count("/nope/1") == 1  # not retried
    assert_no_entry(cache_root)


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"<!DOCTYPE html><html><body>Sign in\x07</body>", "text/html", "an HTML page"),
        (b'{"error": "quota"}', "application/json", "a JSON document"),
        (b"", "application/octet-stream", "an empty body"),
    ],
)
def test_non_archive_bodies_show_type_and_escaped_prefix(
    model_server: ModelServer, cache_root: Path, body: bytes, ctype: str, words: str
) -> None:
    url = model_server.add("/m.tar.gz", body, content_type=ctype)
    with pytest.raises(hubcache.NotAnArchiveError) as info:
        hubcache.resolve(url)
    message = str(info.value)
    assert words in message and info.value.exit_code == 5
    assert url in message  # the error names the handle
    if body:
        assert ctype in message and repr(body[:10].decode())[1:-1] in message
    assert "\x07" not in message  # control characters are escaped, not printed
    assert_no_entry(cache_root)


# -- credentials in the handle's URL ---------------------------------------------------------


def with_credentials(url: str, userinfo: str = "alice:pa55word") -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def test_url_credentials_are_sent_as_basic_auth_to_that_host_only(
    model_server: ModelServer, cache_root: Path
) -> None:
    import base64

    with ModelServer() as other:
        target = other.add("/blob.tar.gz", ARCHIVE)
        model_server.redirect("/m.tar.gz", "/same-host.tar.gz")  # same host: still sent
        model_server.redirect("/same-host.tar.gz", target)  # another host: never sent
        path = hubcache.resolve(with_credentials(model_server.url("/m.tar.gz")))
        assert tree(path) == FILES
        assert all("Authorization" not in r.headers for r in other.requests)
        assert other.count("/blob.tar.gz") == 1
    expected = "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert [r.headers.get("Authorization") for r in model_server.requests] == [expected] * 2
    # the key is still tensorflow_hub's: sha1 of the handle exactly as given
    assert Path(path).name == hubcache.cache_key(with_credentials(model_server.url("/m.tar.gz")))


def test_a_token_alone_in_the_url_is_sent_too(model_server: ModelServer) -> None:
    import base64

    url = with_credentials(model_server.add("/m.tar.gz", ARCHIVE), "t%40ken")
    hubcache.resolve(url)
    sent = model_server.requests[0].headers["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")) == b"t@ken:"


def test_an_explicit_authorization_header_wins_over_url_credentials(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_HTTP_HEADERS", '{"Authorization": "Bearer tok"}')
    hubcache.resolve(with_credentials(model_server.add("/m.tar.gz", ARCHIVE)))
    assert model_server.requests[0].headers["Authorization"] == "Bearer tok"


def test_url_credentials_are_never_printed_logged_or_written_to_the_cache(
    model_server: ModelServer, cache_root: Path
) -> None:
    good = with_credentials(model_server.add("/m.tar.gz", ARCHIVE))
    missing = with_credentials(model_server.url("/nope.tar.gz"))
    env = {**os.environ, "TFHUB_DOWNLOAD_PROGRESS": "1"}
    runs = [
        ["resolve", "-vv", "--progress", good],
        ["resolve", "-vv", missing],
        ["ls"],
        ["ls", "--json"],
        ["info", good],
        ["info", "--json", good],
        ["verify", good],
    ]
    shown = []
    for args in runs:
        done = run_cli(args, env)
        assert "pa55word" not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
        shown.append(done.stdout + done.stderr)
    assert "alice:***@127.0.0.1" in shown[2]  # ls names the user, never the password
    assert "alice:***@127.0.0.1" in shown[4]  # and so does info
    for name in os.listdir(cache_root):
        path = cache_root / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            assert b"pa55word" not in file.read_bytes(), file
    with pytest.raises(hubcache.ModelNotFoundError) as info:
        hubcache.resolve(missing)
    assert "pa55word" not in str(info.value) and "pa55word" not in str(info.value.handle)


def test_an_adopted_tensorflow_hub_entry_of_a_credentialed_handle_keeps_no_password(
    model_server: ModelServer, cache_root: Path
) -> None:
    """tensorflow_hub cached ``http://alice:pa55word@host/m/1`` (its descriptor names the
    handle as given: not ours to change). Adopting the tree writes our manifest, which, like
    every listing of it, must name the user only."""
    url = with_credentials(model_server.url("/m/1"))
    key = hubcache.cache_key(url)
    (cache_root / key / "variables").mkdir(parents=True)
    (cache_root / key / "saved_model.pb").write_bytes(b"by hand")
    (cache_root / key / "variables" / "variables.index").write_bytes(b"i")
    (cache_root / f"{key}.descriptor.txt").write_text(f"Module: {url}\n")
    assert hubcache.resolve(url) == str(cache_root / key)  # adopted, with no request
    assert model_server.requests == []
    manifest = (cache_root / f"{key}.manifest.json").read_text()
    assert '"adopted": true' in manifest and "alice:***@127.0.0.1" in manifest
    assert "pa55word" not in manifest
    for args in (["ls", "--json"], ["ls"], ["info", url], ["info", "--json", url]):
        done = run_cli(args, dict(os.environ))
        assert done.returncode == 0, (args, done.stderr)
        assert "pa55word" not in done.stdout + done.stderr, (args, done.stdout, done.stderr)


def test_an_entry_of_a_credentialed_handle_exports_and_imports(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = with_credentials(model_server.add("/m.tar.gz", ARCHIVE))
    hubcache.resolve(url)
    out = str(tmp_path / "out.tar")
    hubcache.Cache(str(cache_root)).export(out, [url])
    other = hubcache.Cache(str(tmp_path / "other"))
    [imported] = other.import_archive(out)
    assert imported.status == "imported", imported
    assert other.is_complete(url) and "pa55word" not in Path(out).read_bytes().decode("latin-1")
    assert tree(hubcache.resolve(url, cache_dir=str(tmp_path / "other"))) == FILES


def test_an_origin_without_content_length_resolves_and_a_cut_one_caches_nothing(
    model_server: ModelServer, cache_root: Path
) -> None:
    """A streaming origin (chunked, no Content-Length) resolves. Cut before its last chunk,
    no length can tell it was short: the chunk framing must, so it is a download error
    (after the retries) with nothing cached, and the next try succeeds."""
    whole = model_server.add("/whole.tar.gz", ARCHIVE, faults=(Fault(chunked=True),))
    cut = model_server.add(
        "/cut.tar.gz", ARCHIVE, faults=(Fault(chunked=True, drop_after=len(ARCHIVE) // 3),)
    )
    fail(cut, hubcache.DownloadError)
    assert model_server.count("/cut.tar.gz") == 3  # the first try and HUBCACHE_RETRIES=2
    assert_no_entry(cache_root)
    assert tree(hubcache.resolve(whole)) == FILES
    model_server.faults("/cut.tar.gz", Fault(chunked=True))
    assert tree(hubcache.resolve(cut)) == FILES
