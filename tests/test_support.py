"""Self-tests of the shared test infrastructure: if these fail, nothing else can be trusted."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import socket
import ssl
import stat
import tarfile
import threading
import time
import zipfile
import zlib
from typing import Any, Optional

import pytest

from tests.support import archives as arc
from tests.support.httpserver import Fault, ModelServer
from tests.support.proxy import ProxyServer
from tests.support.tlsserver import ca_bundle, client_context

BODY = bytes(range(256)) * 40  # 10240 bytes


def fetch(
    srv: Any,
    path: str,
    headers: Optional[dict[str, str]] = None,
    method: str = "GET",
    timeout: float = 5,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# --- plain serving ----------------------------------------------------------------------------


def test_get_head_404_and_request_log(model_server: ModelServer) -> None:
    url = model_server.add("/models/a/1", BODY, content_type="application/x-tar")
    assert url == f"http://127.0.0.1:{model_server.port}/models/a/1"
    status, headers, body = fetch(model_server, "/models/a/1", {"X-Probe": "yes"})
    assert (status, body) == (200, BODY)
    assert headers["Content-Length"] == str(len(BODY))
    assert headers["ETag"] == f'"{hashlib.sha1(BODY, usedforsecurity=False).hexdigest()}"'
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "application/x-tar"
    status, headers, body = fetch(model_server, "/models/a/1", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(BODY)))
    assert fetch(model_server, "/nope")[0] == 404
    assert model_server.count("/models/a/1") == 1
    assert model_server.count("/models/a/1", method=None) == 2
    method, path, seen = model_server.requests[0]
    assert (method, path, seen["x-probe"]) == ("GET", "/models/a/1", "yes")


def test_keep_alive_connection_is_reused(model_server: ModelServer) -> None:
    model_server.add("/a", BODY)
    conn = http.client.HTTPConnection("127.0.0.1", model_server.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/a")
            assert conn.getresponse().read() == BODY
    finally:
        conn.close()
    assert model_server.count("/a") == 3


@pytest.mark.parametrize(
    ("spec", "status", "first", "last"),
    [
        ("bytes=2-5", 206, 2, 5),
        ("bytes=10000-", 206, 10000, 10239),
        ("bytes=-3", 206, 10237, 10239),
        ("bytes=5-999999", 206, 5, 10239),
        ("bytes=0-1,4-5", 200, 0, 10239),
        ("items=0-1", 200, 0, 10239),
    ],
)
def test_ranges(model_server: ModelServer, spec: str, status: int, first: int, last: int) -> None:
    model_server.add("/a", BODY)
    got, headers, body = fetch(model_server, "/a", {"Range": spec})
    assert (got, body) == (status, BODY[first : last + 1])
    if status == 206:
        assert headers["Content-Range"] == f"bytes {first}-{last}/{len(BODY)}"


def test_unsatisfiable_range_is_416(model_server: ModelServer) -> None:
    model_server.add("/a", BODY)
    status, headers, _ = fetch(model_server, "/a", {"Range": f"bytes={len(BODY)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(BODY)}")


def test_if_range(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, etag='"v1"', last_modified=1_600_000_000)
    date = "Sun, 13 Sep 2020 12:26:40 GMT"
    for cond, status in [
        ('"v1"', 206),
        ('"v0"', 200),
        ('W/"v1"', 200),
        (date, 206),
        ("Mon, 14 Sep 2020 12:26:40 GMT", 200),
        ("garbage", 200),
    ]:
        got, headers, body = fetch(model_server, "/a", {"Range": "bytes=4-", "If-Range": cond})
        assert got == status, cond
        assert body == (BODY[4:] if status == 206 else BODY)
        assert headers["Last-Modified"] == date


def test_no_ranges_and_no_etag(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, accept_ranges=False, etag="")
    status, headers, body = fetch(model_server, "/a", {"Range": "bytes=0-9"})
    assert (status, body) == (200, BODY)
    assert "Accept-Ranges" not in headers
    assert "ETag" not in headers


def test_query_required(model_server: ModelServer) -> None:
    model_server.add("/m/1", BODY, query_required="tf-hub-format=compressed")
    assert fetch(model_server, "/m/1")[0] == 404
    assert fetch(model_server, "/m/1?tf-hub-format=uncompressed")[0] == 404
    assert fetch(model_server, "/m/1?x=1&tf-hub-format=compressed")[0] == 200
    assert model_server.count("/m/1") == 3


def test_redirects(model_server: ModelServer) -> None:
    model_server.add("/new", BODY)
    model_server.redirect("/old", "/new", status=301)
    model_server.redirect("/abs", model_server.url("/new"), keep_query=True)
    status, headers, _ = fetch(model_server, "/old?q=1")
    assert (status, headers["Location"]) == (301, "/new")
    status, headers, _ = fetch(model_server, "/abs?q=1")
    assert (status, headers["Location"]) == (302, model_server.url("/new?q=1"))


def test_add_file_streams_from_disk(model_server: ModelServer, tmp_path: Any) -> None:
    big = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(big)
    model_server.add_file("/blob", tmp_path / "blob", content_type="application/x-tar")
    status, headers, body = fetch(model_server, "/blob")
    assert (status, body) == (200, big)
    assert headers["ETag"].startswith('"')
    status, _, body = fetch(model_server, "/blob", {"Range": "bytes=100000-100009"})
    assert (status, body) == (206, big[100000:100010])
    with pytest.raises(TypeError):
        model_server.add_file("/x", tmp_path / "blob", bogus=1)


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 503, 429, 408, 403, 401, 404, 410])
def test_status_fault_once_then_success(model_server: ModelServer, code: int) -> None:
    model_server.add("/a", BODY, faults=(Fault(status=code, retry_after="2", times=1),))
    status, headers, body = fetch(model_server, "/a")
    assert (status, headers["Retry-After"]) == (code, "2")
    assert str(code).encode() in body
    assert fetch(model_server, "/a")[:3:2] == (200, BODY)


def test_faults_are_used_in_order_and_by_method(model_server: ModelServer) -> None:
    model_server.add("/a", BODY)
    model_server.faults(
        "/a",
        Fault(status=503, times=1, methods=("GET",)),
        Fault(status=500, times=2, headers={"X-Why": "test"}),
    )
    assert fetch(model_server, "/a", method="HEAD")[0] == 500  # HEAD skips the GET-only one
    assert fetch(model_server, "/a")[0] == 503
    status, headers, _ = fetch(model_server, "/a")
    assert (status, headers["X-Why"]) == (500, "test")
    assert fetch(model_server, "/a")[0] == 200
    model_server.faults("/a", Fault(status=500))
    model_server.faults("/a")  # cleared
    assert fetch(model_server, "/a")[0] == 200


def test_body_override(model_server: ModelServer) -> None:
    model_server.add("/a", BODY)
    html = b"<html><body>Please sign in</body></html>"
    model_server.faults(
        "/a",
        Fault(body_override=html, content_type="text/html", times=1),
        Fault(
            status=403,
            body_override=b'{"error": "quota"}',
            content_type="application/json",
            times=1,
        ),
    )
    status, headers, body = fetch(model_server, "/a")
    assert (status, headers["Content-Type"], body) == (200, "text/html", html)
    status, headers, body = fetch(model_server, "/a")
    assert (status, headers["Content-Type"], body) == (
        403,
        "application/json",
        b'{"error": "quota"}',
    )


def test_drop_after(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(drop_after=1000, times=1),))
    with pytest.raises(http.client.IncompleteRead) as info:
        fetch(model_server, "/a")
    assert info.value.partial == BODY[:1000]
    assert fetch(model_server, "/a")[2] == BODY


def test_drop_after_with_reset(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(drop_after=10, reset=True),))
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        fetch(model_server, "/a")


def test_wrong_length(model_server: ModelServer) -> None:
    model_server.add(
        "/a", BODY, faults=(Fault(wrong_length=5, times=1), Fault(wrong_length=-5, times=1))
    )
    with pytest.raises(http.client.IncompleteRead) as info:
        fetch(model_server, "/a")
    assert info.value.partial == BODY and info.value.expected == 5
    _, headers, body = fetch(model_server, "/a")
    assert (body, headers["Connection"]) == (BODY[:-5], "close")


def test_ignore_range_and_wrong_content_range(model_server: ModelServer) -> None:
    model_server.add(
        "/a",
        BODY,
        faults=(Fault(ignore_range=True, times=1), Fault(wrong_content_range=True, times=2)),
    )
    status, headers, body = fetch(model_server, "/a", {"Range": "bytes=10-19"})
    assert (status, body, headers["Accept-Ranges"]) == (200, BODY, "bytes")
    status, headers, body = fetch(model_server, "/a", {"Range": "bytes=10-19"})
    assert (status, body) == (206, BODY[10:20])
    assert headers["Content-Range"] != f"bytes 10-19/{len(BODY)}"
    status, headers, body = fetch(model_server, "/a", {"Range": "bytes=0-9"})
    assert headers["Content-Range"] != f"bytes 0-9/{len(BODY)}"


def test_change_etag_after(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(change_etag_after=1),))
    first = fetch(model_server, "/a")[1]["ETag"]
    second = fetch(model_server, "/a")[1]["ETag"]
    assert first != second
    status, _, body = fetch(model_server, "/a", {"Range": "bytes=5-", "If-Range": first})
    assert (status, body) == (200, BODY)


def test_stall_then_resume(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(stall_after=100, stall_seconds=0.6),))
    conn = http.client.HTTPConnection("127.0.0.1", model_server.port, timeout=0.3)
    try:
        conn.request("GET", "/a")
        resp = conn.getresponse()
        assert resp.read(100) == BODY[:100]
        with pytest.raises(socket.timeout):
            resp.read(1)
    finally:
        conn.close()
    began = time.monotonic()
    assert fetch(model_server, "/a", timeout=5)[2] == BODY
    assert time.monotonic() - began >= 0.5


def _blocked_client(srv: ModelServer, path: str) -> tuple[threading.Thread, list[BaseException]]:
    """A client thread that reads ``path`` until the server goes away."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fetch(srv, path, timeout=10)
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while srv.count(path) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return thread, outcome


