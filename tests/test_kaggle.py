"""Kaggle Models as a source: handles, the API as kagglehub 1.x uses it, credentials,
signed URLs, tfhub.dev redirects, equivalent handles and kagglehub's cache.

Everything runs against tests/support/kaggle.py: a Kaggle API server reached as
``KAGGLE_API_ENVIRONMENT=LOCALHOST`` through ``http_proxy``, a signed-URL storage server and
a tfhub.dev-like redirector, all on 127.0.0.1 and stopped at the end of each test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import hubcache
from hubcache import cache_key
from tests.support.kaggle import KaggleModel, KaggleWorld, saved_model_files
from tests.support.procs import run_cli
from tests.support.trees import tree

NNLM = "google/nnlm/tensorFlow2/en-dim128"
BIG = "google/bignet/tensorFlow2/default"
GATED = "google/gemma/keras/gemma-2b"
TOKEN = "tok-" + "a" * 20
USER, KEY = "alice", "k" * 32


@pytest.fixture
def world(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, cache_root: pathlib.Path
) -> Iterator[KaggleWorld]:
    with KaggleWorld() as w:
        w.use(monkeypatch, tmp_path)
        w.kaggle.add(
            KaggleModel(
                "google",
                "nnlm",
                "tensorFlow2",
                "en-dim128",
                {1: saved_model_files("v1"), 2: saved_model_files("v2")},
            )
        )
        w.kaggle.add(
            KaggleModel(
                "google",
                "bignet",
                "tensorFlow2",
                "default",
                {1: saved_model_files("big", extra=30)},
            )
        )
        w.kaggle.add(
            KaggleModel(
                "google",
                "gemma",
                "keras",
                "gemma-2b",
                {1: {"model.weights.h5": b"w" * 5000, "config.json": b"{}"}},
                gated=True,
            )
        )
        w.kaggle.accounts.tokens.add(TOKEN)
        w.kaggle.accounts.keys[USER] = KEY
        w.kaggle.accounts.accepted_terms.update({TOKEN, USER})
        yield w
    assert not (w.kaggle.errors or w.storage.errors or w.tfhub.errors)


def kagglehub_download(handle: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real kagglehub client, in its own process (it keeps global state)."""
    code = "import kagglehub, sys; print(kagglehub.model_download(sys.argv[1]))"
    return subprocess.run(
        [sys.executable, "-c", code, handle],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def manifest(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pathlib.Path(path + ".manifest.json").read_text())
    return data


def storage_gets(world: KaggleWorld) -> int:
    return len(world.storage.seen)


def no_secret_reached_storage(world: KaggleWorld, *secrets: str) -> None:
    for seen in world.storage.seen:
        assert "authorization" not in seen.headers
        assert not any(s in v for v in seen.headers.values() for s in secrets)


# -- the local server speaks Kaggle's protocol as the real kagglehub knows it ---------------
@pytest.mark.parametrize("slug", [f"{NNLM}/2", f"{BIG}/1"], ids=["files", "archive"])
def test_real_kagglehub_downloads_from_the_local_server(world: KaggleWorld, slug: str) -> None:
    out = kagglehub_download(slug, KAGGLE_API_TOKEN=TOKEN)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip().splitlines()[-1]
    expected = saved_model_files("big", extra=30) if "bignet" in slug else saved_model_files("v2")
    assert tree(path) == expected
    api = [s for s in world.kaggle.seen if "ModelApiService" in s.path]
    assert api and all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in api)
    no_secret_reached_storage(world, TOKEN)
    assert os.path.isfile(path + ".complete")  # kagglehub's own marker


# -- hubcache downloads ------------------------------------------------------------------
def test_file_set_is_downloaded_file_by_file_and_recorded(world: KaggleWorld) -> None:
    path = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert tree(path) == saved_model_files("v2")
    m = manifest(path)
    assert m["kaggle"] == {
        "owner": "google",
        "model": "nnlm",
        "framework": "tensorFlow2",
        "variation": "en-dim128",
        "version": 2,
    }
    assert set(m["files"]) == set(saved_model_files("v2"))
    assert all(len(digest) == 64 for _size, digest in m["files"].values())
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 3  # one per file
    assert storage_gets(world) == 3
    assert os.path.basename(path) == cache_key(f"kaggle:{NNLM}/2")


def test_many_files_come_as_one_archive(world: KaggleWorld) -> None:
    path = hubcache.resolve(f"kaggle:{BIG}/1")
    assert tree(path) == saved_model_files("big", extra=30)
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 1
    assert manifest(path)["archive"]["format"] == "gzip"


def test_url_handles_keep_tensorflow_hubs_key(world: KaggleWorld) -> None:
    short = f"http://localhost/models/{NNLM}/1"
    long = (
        "http://localhost/models/google/nnlm/frameworks/TensorFlow2/variations/en-dim128/versions/2"
    )
    assert os.path.basename(hubcache.resolve(short)) == cache_key(short)
    assert os.path.basename(hubcache.resolve(long)) == cache_key(long)
    assert tree(hubcache.resolve(long)) == saved_model_files("v2")


