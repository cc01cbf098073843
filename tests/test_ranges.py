"""Parallel ranged download: parts in order, checked, bounded; fallbacks are clean."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest

import hubcache
from hubcache.fetch import ranges as _ranges
from tests.support.archives import M, make_tar
from tests.support.httpserver import Fault, ModelServer

# Incompressible, so the archive is several parts long.
MEMBERS = [
    M("saved_model.pb", b"g" * 1000),
    M("variables/data", os.urandom(_ranges.MIN_SIZE + 3 * _ranges.PART)),
]
ARCHIVE = make_tar(MEMBERS)  # uncompressed: parts map one-to-one onto file bytes


def ranged_requests(server: ModelServer, path: str) -> list[str]:
    return [r.headers.get("Range", "") for r in server.requests if r.path.startswith(path)]


def check_tree(path: str) -> None:
    data = Path(path, "variables", "data").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(MEMBERS[1].data).digest()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_CONNECTIONS", "4")
    monkeypatch.setenv("HUBCACHE_RETRIES", "2")
    monkeypatch.setenv("HUBCACHE_RETRY_BACKOFF", "0.01")


def test_broken_parts_draw_on_the_one_budget_of_the_download(
    model_server: ModelServer, cache_root: Path, connections: None
) -> None:
    # every range request breaks: with HUBCACHE_RETRIES=2 the download may retry twice in
    # all (parts, resumes and restarts together), then fails naming the cause
    model_server.add("/m.tar", ARCHIVE)
    model_server.faults("/m.tar", Fault(times=1), Fault(drop_after=1000, methods=("GET",)))
    with pytest.raises(hubcache.DownloadError) as info:
        hubcache.resolve(model_server.url("/m.tar"))
    assert "kept breaking" in str(info.value) and "IncompleteRead" in str(info.value)
    ranged = [r for r in ranged_requests(model_server, "/m.tar") if r]
    # 4 workers start at once (each one request), then at most 2 retries of anything
    assert len(ranged) <= 4 + 2, ranged
    assert [n for n in os.listdir(cache_root) if n != "CACHEDIR.TAG"] == []


def test_ctrl_c_during_a_ranged_download_does_not_wait_for_the_parts(
    model_server: ModelServer, cache_root: Path
) -> None:
    import signal
    import time

    from tests.support.procs import child_env, finish, start_cli, wait_for

    # the plain request streams; every range request sends a little, then goes silent
    model_server.add("/m.tar", ARCHIVE)
    model_server.faults("/m.tar", Fault(times=1), Fault(stall_after=1000, methods=("GET",)))
    env = child_env(cache_root, HUBCACHE_CONNECTIONS="4", HUBCACHE_READ_TIMEOUT="60")
    proc = start_cli(["resolve", model_server.url("/m.tar")], env, interruptible=True)
    wait_for(lambda: len([r for r in ranged_requests(model_server, "/m.tar") if r]) >= 4)
    time.sleep(0.3)  # the workers are blocked in their reads now
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=30)
    assert code == 130 and out == "", err
    assert time.monotonic() - started < 5  # not the 60 s read timeout of the parts
    assert "Traceback" not in err and err.strip() == "hubcache: interrupted"
    assert [n for n in os.listdir(cache_root) if n != "CACHEDIR.TAG"] == []


def test_parts_are_fetched_by_several_connections_and_reassembled(
    model_server: ModelServer, cache_root: Path, connections: None
) -> None:
    model_server.add("/m.tar", ARCHIVE)
    path = hubcache.resolve(model_server.url("/m.tar"))
    check_tree(path)
    headers = ranged_requests(model_server, "/m.tar")
    assert headers[0] == ""  # the first part streams over the plain request
    spans = sorted(tuple(int(x) for x in r.removeprefix("bytes=").split("-")) for r in headers if r)
    # the rest: contiguous parts from where the plain stream stopped to the last byte
    assert len(spans) >= 2
    assert spans[0][0] >= _ranges.MEASURE
    assert spans[-1][1] == len(ARCHIVE) - 1
    for (_a, end), (start, _b) in itertools.pairwise(spans):
        assert start == end + 1
    # spans are sized from what was measured (fetch.ranges.span_size), within the bounds
    assert all(_ranges.TAIL_MIN <= end - start + 1 <= _ranges.PART_MAX for start, end in spans)
    manifest = cache_root / f"{hubcache.cache_key(model_server.url('/m.tar'))}.manifest.json"
    assert hashlib.sha256(ARCHIVE).hexdigest() in manifest.read_text()


def test_adaptive_default_opens_more_connections_on_a_throttled_server(
    model_server: ModelServer, cache_root: Path
) -> None:
    # 4 MiB part at 16 MB/s takes ~0.25 s: well under the 50 MB/s threshold
    model_server.add("/m.tar", ARCHIVE, faults=(Fault(rate_limit=16_000_000),))
    check_tree(hubcache.resolve(model_server.url("/m.tar")))
    assert len([r for r in ranged_requests(model_server, "/m.tar") if r]) >= 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault(ignore_range=True, methods=("GET",)),
        Fault(wrong_content_range=True, methods=("GET",)),
    ],
    ids=["200-to-range", "wrong-content-range"],
)
def test_a_server_that_stops_honouring_ranges_restarts_cleanly(
    model_server: ModelServer, cache_root: Path, connections: None, fault: Fault
) -> None:
    model_server.add("/m.tar", ARCHIVE)
    # the first (plain) request is served normally; range requests then misbehave
    model_server.faults("/m.tar", Fault(times=1), fault)
    with pytest.raises(hubcache.DownloadError, match="could not be completed after 3 attempts"):
        # restarts keep hitting the same misbehaviour: a clear error, nothing cached
        hubcache.resolve(model_server.url("/m.tar"))
    assert [n for n in os.listdir(cache_root) if n != "CACHEDIR.TAG"] == []
    # one budget: HUBCACHE_RETRIES=2 means three plain requests in all, not 3 per layer
    assert ranged_requests(model_server, "/m.tar").count("") == 3


def test_object_changing_mid_download_is_never_mixed(
    model_server: ModelServer, cache_root: Path, connections: None
) -> None:
    # after the first request the object changes on every request (a new ETag each time):
    # If-Range fails, the server answers 200, and each time the download restarts from
    # zero instead of mixing versions, until the one budget is spent; nothing is cached
    model_server.add("/m.tar", ARCHIVE, faults=(Fault(change_etag_after=1),))
    with pytest.raises(hubcache.DownloadError, match="could not be completed after 3 attempts"):
        hubcache.resolve(model_server.url("/m.tar"))
    assert ranged_requests(model_server, "/m.tar").count("") == 3
    assert [n for n in os.listdir(cache_root) if n != "CACHEDIR.TAG"] == []


def test_small_or_unvalidated_archives_use_one_stream(
    model_server: ModelServer, cache_root: Path, connections: None
) -> None:
    small = make_tar([M("saved_model.pb", b"x" * 100)])
    model_server.add("/small.tar", small)
    model_server.add("/noetag.tar", ARCHIVE, etag="")
    hubcache.resolve(model_server.url("/small.tar"))
    check_tree(hubcache.resolve(model_server.url("/noetag.tar")))
    assert [r for r in ranged_requests(model_server, "/") if r] == []


def test_the_plain_response_carries_the_first_span_and_is_never_reused(
    model_server: ModelServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on a slow server the plain response is not dropped at the switch: it streams on to
    # the end of the first span, then its connection is closed. Put back in the pool with
    # the rest of the body unread, it would answer the next range request with body bytes
    # (a "bad status line"), which with no retries allowed fails the download.
    monkeypatch.setenv("HUBCACHE_RETRIES", "0")
    model_server.add("/m.tar", ARCHIVE, faults=(Fault(rate_limit=16_000_000),))
    check_tree(hubcache.resolve(model_server.url("/m.tar")))
    headers = ranged_requests(model_server, "/m.tar")
    assert headers.count("") == 1  # one plain request, no restart
    spans = sorted(tuple(int(x) for x in r.removeprefix("bytes=").split("-")) for r in headers if r)
    assert len(spans) >= 2 and spans[-1][1] == len(ARCHIVE) - 1
    # the plain response delivered more than what was measured: it carried a span on
    assert spans[0][0] > _ranges.MEASURE


def test_a_far_server_gets_parts_at_once_without_measuring(
    model_server: ModelServer, cache_root: Path
) -> None:
    # every answer waits 60 ms (a far server): the adaptive default starts the parts as
    # soon as the first answer is in, and the plain response carries the first span; a
    # near server (no delay, as in the tests above) is measured first
    model_server.add("/m.tar", ARCHIVE, faults=(Fault(delay=0.06),))
    check_tree(hubcache.resolve(model_server.url("/m.tar")))
    headers = ranged_requests(model_server, "/m.tar")
    assert headers.count("") == 1
    spans = sorted(tuple(int(x) for x in r.removeprefix("bytes=").split("-")) for r in headers if r)
    assert len(spans) >= 2 and spans[-1][1] == len(ARCHIVE) - 1
    # not measured: the first span ends where the ramp's first, smallest span ends
    assert spans[0][0] == _ranges.PART_MIN


def test_what_a_part_learns_stays_with_the_part(
    model_server: ModelServer, connections: None
) -> None:
    """A request's redirects are its own: the ranged parts of a download that the origin
    redirects to another copy leave the source's chain (``hops``, what the stager reads to
    decide what a chain means) as the opening request found it. Every part used to write
    its own chain (and final URL) into the one source, read by the other threads."""
    from hubcache._config import load_config
    from hubcache.fetch.http import HTTPSource

    url = model_server.add("/m.tar", ARCHIVE)
    good = model_server.add("/good/m.tar", ARCHIVE)  # the same bytes and ETag
    model_server.faults(
        "/m.tar",
        Fault(times=1),  # the plain request: served here
        Fault(status=302, headers={"Location": good}),  # every part: redirected
    )
    source = HTTPSource(url, url, load_config())
    source.open()
    try:
        data = b"".join(source.chunks())
    finally:
        source.close()
    assert hashlib.sha256(data).digest() == hashlib.sha256(ARCHIVE).digest()
    assert model_server.count("/good/m.tar") >= 2  # the parts went there
    assert source.hops == (url,)  # the opening request's chain, as it was