@pytest.mark.parametrize(
    "fault",
    [Fault(stall_after=10), Fault(never_answer=True), Fault(drip=10)],
    ids=["stall", "never_answer", "drip"],
)
def test_stop_is_prompt_while_a_client_waits(fault: Fault) -> None:
    baseline = threading.active_count()
    srv = ModelServer().start()
    srv.add("/a", BODY, faults=(fault,))
    thread, outcome = _blocked_client(srv, "/a")
    began = time.monotonic()
    srv.stop()
    assert time.monotonic() - began < 2
    thread.join(5)
    assert not thread.is_alive()
    assert outcome  # the client saw the connection end early
    assert threading.active_count() == baseline
    assert srv.errors == []


def test_never_answer_times_out_client(model_server: ModelServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(never_answer=True, times=1),))
    with pytest.raises(socket.timeout):
        fetch(model_server, "/a", timeout=0.3)
    assert fetch(model_server, "/a")[2] == BODY
    assert model_server.count("/a") == 2


def test_drip_is_slow(model_server: ModelServer) -> None:
    model_server.add("/a", BODY[:300], faults=(Fault(drip=1000),))
    began = time.monotonic()
    assert fetch(model_server, "/a")[2] == BODY[:300]
    assert time.monotonic() - began >= 0.25