def test_md5_declared_by_storage_is_checked(world: KaggleWorld, cache_root: pathlib.Path) -> None:
    world.storage.corrupt = 1
    with pytest.raises(hubcache.CorruptArchiveError, match="x-goog-hash"):
        hubcache.resolve(f"kaggle:{NNLM}/2")
    assert not any(p.name.endswith((".manifest.json", ".tmp")) for p in cache_root.iterdir())
    hubcache.resolve(f"kaggle:{NNLM}/2")  # and the next try succeeds


def test_broken_file_stream_is_fetched_again(world: KaggleWorld) -> None:
    world.storage.drop = 1  # no validator to resume with: that file starts over
    path = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert tree(path) == saved_model_files("v2")
    assert storage_gets(world) == 4


@pytest.mark.parametrize("slug", [f"{NNLM}/2", f"{BIG}/1"], ids=["files", "archive"])
def test_download_answered_with_the_bytes_is_read_from_the_answer(
    world: KaggleWorld, slug: str
) -> None:
    """kagglesdk accepts a 200 with the bytes as well as a redirect (kagglehub's own test
    server answers so): the download call's answer is read, with the credential on the API
    only and the md5 it declares checked."""
    world.kaggle.direct = True
    path = hubcache.resolve(f"kaggle:{slug}")
    big = "bignet" in slug
    assert tree(path) == (saved_model_files("big", extra=30) if big else saved_model_files("v2"))
    assert world.kaggle.calls("DownloadModelInstanceVersion") == (1 if big else 3)
    assert storage_gets(world) == 0
    assert manifest(path)["kaggle"]["version"] == int(slug[-1])


def test_download_answered_with_the_bytes_is_checked_and_restarted(
    world: KaggleWorld, cache_root: pathlib.Path
) -> None:
    world.kaggle.direct = True
    world.kaggle.corrupt = 1
    with pytest.raises(hubcache.CorruptArchiveError, match="x-goog-hash"):
        hubcache.resolve(f"kaggle:{NNLM}/2")
    assert list(cache_root.glob("*.manifest.json")) == []
    before = world.kaggle.calls("DownloadModelInstanceVersion")
    world.kaggle.drop = 1  # a POST's answer cannot be resumed: the call is made again
    path = hubcache.resolve(f"kaggle:{BIG}/1")
    assert tree(path) == saved_model_files("big", extra=30)
    assert world.kaggle.calls("DownloadModelInstanceVersion") - before == 2


def test_legacy_download_route_when_the_rpc_route_is_missing(world: KaggleWorld) -> None:
    world.kaggle.rpc_missing = True
    path = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert tree(path) == saved_model_files("v2")
    assert any(
        "/api/v1/models/google/nnlm/tensorFlow2/en-dim128/2/download" in s.path
        for s in world.kaggle.seen
    )
    assert manifest(path)["kaggle"]["version"] == 2


