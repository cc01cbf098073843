"""Handles: the cache key, the query protocol and classification (pure functions)."""

from __future__ import annotations

import pytest

import hubcache
from hubcache._handles import append_format_query, model_url, parse_handle


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