def test_rate_limit_is_per_connection(model_server: ModelServer) -> None:
    body = os.urandom(60_000)
    model_server.add("/a", body, faults=(Fault(rate_limit=100_000),))
    began = time.monotonic()
    assert fetch(model_server, "/a")[2] == body
    single = time.monotonic() - began
    halves: dict[int, bytes] = {}

    def get(first: int) -> None:
        halves[first] = fetch(model_server, "/a", {"Range": f"bytes={first}-{first + 29_999}"})[2]

    threads = [threading.Thread(target=get, args=(n,)) for n in (0, 30_000)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parallel = time.monotonic() - began
    assert halves[0] + halves[30_000] == body
    assert single >= 0.5
    assert parallel < single * 0.85


def test_many_connections_leave_no_threads() -> None:
    baseline = threading.active_count()
    with ModelServer() as srv:
        srv.add("/a", BODY)
        conns = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5) for _ in range(8)]
        for conn in conns:  # idle keep-alive connections the server must close on stop()
            conn.request("GET", "/a")
            conn.getresponse().read()
    for conn in conns:
        conn.close()
    assert threading.active_count() == baseline


def test_client_hangup_mid_body_is_harmless(model_server: ModelServer) -> None:
    model_server.add("/big", os.urandom(4 << 20))
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", model_server.port, timeout=5)
        conn.request("GET", "/big")
        assert len(conn.getresponse().read(1000)) == 1000
        conn.close()  # the server is mid-write: it must notice and move on
    assert fetch(model_server, "/big", method="HEAD")[0] == 200
    assert model_server.errors == []


def test_restart_gets_a_new_port_and_keeps_content() -> None:
    srv = ModelServer()
    srv.add("/a", BODY)
    with srv:
        assert fetch(srv, "/a")[2] == BODY
    srv.stop()  # idempotent
    with srv:
        assert fetch(srv, "/a")[2] == BODY
    assert srv.count("/a") == 2


