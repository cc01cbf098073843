"""Handles: the cache key, the query protocol and classification (pure functions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hubcache
from hubcache._handles import append_format_query, model_url, parse_handle
from tests.support.procs import run_cli


def test_cache_key_matches_tensorflow_hub_test_vector() -> None:
    key = hubcache.cache_key("https://tfhub.dev/google/nnlm-en-dim128/1")
    assert key == "32f2b2259e1cc8ca58c876921748361283e73997"


def test_cache_key_uses_the_handle_exactly_as_given() -> None:
    a = hubcache.cache_key("https://tfhub.dev/google/nnlm-en-dim128/1")
    assert hubcache.cache_key("https://tfhub.dev/google/nnlm-en-dim128/1/") != a
    assert hubcache.cache_key("HTTPS://tfhub.dev/google/nnlm-en-dim128/1") != a


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/m/1", "https://h/m/1?tf-hub-format=compressed"),
        ("https://h/m/1?a=b", "https://h/m/1?a=b&tf-hub-format=compressed"),
        # an existing tf-hub-format is kept and another appended, as tensorflow_hub does
        (
            "https://h/m/1?tf-hub-format=uncompressed",
            "https://h/m/1?tf-hub-format=uncompressed&tf-hub-format=compressed",
        ),
        # parse_qsl drops blank values and urlencode re-encodes: tensorflow_hub's quirks
        ("https://h/m/1?empty=&x=a b", "https://h/m/1?x=a+b&tf-hub-format=compressed"),
        ("https://h/m/1#frag", "https://h/m/1?tf-hub-format=compressed#frag"),
    ],
)
def test_format_query_is_appended_like_tensorflow_hub(url: str, expected: str) -> None:
    assert append_format_query(url) == expected


def test_china_mirror_rule() -> None:
    assert (
        model_url("https://hub.tensorflow.google.cn/google/nnlm-en-dim128/1")
        == "https://gcs.tensorflow.google.cn/tfhub-modules/google/nnlm-en-dim128/1.tar.gz"
    )


@pytest.mark.parametrize(
    ("handle", "kind", "scheme"),
    [
        ("https://tfhub.dev/google/x/1", "model", "https"),
        ("http://127.0.0.1:8000/m/1", "model", "http"),
        (
            "https://www.kaggle.com/models/google/x/frameworks/TensorFlow2/variations/y/versions/1",
            "model",
            "https",
        ),
        ("https://host/m.tar.gz", "archive", "https"),
        ("https://host/m.tgz?sig=1", "archive", "https"),
        ("https://host/m.zip", "archive", "https"),
        ("gs://bucket/m.tar.gz", "archive", "gs"),
        ("s3://bucket/m.tgz", "archive", "s3"),
        ("gs://bucket/model", "directory", "gs"),
        ("/data/m.tar", "archive", ""),
        ("relative/m.tar.bz2", "archive", ""),
        ("/data/model", "directory", ""),
        ("file:///data/m.tar.xz", "archive", ""),
        ("file:/data/m.tar.xz", "archive", ""),  # RFC 8089's short form
        ("file://localhost/data/model", "directory", ""),
        ("/data/my model", "directory", ""),  # spaces are fine in local paths
    ],
)
def test_classification(handle: str, kind: str, scheme: str) -> None:
    parsed = parse_handle(handle)
    assert (parsed.kind, parsed.scheme) == (kind, scheme)
    assert parsed.raw == handle


@pytest.mark.parametrize(
    "handle", ["", "  ", " https://h/m/1", "ftp://h/m/1", "https:///m/1", "gs://", "a\nb", 42]
)
def test_malformed_handles_raise_invalid_handle_error(handle: object) -> None:
    with pytest.raises(hubcache.InvalidHandleError) as info:
        hubcache.resolve(handle)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("handle", "words"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://[::1/m/1", "not a valid URL"),
        ("http://127.0.0.1:99999/x/1", "port"),
        ("https://h:0/m/1", "port"),
        ("https://h:abc/m/1", "port"),
        ("https://tfhub.dev/google/my model/1", "white space"),
        ("https://tf hub.dev/google/x/1", "white space"),
        ("https://tfhub.dev/google/x/1\t", "control character"),
        ("https://h/m/1\r", "control character"),
        ("/data/m\x7f.tar", "control character"),
        ("https:/tfhub.dev/google/x/1", "//"),
        ("gs:bucket/m.tar.gz", "//"),
        ("file://otherhost/data/m.tar", "another host"),
        ("https://h/m/1?tf-hub-format=uncompressed", "tf-hub-format"),
        ("https://tfhub.dev/", "no model on it"),
        ("https://tfhub.dev", "no model on it"),
        ("http://127.0.0.1:8000/?x=1", "no model on it"),
    ],
)
def test_unusable_handles_are_named_before_any_network_use(handle: str, words: str) -> None:
    with pytest.raises(hubcache.InvalidHandleError) as info:
        parse_handle(handle)
    message = str(info.value)
    assert words in message and "\n" not in message and info.value.exit_code == 2


def test_a_handle_carrying_the_compressed_query_sends_it_once() -> None:
    handle = "https://h/m/1?tf-hub-format=compressed"
    parsed = parse_handle(handle)
    assert parsed.location == "https://h/m/1?tf-hub-format=compressed"
    assert parsed.key == hubcache.cache_key(handle)  # the key stays the handle as given


def test_a_file_url_short_form_is_the_local_path() -> None:
    assert parse_handle("file:/data/m.tar.xz").location == "/data/m.tar.xz"
    assert parse_handle("file:///data/a%20b.tar").location == "/data/a b.tar"


def test_errors_pickle_with_their_facts() -> None:
    import pickle

    err = hubcache.HTTPStatusError("boom", handle="h", status=403)
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert (type(copy), str(copy), copy.handle, copy.status) == (
        hubcache.HTTPStatusError,
        "boom",
        "h",
        403,
    )


def test_the_uncompressed_protocol_replaces_a_compressed_query() -> None:
    handle = "https://h/m/1?a=b&tf-hub-format=compressed"
    assert model_url(handle, "uncompressed") == "https://h/m/1?a=b&tf-hub-format=uncompressed"
    assert model_url(handle) == handle


@pytest.mark.parametrize(
    "handle",
    ["http://[::1", "http://127.0.0.1:99999/x/1", "http://127.0.0.1:1/my model/1"],
)
def test_the_command_line_names_a_bad_handle_in_one_line_with_exit_2(
    handle: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TFHUB_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli(["resolve", handle], env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and handle in done.stderr, done.stderr
    assert not (tmp_path / "cache").exists()