def test_a_mirror_without_the_rpc_route_is_never_gone_around(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare 404 from a mirror named by HUBCACHE_KAGGLE_API (here a second Kaggle server
    without the RPC routes) is that mirror's answer: the legacy download route on Kaggle's
    own host is not tried, so nothing goes around the mirror."""
    with KaggleWorld() as other:
        other.kaggle.rpc_missing = True
        monkeypatch.setenv("HUBCACHE_KAGGLE_API", f"http://127.0.0.1:{other.kaggle.port}")
        with pytest.raises(hubcache.HubcacheError):
            hubcache.resolve(f"kaggle:{NNLM}/2")
        assert other.kaggle.seen  # the mirror was asked
    assert world.kaggle.seen == [] and world.storage.seen == []


def test_an_unreachable_mirror_is_named_as_the_setting_to_check(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The advice names the setting that chose the host that failed: the mirror's, not
    KAGGLE_API_ENVIRONMENT (which a user pointing at a mirror never set)."""
    monkeypatch.setenv("HUBCACHE_KAGGLE_API", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("HUBCACHE_RETRIES", "0")
    with pytest.raises(hubcache.DownloadError, match=r"HUBCACHE_KAGGLE_API \(the mirror\)"):
        hubcache.resolve(f"kaggle:{NNLM}/2")
    assert world.kaggle.seen == []


def test_url_handle_falls_back_to_the_tfhub_protocol(world: KaggleWorld) -> None:
    world.kaggle.rpc_missing = True
    handle = f"http://localhost/models/{NNLM}/2"
    path = hubcache.resolve(handle)
    assert tree(path) == saved_model_files("v2")
    assert any("tf-hub-format=compressed" in s.path for s in world.kaggle.seen)
    assert not any("/download" in s.path for s in world.kaggle.seen)
    assert manifest(path)["kaggle"]["version"] == 2 and os.path.basename(path) == cache_key(handle)


# -- credentials ---------------------------------------------------------------------------
def _write(path: pathlib.Path, text: str, mode: int = 0o600) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(
    "source", ["token", "token-file", "access_token", "username-key", "config-dir", "home-json"]
)
def test_every_credential_source_reaches_the_api_and_never_storage(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, source: str
) -> None:
    home = pathlib.Path(os.environ["HOME"])
    basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    expected = f"Bearer {TOKEN}"
    if source == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    elif source == "token-file":
        monkeypatch.setenv("KAGGLE_API_TOKEN", _write(tmp_path / "tok", TOKEN + "\n"))
    elif source == "access_token":
        _write(home / ".kaggle" / "access_token", TOKEN)
    elif source == "username-key":
        monkeypatch.setenv("KAGGLE_USERNAME", USER)
        monkeypatch.setenv("KAGGLE_KEY", KEY)
        expected = basic
    elif source == "config-dir":
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
        _write(tmp_path / "cfg" / "kaggle.json", json.dumps({"username": USER, "key": KEY}))
        expected = basic
    else:
        _write(home / ".kaggle" / "kaggle.json", json.dumps({"username": USER, "key": KEY}))
        expected = basic
    path = hubcache.resolve(f"kaggle:{GATED}/1")
    assert tree(path)["config.json"] == b"{}"
    api = [s for s in world.kaggle.seen if "ModelApiService" in s.path]
    assert api and all(s.headers.get("authorization") == expected for s in api)
    no_secret_reached_storage(world, TOKEN, KEY, basic)
    # never written to the cache either
    for p in pathlib.Path(os.environ["TFHUB_CACHE_DIR"]).rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert TOKEN.encode() not in data and KEY.encode() not in data


def test_token_wins_over_username_and_key(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    hubcache.resolve(f"kaggle:{GATED}/1")
    assert all(
        s.headers.get("authorization") == f"Bearer {TOKEN}"
        for s in world.kaggle.seen
        if "ModelApiService" in s.path
    )


def test_loose_credential_file_gets_a_warning(
    world: KaggleWorld, caplog: pytest.LogCaptureFixture
) -> None:
    home = pathlib.Path(os.environ["HOME"])
    _write(home / ".kaggle" / "kaggle.json", json.dumps({"username": USER, "key": KEY}), 0o644)
    hubcache.resolve(f"kaggle:{GATED}/1")
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text


def test_gated_model_without_credentials_says_what_to_do(world: KaggleWorld) -> None:
    out = run_cli(["resolve", f"kaggle:{GATED}/1"])
    assert out.returncode == 4
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "accept its terms" in lines[0] and "http://localhost/models/google/gemma" in lines[0]
    assert "no credential was found" in lines[0]


def test_wrong_credential_names_its_source_not_its_value(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key-0123456789")
    out = run_cli(["resolve", "-v", f"kaggle:{GATED}/1"])
    assert out.returncode == 4
    assert "KAGGLE_USERNAME + KAGGLE_KEY" in out.stderr and "401" in out.stderr
    assert "not-the-key-0123456789" not in out.stderr + out.stdout


def test_terms_not_accepted_is_403_with_the_source(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.kaggle.accounts.accepted_terms.clear()
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    with pytest.raises(hubcache.HTTPStatusError) as info:
        hubcache.resolve(f"kaggle:{GATED}/1")
    assert info.value.status == 403 and "KAGGLE_API_TOKEN" in str(info.value)
    assert TOKEN not in str(info.value)


def test_bad_kaggle_json_is_a_usage_error(world: KaggleWorld) -> None:
    _write(pathlib.Path(os.environ["HOME"]) / ".kaggle" / "kaggle.json", "{not json")
    out = run_cli(["resolve", f"kaggle:{GATED}/1"])
    assert out.returncode == 2 and "kaggle.json" in out.stderr and "Traceback" not in out.stderr


def test_bad_api_environment_is_a_usage_error(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "MARS")
    with pytest.raises(hubcache.ConfigurationError, match="KAGGLE_API_ENVIRONMENT"):
        hubcache.resolve(f"kaggle:{NNLM}/2")
    # a URL that is not Kaggle's is not held up by a bad Kaggle setting
    with pytest.raises(hubcache.ModelNotFoundError):
        hubcache.resolve(world.tfhub_url("models/y/1"))


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://www.kaggle.com/models/google", "is not a Kaggle model URL"),
        (f"https://www.kaggle.com/models/{NNLM.rsplit('/', 1)[0]}", "is not a Kaggle model URL"),
        (f"https://www.kaggle.com/models/{NNLM}/2/extra", "is not a Kaggle model URL"),
        (f"http://localhost/models/{NNLM}/0", "a version is a number from 1"),
        ("https://kaggle.com/models/google/nnlm/frameworks/tensorFlow2", "not a Kaggle model"),
    ],
)
def test_a_kaggle_url_that_names_no_model_version_is_refused_before_any_request(
    world: KaggleWorld, url: str, words: str
) -> None:
    """Under a Kaggle host's /models/, a URL that does not name one model version is a
    usage error naming the expected form: never sent to the web page as a TF Hub host."""
    out = run_cli(["resolve", url])
    assert out.returncode == 2 and words in out.stderr and out.stderr.count("\n") == 1
    assert world.kaggle.seen == []


def test_unknown_model_is_not_found(world: KaggleWorld) -> None:
    out = run_cli(["resolve", "kaggle:google/nothere/tensorFlow2/x/1"])
    assert out.returncode == 3 and "no model" in out.stderr


# -- signed URLs -----------------------------------------------------------------------------
def test_refused_signed_url_is_replaced_once(world: KaggleWorld) -> None:
    world.storage.refuse = 1
    path = hubcache.resolve(f"kaggle:{BIG}/1")
    assert tree(path) == saved_model_files("big", extra=30)
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 2


@pytest.mark.parametrize("slug", [f"{NNLM}/2", f"{BIG}/1"], ids=["files", "archive"])
def test_user_headers_never_reach_the_storage_host(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch, slug: str
) -> None:
    """HUBCACHE_HTTP_HEADERS belong to the handle's host; a signed URL points at a third
    party (the storage bucket), so the user's token must not go there, not even with the
    fresh URL asked for after a refusal."""
    monkeypatch.setenv(
        "HUBCACHE_HTTP_HEADERS", '{"Authorization": "Bearer hdr-secret", "X-Team": "ml"}'
    )
    world.storage.refuse = 1
    hubcache.resolve(f"kaggle:{slug}")
    assert storage_gets(world) >= 2  # the refused URL and its replacement
    no_secret_reached_storage(world, "hdr-secret")
    assert not any("x-team" in seen.headers for seen in world.storage.seen)


def test_expired_signed_urls_fail_after_one_refresh(
    world: KaggleWorld, cache_root: pathlib.Path
) -> None:
    world.storage.lifetime = -60  # every URL the API hands out is already expired
    with pytest.raises(hubcache.HTTPStatusError) as info:
        hubcache.resolve(f"kaggle:{BIG}/1")
    assert info.value.status == 400  # GCS's answer to an expired V4 signature
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 2
    signatures = [s.path.split("X-Goog-Signature=")[1] for s in world.storage.seen]
    assert signatures and not any(sig in str(info.value) for sig in signatures)  # redacted
    assert list(cache_root.glob("*.manifest.json")) == []


# -- tfhub.dev redirects to Kaggle Models -----------------------------------------------------
def test_tfhub_handle_follows_the_redirect_to_kaggle(world: KaggleWorld) -> None:
    world.tfhub.routes["google/nnlm-en-dim128/2"] = f"http://localhost/models/{NNLM}/2"
    handle = world.tfhub_url("google/nnlm-en-dim128/2")
    path = hubcache.resolve(handle)
    assert os.path.basename(path) == cache_key(handle)
    assert tree(path) == saved_model_files("v2")
    assert manifest(path)["kaggle"]["version"] == 2
    info = run_cli(["info", "--json", handle])
    assert json.loads(info.stdout)["kaggle"]["variation"] == "en-dim128"


def test_expired_signed_url_on_one_file_is_replaced(world: KaggleWorld) -> None:
    signed, handed_out, lock = world.storage.sign, [], threading.Lock()

    def first_one_expired(blob_id: str, data: bytes, lifetime: float | None = None) -> str:
        with lock:  # the files are fetched in parallel: exactly one URL is expired
            handed_out.append(blob_id)
            first = len(handed_out) == 1
        return signed(blob_id, data, -60 if first else 3600)

    world.storage.sign = first_one_expired  # type: ignore[method-assign]
    path = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert tree(path) == saved_model_files("v2")
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 4  # 3 files + 1 fresh URL
    assert handed_out.count(handed_out[0]) == 2  # the expired file was asked for again


class OneArchive(KaggleModel):
    """A model whose archive is built once (fast, gzip level 1): every signed URL serves
    the same bytes, so the same ETag, as storage does for one object."""

    def archive(self, version: int) -> bytes:
        built: dict[int, bytes] = self.__dict__.setdefault("built", {})
        if version not in built:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
                for name, data in sorted(self.versions[version].items()):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            built[version] = buf.getvalue()
        return built[version]


@pytest.mark.parametrize("layout", ["archive", "files"])
def test_signed_url_expiring_mid_ranged_download_is_renewed(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """The signature runs out after the first request: every ranged part is refused (400
    ExpiredToken) until one fresh URL, asked for once and shared by the parts, finishes
    the download. An archive (many files) and a file of a file set alike."""
    big = {"variables/variables.data-00000-of-00001": os.urandom(17 << 20)}
    files = {**saved_model_files("huge", extra=30 if layout == "archive" else 0), **big}
    world.kaggle.add(OneArchive("google", "huge", "tensorFlow2", layout, {1: files}))
    world.storage.ranges = True
    world.storage.expire_after = 1 if layout == "archive" else None
    if layout == "files":  # only the big file's URL runs out (the files come in parallel)
        signed = world.storage.sign

        def expiring(blob_id: str, data: bytes, lifetime: float | None = None) -> str:
            if len(data) > 16 << 20 and not getattr(expiring, "done", False):
                expiring.done = True  # type: ignore[attr-defined]
                world.storage.expire_after = 1
            return signed(blob_id, data, lifetime)

        world.storage.sign = expiring  # type: ignore[method-assign]
    monkeypatch.setenv("HUBCACHE_CONNECTIONS", "4")
    path = hubcache.resolve(f"kaggle:google/huge/tensorFlow2/{layout}/1")
    assert tree(path) == files
    ranged = [seen for seen in world.storage.seen if "range" in seen.headers]
    # in parts, on the URL that ran out (refused) and then on the fresh one
    assert len({seen.path.split("X-Goog-Signature=")[1] for seen in ranged}) == 2
    asked = world.kaggle.calls("DownloadModelInstanceVersion")
    assert asked == (2 if layout == "archive" else len(files) + 1)  # one fresh URL


def test_tfhub_signed_url_refused_asks_the_api_once(world: KaggleWorld) -> None:
    world.tfhub.routes["google/nnlm-en-dim128/2"] = f"http://localhost/models/{NNLM}/2"
    world.storage.refuse = 1
    path = hubcache.resolve(world.tfhub_url("google/nnlm-en-dim128/2"))
    assert tree(path) == saved_model_files("v2")
    assert world.kaggle.calls("DownloadModelInstanceVersion") == 1


def test_unmigrated_tfhub_handle_is_not_found(world: KaggleWorld) -> None:
    world.tfhub.routes["google/never-migrated/1"] = None
    out = run_cli(["resolve", world.tfhub_url("google/never-migrated/1")])
    assert out.returncode == 3 and "not migrated" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- equivalent handles share one download ---------------------------------------------------
def test_equivalent_handles_share_one_download(world: KaggleWorld) -> None:
    first = hubcache.resolve(f"kaggle:{NNLM}/2")
    world.tfhub.routes["google/nnlm-en-dim128/2"] = f"http://localhost/models/{NNLM}/2"
    via_tfhub = hubcache.resolve(world.tfhub_url("google/nnlm-en-dim128/2"))
    gets = storage_gets(world)
    world.kaggle.stop()
    world.storage.stop()  # the other spellings need no network at all
    others = [
        hubcache.resolve(f"http://localhost/models/{NNLM}/2"),
        hubcache.resolve(
            "http://localhost/models/google/nnlm/frameworks/tensorflow2/variations/en-dim128/versions/2"
        ),
        hubcache.resolve("kaggle:google/nnlm/TENSORFLOW2/en-dim128/2"),
    ]
    assert gets == 3  # the three files, once
    for path in [via_tfhub, *others]:
        assert path != first and tree(path) == tree(first)
        for rel in saved_model_files("v2"):  # hard links: the disk holds one copy
            assert (
                os.stat(os.path.join(path, rel)).st_ino == os.stat(os.path.join(first, rel)).st_ino
            )
        assert manifest(path)["kaggle"]["version"] == 2


def test_a_tfhub_handle_through_a_mirror_publishes_the_same_manifest(
    world: KaggleWorld, tmp_path: pathlib.Path
) -> None:
    """tfhub.dev -> Kaggle: the redirect chain is read from whichever source opened, so a
    mirror in HUBCACHE_MIRRORS changes where the bytes come from, not what is recorded
    (the Kaggle identity that lets other spellings share the files)."""
    from tests.support.kaggle import Redirector

    route = f"http://localhost/models/{NNLM}/2"
    world.tfhub.routes["google/nnlm-en-dim128/2"] = route
    handle = world.tfhub_url("google/nnlm-en-dim128/2")
    with Redirector() as mirror:
        mirror.routes["google/nnlm-en-dim128/2"] = route
        prefix = f"http://127.0.0.1:{world.tfhub.port}/"
        mirrors = f"{prefix}=http://127.0.0.1:{mirror.port}/"
        direct = hubcache.resolve(handle, cache_dir=str(tmp_path / "direct"))
        mirrored = hubcache.resolve(handle, cache_dir=str(tmp_path / "mirrored"), mirrors=mirrors)
        assert mirror.hits == 1  # the mirror really served the second one
    ours, theirs = manifest(direct), manifest(mirrored)
    assert ours["kaggle"] == theirs["kaggle"] and ours["kaggle"]["version"] == 2
    for field in ("handle", "key", "files", "dirs", "archive"):
        assert ours[field] == theirs[field], field
    # and a Kaggle spelling in the mirrored cache links it: the record is what finds it
    world.kaggle.stop()
    world.storage.stop()
    linked = hubcache.resolve(f"kaggle:{NNLM}/2", cache_dir=str(tmp_path / "mirrored"))
    assert tree(linked) == tree(mirrored)


@pytest.mark.parametrize("adopted", [False, True], ids=["as-tfhub-left-it", "adopted"])
def test_an_entry_tensorflow_hub_made_for_a_kaggle_url_is_shared_too(
    world: KaggleWorld, adopted: bool
) -> None:
    """tensorflow_hub caches a Kaggle URL with no manifest (or hubcache adopted it without
    the Kaggle record): another spelling still links it instead of downloading again."""
    url = f"http://localhost/models/{NNLM}/2"
    made = hubcache.resolve(url)
    pathlib.Path(made + ".manifest.json").unlink()  # what tensorflow_hub leaves: descriptor only
    if adopted:
        assert hubcache.resolve(url) == made  # adopts it: a manifest without "kaggle"
        assert "kaggle" not in manifest(made)
    world.kaggle.stop()
    world.storage.stop()  # no network from here on
    other = hubcache.resolve(f"kaggle:{NNLM}/2")
    assert other != made and tree(other) == tree(made)
    for rel in saved_model_files("v2"):
        assert os.stat(os.path.join(other, rel)).st_ino == os.stat(os.path.join(made, rel)).st_ino
    assert manifest(other)["source"] == f"linked from tensorflow_hub entry {cache_key(url)}"


def test_linked_spellings_are_counted_once_by_ls_and_rm(world: KaggleWorld) -> None:
    """ls totals what the disk holds; rm of one spelling frees nothing while another keeps
    the files, and the last one frees them all."""
    first = hubcache.resolve(f"kaggle:{NNLM}/2")
    second = hubcache.resolve(f"http://localhost/models/{NNLM}/2")
    size = sum(os.path.getsize(os.path.join(first, rel)) for rel in saved_model_files("v2"))
    listed = json.loads(run_cli(["ls", "--json"]).stdout)
    assert (listed["total_bytes"], listed["disk_bytes"]) == (2 * size, size)
    assert [e["linked_bytes"] for e in listed["entries"]] == [size, size]
    out = run_cli(["ls"])
    assert "on disk: linked entries share files" in out.stdout.splitlines()[-1]
    gone = run_cli(["rm", "--yes", "--json", f"kaggle:{NNLM}/2"])
    plan = json.loads(gone.stdout)["plan"]
    assert (plan["bytes_freed"], plan["total_before"], plan["total_after"]) == (0, size, size)
    assert not os.path.exists(first) and os.path.isdir(second)
    listed = json.loads(run_cli(["ls", "--json"]).stdout)
    assert listed["disk_bytes"] == listed["total_bytes"] == size
    assert [e["linked_bytes"] for e in listed["entries"]] == [0]  # its only name now
    plan = json.loads(
        run_cli(["rm", "--yes", "--json", f"http://localhost/models/{NNLM}/2"]).stdout
    )["plan"]
    assert (plan["bytes_freed"], plan["total_after"]) == (size, 0)


# -- unversioned handles --------------------------------------------------------------------
def test_unversioned_handle_is_the_latest_asked_once(world: KaggleWorld) -> None:
    path = hubcache.resolve(f"kaggle:{NNLM}")
    assert tree(path) == saved_model_files("v2")
    assert os.path.basename(path) == cache_key(f"kaggle:{NNLM}/2")
    again = hubcache.resolve(f"kaggle:{NNLM}")
    assert again == path and world.kaggle.calls("GetModelInstance") == 1  # remembered
    url = hubcache.resolve(
        "http://localhost/models/google/nnlm/frameworks/tensorFlow2/variations/en-dim128"
    )
    assert os.path.basename(url) == cache_key(
        "http://localhost/models/google/nnlm/frameworks/tensorFlow2/variations/en-dim128/versions/2"
    )


def test_unversioned_offline_uses_the_newest_cached(
    world: KaggleWorld, caplog: pytest.LogCaptureFixture
) -> None:
    hubcache.resolve(f"kaggle:{NNLM}/1")
    world.stop()
    path = hubcache.resolve(f"http://localhost/models/{NNLM}", offline=True)
    assert tree(path) == saved_model_files("v1")
    assert any("newest cached" in r.getMessage() for r in caplog.records)
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(f"kaggle:{BIG}", offline=True)


def test_offline_cli_says_so_on_stderr(world: KaggleWorld) -> None:
    hubcache.resolve(f"kaggle:{NNLM}/1")
    out = run_cli(["resolve", "--offline", f"kaggle:{NNLM}"])
    assert out.returncode == 0 and "version 1, the newest cached" in out.stderr


# -- kagglehub's cache, both ways ------------------------------------------------------------
def test_hubcache_uses_what_kagglehub_downloaded_without_a_request(world: KaggleWorld) -> None:
    out = kagglehub_download(f"{NNLM}/2")
    assert out.returncode == 0, out.stderr
    kh_path = out.stdout.strip().splitlines()[-1]
    world.stop()
    path = hubcache.resolve("kaggle:google/nnlm/tensorflow2/en-dim128/2")
    assert tree(path) == saved_model_files("v2")
    assert (
        os.stat(os.path.join(path, "saved_model.pb")).st_ino
        == os.stat(os.path.join(kh_path, "saved_model.pb")).st_ino
    )
    listing = run_cli(["ls"])
    assert "kagglehub:google/nnlm/tensorFlow2/en-dim128/2" in listing.stdout


def test_incomplete_kagglehub_copy_is_not_used(world: KaggleWorld) -> None:
    out = kagglehub_download(f"{NNLM}/2")
    kh_path = out.stdout.strip().splitlines()[-1]
    os.unlink(os.path.join(kh_path, "saved_model.pb"))
    world.stop()
    with pytest.raises(hubcache.OfflineError):
        hubcache.resolve(f"kaggle:{NNLM}/2", offline=True)


def test_kagglehub_finds_what_hubcache_published(world: KaggleWorld) -> None:
    out = run_cli(["resolve", "--kagglehub-cache", f"kaggle:{NNLM}/2"])
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    root = pathlib.Path(os.environ["KAGGLEHUB_CACHE"]) / "models/google/nnlm/tensorFlow2/en-dim128"
    assert (root / "2.complete").is_file()
    world.stop()  # kagglehub must not need the network
    out = kagglehub_download(f"{NNLM}/2")
    assert out.returncode == 0, out.stderr
    kh_path = out.stdout.strip().splitlines()[-1]
    assert tree(kh_path) == saved_model_files("v2")
    assert (
        os.stat(os.path.join(kh_path, "saved_model.pb")).st_ino
        == os.stat(os.path.join(path, "saved_model.pb")).st_ino
    )


def test_library_switch_publishes_for_kagglehub(world: KaggleWorld) -> None:
    hubcache.resolve(f"kaggle:{NNLM}/1", kagglehub_cache=True)
    root = pathlib.Path(os.environ["KAGGLEHUB_CACHE"]) / "models/google/nnlm/tensorFlow2/en-dim128"
    assert (root / "1.complete").is_file() and tree(str(root / "1")) == saved_model_files("v1")


def test_env_switch_publishes_for_kagglehub(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBCACHE_KAGGLEHUB", "1")
    hubcache.resolve(f"kaggle:{BIG}/1")
    root = pathlib.Path(os.environ["KAGGLEHUB_CACHE"]) / "models/google/bignet/tensorFlow2/default"
    assert (root / "1.complete").is_file() and (root / "1" / "saved_model.pb").is_file()
    # no staging left behind; .complete holds kagglehub's per-file markers
    assert [p.name for p in root.glob(".*")] == [".complete"]
    assert (root / ".complete" / "1" / "saved_model.pb.complete").is_file()


# -- the warm path stays free of Kaggle code ---------------------------------------------------
def test_warm_resolve_does_not_import_kaggle_code(world: KaggleWorld) -> None:
    hubcache.resolve(f"kaggle:{NNLM}/2")
    code = (
        "import sys, hubcache\n"
        f"hubcache.resolve('kaggle:{NNLM}/2')\n"
        "print(sorted(m for m in sys.modules if 'kaggle' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- handles ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "handle",
    [
        "kaggle:google/nnlm/tensorFlow2",  # too few parts
        "kaggle:google/nnlm/tensorFlow2/en-dim128/2/3",  # too many
        "kaggle:google/nnlm/notaframework/en-dim128/2",
        "kaggle:google/nnlm/tensorFlow2/en-dim128/latest",
        "kaggle:google/nnlm/tensorFlow2/en-dim128/0",
        "kaggle:google/../tensorFlow2/en-dim128/1",
    ],
)
def test_bad_kaggle_handles_are_usage_errors(world: KaggleWorld, handle: str) -> None:
    out = run_cli(["resolve", handle])
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert world.kaggle.seen == []


def test_kaggle_url_forms_and_framework_case() -> None:
    from hubcache.kaggle.identity import from_url

    short = from_url("https://www.kaggle.com/models/google/nnlm/TensorFlow2/en-dim128/2")
    long = from_url(
        "https://www.kaggle.com/models/google/nnlm/frameworks/tensorflow2/variations/en-dim128"
        "/versions/2?tfhub-redirect=true"
    )
    assert short is not None and long is not None and short.same(long)
    assert short.framework_enum == "MODEL_FRAMEWORK_TENSOR_FLOW_2"
    assert from_url("https://www.kaggle.com/models/google/nnlm/pytorch/v/1").framework_enum == (  # type: ignore[union-attr]
        "MODEL_FRAMEWORK_PY_TORCH"
    )
    assert from_url("https://www.kaggle.com/models?tfhub-redirect=true") is None
    assert from_url("https://example.com/models/google/nnlm/tensorFlow2/en-dim128/2") is None


def test_listed_file_outside_the_model_is_refused(
    world: KaggleWorld, tmp_path: pathlib.Path, cache_root: pathlib.Path
) -> None:
    world.kaggle.add(
        KaggleModel("evil", "m", "jax", "v", {1: {"ok.txt": b"x", "../../escape.txt": b"y"}})
    )
    with pytest.raises(hubcache.UnsafeArchiveError):
        hubcache.resolve("kaggle:evil/m/jax/v/1")
    assert not list(tmp_path.rglob("escape.txt"))
    assert list(cache_root.glob("*.manifest.json")) == []


# The hostile-name corpus of tests/test_hostile_archives.py, as a Kaggle file listing: file
# sets go through the same safe writer as archives, and are refused before any download.
UNSAFE_LISTED = {
    "dotdot": "../../escape.txt",
    "nested_dotdot": "a/../../escape.txt",
    "backslash_dotdot": "a\\..\\..\\escape.txt",
    "nul": "a\x00b",
    "component_256": "x" * 256,
    "too_deep": "d/" * 70 + "f",
    "too_long": ("n" * 200 + "/") * 21 + "f",
    "dir_and_file": "saved_model.pb/inner",
}


@pytest.mark.parametrize("case", sorted(UNSAFE_LISTED))
def test_unsafe_listed_names_are_refused_before_any_download(
    world: KaggleWorld, tmp_path: pathlib.Path, cache_root: pathlib.Path, case: str
) -> None:
    files = {"saved_model.pb": b"x", UNSAFE_LISTED[case]: b"y"}
    world.kaggle.add(KaggleModel("evil", "m", "jax", "v", {1: files}))
    with pytest.raises(hubcache.UnsafeArchiveError) as info:
        hubcache.resolve("kaggle:evil/m/jax/v/1")
    assert info.value.exit_code == 5
    assert storage_gets(world) == 0  # refused from the listing, not after downloading
    assert not list(tmp_path.rglob("escape.txt"))
    assert list(cache_root.iterdir()) == []  # nothing staged, no tag: the cache as it was


def test_absolute_listed_names_land_inside_like_archive_members(world: KaggleWorld) -> None:
    world.kaggle.add(KaggleModel("odd", "m", "jax", "v", {1: {"/abs/f.txt": b"ok"}}))
    path = hubcache.resolve("kaggle:odd/m/jax/v/1")
    assert pathlib.Path(path, "abs/f.txt").read_bytes() == b"ok"


@pytest.mark.parametrize("name", ["CON", "aux.txt", "a:b", "trailing."])
def test_windows_reserved_listed_names_are_refused_on_windows(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import functools

    from hubcache import _platform

    windows = functools.partial(_platform.name_problem, windows=True)
    monkeypatch.setattr(_platform, "name_problem", windows)  # the rules Windows applies
    world.kaggle.add(KaggleModel("win", "m", "jax", "v", {1: {name: b"x"}}))
    with pytest.raises(hubcache.UnsafeArchiveError, match="Windows"):
        hubcache.resolve("kaggle:win/m/jax/v/1")
    assert storage_gets(world) == 0


def test_a_linked_copy_never_follows_a_symlink_in_the_donor(
    world: KaggleWorld, tmp_path: pathlib.Path
) -> None:
    """Another entry of the same model whose file was replaced by a symlink (to a file of
    the same size outside the cache) is not linked from: the link would publish someone
    else's bytes under our manifest."""
    first = hubcache.resolve(f"kaggle:{NNLM}/2")
    outside = tmp_path / "outside.pb"
    victim = pathlib.Path(first, "saved_model.pb")
    outside.write_bytes(b"z" * victim.stat().st_size)
    victim.unlink()
    victim.symlink_to(outside)
    with pytest.raises(hubcache.UnsafeArchiveError, match="not a regular file"):
        hubcache.resolve(f"http://localhost/models/{NNLM}/2")
    key = cache_key(f"http://localhost/models/{NNLM}/2")
    assert not list(pathlib.Path(first).parent.glob(f"{key}*"))


def test_settings_and_credentials_never_show_secrets(tmp_path: pathlib.Path) -> None:
    from hubcache.kaggle.credentials import find_credential
    from hubcache.kaggle.settings import kaggle_settings

    env = {"HOME": str(tmp_path), "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    settings = kaggle_settings(env)
    credential = find_credential(settings)
    assert credential is not None and credential.source == "KAGGLE_USERNAME + KAGGLE_KEY"
    assert KEY not in repr(settings) and KEY not in repr(credential)
    assert settings.rpc_base == "https://api.kaggle.com/v1"  # production by default
    assert kaggle_settings({**env, "KAGGLE_API_ENVIRONMENT": "LOCALHOST"}).rpc_base == (
        "http://localhost/api/v1"
    )


# -- the fault sweep, for the two acquisition shapes only Kaggle uses --------------------------
def _sweep(
    handle: str, tmp_path: pathlib.Path, prepare: Any, expected: dict[str, bytes], op: str
) -> None:
    """Fail the k-th filesystem call of resolving ``handle`` for every k of a clean run (as
    tests/test_fault_sweep.py does for archives): the entry is whole or absent, nothing is
    staged, the error is one line (exit 6), and a clean run afterwards works."""
    from tests.support.procs import child_env, run_cli

    key = cache_key(handle)

    def run(root: pathlib.Path, faults: str) -> tuple[int, str]:
        prepare(root)
        result = run_cli(["resolve", handle], child_env(root, faults))
        return result.returncode, result.stderr

    log = tmp_path / "clean.log"
    code, err = run(tmp_path / "clean", f"fs-log={log}")
    assert code == 0, err
    calls = log.read_text().splitlines()
    n = len(calls)
    assert n > 10 and {"open", op, "fsync", "rename"} <= {c.split()[0] for c in calls}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(lambda k: (k, *run(tmp_path / f"k{k}", f"fs=*#{k}")), range(1, n + 1))
        )
    failed = 0
    for k, code, err in outcomes:
        root = tmp_path / f"k{k}"
        assert code in (0, 6), f"k={k}: exit {code}\n{err}"
        assert "Traceback" not in err, f"k={k}\n{err}"
        failed += code == 6
        entry = root / key
        if entry.exists():
            assert tree(str(entry)) == expected, f"k={k}: a partial entry is visible"
        assert not list(root.glob(f"{key}.*.tmp")), f"k={k}: staging left"
        assert tree(hubcache.resolve(handle, cache_dir=str(root))) == expected
    assert failed  # faults were really injected


def test_fault_sweep_of_a_kaggle_file_set(world: KaggleWorld, tmp_path: pathlib.Path) -> None:
    _sweep(f"kaggle:{NNLM}/2", tmp_path, lambda root: None, saved_model_files("v2"), "write")


def test_fault_sweep_of_a_linked_copy(world: KaggleWorld, tmp_path: pathlib.Path) -> None:
    """The second spelling of a model is filled with hard links from the first: every call
    of that fill (links, folders, syncs, the rename) may fail without harm."""
    import shutil

    donor = tmp_path / "donor"
    hubcache.resolve(f"kaggle:{NNLM}/2", cache_dir=str(donor))
    world.kaggle.stop()
    world.storage.stop()  # linking needs no network: a fault can never fall back to it

    def prepare(root: pathlib.Path) -> None:
        if not root.exists():
            shutil.copytree(donor, root)  # the donor entry, complete, in each root

    handle = f"http://localhost/models/{NNLM}/2"
    _sweep(handle, tmp_path, prepare, saved_model_files("v2"), "link")