# --- TLS and proxy ----------------------------------------------------------------------------


def test_https_trusted_and_untrusted(
    https_model_server: ModelServer, tls_ca: Any, tmp_path: Any
) -> None:
    import trustme

    https_model_server.add("/a", BODY)
    assert https_model_server.url("/a").startswith("https://127.0.0.1:")
    conn = http.client.HTTPSConnection(
        "127.0.0.1", https_model_server.port, timeout=5, context=client_context(tls_ca)
    )
    conn.request("GET", "/a")
    assert conn.getresponse().read() == BODY
    conn.close()
    bundle = ca_bundle(tls_ca, tmp_path)
    ctx = ssl.create_default_context(cafile=bundle)
    conn = http.client.HTTPSConnection("localhost", https_model_server.port, context=ctx)
    conn.request("GET", "/a")
    assert conn.getresponse().status == 200
    conn.close()
    stranger = http.client.HTTPSConnection(
        "127.0.0.1", https_model_server.port, timeout=5, context=client_context(trustme.CA())
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.request("GET", "/a")
    stranger.close()
    assert https_model_server.count("/a") == 2


def test_proxy_forwards_get_and_connect(
    model_server: ModelServer,
    proxy_server: ProxyServer,
    https_model_server: ModelServer,
    tls_ca: Any,
) -> None:
    model_server.add("/a", BODY)
    https_model_server.add("/s", BODY[:10])
    conn = http.client.HTTPConnection("127.0.0.1", proxy_server.port, timeout=5)
    conn.request("GET", model_server.url("/a"))
    assert conn.getresponse().read() == BODY
    conn.close()
    tunnel = http.client.HTTPSConnection(
        "127.0.0.1", proxy_server.port, timeout=5, context=client_context(tls_ca)
    )
    tunnel.set_tunnel("127.0.0.1", https_model_server.port)
    tunnel.request("GET", "/s")
    assert tunnel.getresponse().read() == BODY[:10]
    tunnel.close()
    assert [r.method for r in proxy_server.requests] == ["GET", "CONNECT"]
    assert proxy_server.count("CONNECT") == 1
    assert model_server.count("/a") == https_model_server.count("/s") == 1
    refused = http.client.HTTPConnection("127.0.0.1", proxy_server.port, timeout=5)
    refused.request("CONNECT", "example.com:443")
    assert refused.getresponse().status == 403
    refused.close()


def test_https_faults(https_model_server: ModelServer, tls_ca: Any) -> None:
    https_model_server.add(
        "/a",
        BODY,
        faults=(Fault(drop_after=10, reset=True, times=1), Fault(drop_after=100, times=1)),
    )
    for _ in range(2):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", https_model_server.port, timeout=5, context=client_context(tls_ca)
        )
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/a")
            conn.getresponse().read()
        conn.close()
    assert https_model_server.count("/a") == 2


def test_proxy_relays_a_dropped_body(model_server: ModelServer, proxy_server: ProxyServer) -> None:
    model_server.add("/a", BODY, faults=(Fault(drop_after=100),))
    conn = http.client.HTTPConnection("127.0.0.1", proxy_server.port, timeout=5)
    conn.request("GET", model_server.url("/a"))
    with pytest.raises(http.client.IncompleteRead) as info:
        conn.getresponse().read()
    conn.close()
    assert info.value.partial == BODY[:100]


# --- archives ---------------------------------------------------------------------------------


def entries(tar: bytes) -> list[tuple[str, bytes, str, int]]:
    """(effective name, typeflag, linkname, size) per member, applying pax 'x' and GNU 'L'
    records by hand, so the factory is checked without trusting tarfile."""
    out, pending = [], {}
    for h in arc.iter_raw_headers(tar):
        if h.typeflag == b"x":
            pending.update(arc.pax_records(tar, h))
        elif h.typeflag == b"L":
            data = tar[h.offset + 512 : h.offset + 512 + h.size]
            pending["path"] = data.rstrip(b"\0").decode()
        else:
            size = int(pending.get("size", h.size))
            out.append(
                (
                    pending.get("path", h.name.decode()),
                    h.typeflag,
                    pending.get("linkpath", h.linkname.decode()),
                    size,
                )
            )
            pending = {}
    return out


def test_make_tar_roundtrips_with_tarfile(tmp_path: Any) -> None:
    members = [arc.M("d", type="dir"), arc.M("d/f", b"hello", mode=0o600), arc.M("e", b"")]
    for comp in (None, "gz", "bz2", "xz"):
        blob = arc.make_tar(members, compression=comp, dest=tmp_path / "t")
        assert (tmp_path / "t").read_bytes() == blob
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            assert tar.getnames() == ["d", "d/f", "e"]
            f = tar.extractfile("d/f")
            assert f is not None and f.read() == b"hello"
            assert tar.getmember("d/f").mode == 0o600
    raw = arc.make_tar(members)
    assert len(raw) % tarfile.RECORDSIZE == 0
    open_ended = arc.make_tar(members, end_marker=False)
    assert len(open_ended) == 3 * 512 + 512 and open_ended[-512:] != bytes(512)


EXPECTED = {
    "abs_dotdot": [("/../x", b"0")],
    "dotdot": [("../x", b"0")],
    "nested_dotdot": [("a/../../x", b"0")],
    "dir_dotdot": [("a/..", b"0")],
    "pax_path_dotdot": [("../x", b"0")],
    "gnu_longname_dotdot": [("../" + "x" * 120, b"0")],
    "symlink_outside": [("link", b"2")],
    "symlink_absolute": [("link", b"2")],
    "symlink_inside": [("a/target", b"0"), ("a/link", b"2")],
    "symlink_write_through": [("link", b"2"), ("link/hubcache-escape-test", b"0")],
    "symlink_write_through_relative": [("link", b"2"), ("link/hubcache-escape-test", b"0")],
    "hardlink_outside": [("h", b"1")],
    "hardlink_absolute": [("h", b"1")],
    "hardlink_inside": [("a", b"0"), ("b", b"1")],
    "char_device": [("dev", b"3")],
    "block_device": [("dev", b"4")],
    "fifo": [("pipe", b"6")],
    "duplicate_file": [("a", b"0"), ("a", b"0")],
    "duplicate_file_same_size": [("a", b"0"), ("a", b"0")],
    "duplicate_file_other_mode": [("a", b"0"), ("a", b"0")],
    "file_then_dir": [("a", b"0"), ("a/", b"5")],
    "dir_then_file": [("a/", b"5"), ("a", b"0")],
    "huge_declared_size": [("big", b"0")],
    "sparse": [("sparse", b"S")],
}
LINKS = {
    "symlink_outside": "../../outside",
    "symlink_absolute": "/etc/passwd",
    "symlink_write_through": "/tmp",
    "symlink_write_through_relative": "..",
    "hardlink_outside": "../outside",
    "hardlink_absolute": "/etc/passwd",
    "hardlink_inside": "a",
    "symlink_inside": "target",
}


@pytest.mark.parametrize("case", sorted(arc.HOSTILE_TAR_CASES))
def test_hostile_cases_contain_what_they_claim(case: str) -> None:
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES[case])
    got = entries(tar)
    if case == "name_over_4096":
        assert len(got) == 1 and len(got[0][0].encode()) > 4096
        return
    if case == "depth_70":
        assert len(got) == 1 and len(got[0][0].split("/")) == 70
        return
    assert [(name, flag) for name, flag, _, _ in got] == EXPECTED[case]
    if case in LINKS:
        assert [link for _, flag, link, _ in got if flag in b"12"] == [LINKS[case]]
    assert gzip.decompress(arc.hostile_tar(case)) == tar


def test_hostile_encodings_in_raw_headers() -> None:
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES["pax_path_dotdot"])
    assert [h.typeflag for h in arc.iter_raw_headers(tar)] == [b"x", b"0"]
    assert list(arc.iter_raw_headers(tar))[1].name == b"pax-placeholder"  # hidden from ustar
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES["gnu_longname_dotdot"])
    headers = list(arc.iter_raw_headers(tar))
    assert [h.typeflag for h in headers] == [b"L", b"0"]
    assert headers[0].name == b"././@LongLink" and len(headers[1].name) == 100
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES["huge_declared_size"])
    assert entries(tar)[0][3] == 1 << 40 and len(tar) < 1 << 20
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES["sparse"])
    (header,) = arc.iter_raw_headers(tar)
    assert arc._parse_num(header.raw[483:495]) == 1 << 30  # declared real size
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:  # tarfile agrees it is sparse
        (member,) = t.getmembers()
        assert member.issparse() and member.size == 1 << 30
    tar = arc.make_tar(arc.HOSTILE_TAR_CASES["char_device"])
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.getmembers()[0].ischr() and t.getmembers()[0].devmajor == 1
    for case in ("symlink_write_through", "file_then_dir", "name_over_4096", "depth_70"):
        with tarfile.open(fileobj=io.BytesIO(arc.make_tar(arc.HOSTILE_TAR_CASES[case]))) as t:
            assert len(t.getmembers()) == len(arc.HOSTILE_TAR_CASES[case])


def test_benign_names_are_stored_verbatim() -> None:
    tar = arc.make_tar([arc.M(name, b"x") for name in arc.BENIGN_TAR_NAMES])
    assert [e[0] for e in entries(tar)] == list(arc.BENIGN_TAR_NAMES)


def test_make_zip() -> None:
    blob = arc.make_zip(
        [
            arc.M("../x", b"1"),
            arc.M("/abs", b"2"),
            arc.M("a", b"3"),
            arc.M("a", b"4"),
            arc.M("d", type="dir"),
            arc.M("ln", type="symlink", linkname="/etc"),
        ]
    )
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.namelist() == ["../x", "/abs", "a", "a", "d/", "ln"]
        link = zf.getinfo("ln")
        assert stat.S_ISLNK(link.external_attr >> 16) and zf.read(link) == b"/etc"
        assert stat.S_ISDIR(zf.getinfo("d/").external_attr >> 16)
    with pytest.raises(ValueError):
        arc.make_zip([arc.M("p", type="fifo")])


def test_gzip_mutations() -> None:
    gz = gzip.compress(BODY, mtime=0)
    assert arc.gzip_trailer_ok(gz)
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(arc.flip_byte(gz, -8))  # CRC
    assert not arc.gzip_trailer_ok(arc.flip_byte(gz, -1))  # ISIZE
    for broken in (arc.cut(gz, 40), arc.cut(gz, -3), arc.strip_trailer(gz)):
        with pytest.raises(EOFError):
            gzip.decompress(broken)
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(arc.append_garbage(gz))
    assert gzip.decompress(arc.concat_members(gz, gzip.compress(b"tail"))) == BODY + b"tail"


@pytest.mark.parametrize("keep", [0, 1, 2, None])
def test_cut_at_member_boundary(keep: Optional[int]) -> None:
    members = [
        arc.M("a", b"x" * 700),
        arc.M(arc.HOSTILE_TAR_CASES["depth_70"][0].name, b"y"),
        arc.M("c", b"z" * 10),
    ]
    cut = arc.cut_at_member_boundary(arc.make_tar(members, compression="gz"), keep=keep)
    assert cut[:2] == b"\x1f\x8b" and arc.gzip_trailer_ok(cut)
    tar = gzip.decompress(cut)  # also verifies CRC and ISIZE
    kept = 3 if keep is None else keep
    assert [e[0] for e in entries(tar)] == [m.name for m in members[:kept]]
    assert len(tar) % 512 == 0 and (not tar or tar[-512:] != bytes(512))  # no end marker


def test_saved_model_tree_and_tar_dir(tmp_path: Any) -> None:
    digests = arc.saved_model_tree(tmp_path / "m", variables_bytes=300_000, seed=1)
    assert sorted(digests) == [
        "assets/vocab.txt",
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "variables/variables.index",
    ]
    data = (tmp_path / "m/variables/variables.data-00000-of-00001").read_bytes()
    assert len(data) == 300_000 and len(zlib.compress(data)) > 0.99 * len(data)
    vocab = (tmp_path / "m/assets/vocab.txt").read_bytes()
    assert len(zlib.compress(vocab)) < 0.5 * len(vocab)
    assert arc.saved_model_tree(tmp_path / "again", variables_bytes=300_000, seed=1) == digests
    arc.tar_dir(tmp_path / "m", tmp_path / "m.tar.gz", prefix="./")
    with tarfile.open(tmp_path / "m.tar.gz") as tar:
        assert "./variables/variables.index" in tar.getnames()
        f = tar.extractfile("./saved_model.pb")
        assert f is not None
        assert hashlib.sha256(f.read()).hexdigest() == digests["saved_model.pb"]


def test_hermetic_env_and_cache_root(cache_root: Any) -> None:
    assert os.environ["TFHUB_CACHE_DIR"] == str(cache_root)
    assert os.environ["TFHUB_DOWNLOAD_PROGRESS"] == "0"
    assert cache_root.is_dir() and not any(cache_root.iterdir())
    assert not [k for k in os.environ if k.startswith("HUBCACHE_") and k != "HUBCACHE_TF_PYTHON"]


def test_server_socket_refuses_after_stop() -> None:
    srv = ModelServer().start()
    port = srv.port
    srv.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
