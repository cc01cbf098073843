"""Kaggle through the mirror: ``hubcache serve --upstream www.kaggle.com/...`` answers
Kaggle's model API, so a cluster's kagglehub and hubcache clients download each model
version (and each file) from Kaggle once, with no credential of their own.

One mirror and one local Kaggle (tests/support/kaggle.py, which counts every request) serve
the whole module; each test uses models of its own, so its counts are its own. Clients are
real processes: ``hubcache resolve`` pointed at the mirror by ``HUBCACHE_KAGGLE_API`` or
``HUBCACHE_MIRRORS``, and the real kagglehub (the test extra pins 1.0.3) pointed at it the
only way kagglesdk allows, ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` with ``http_proxy`` naming
the mirror, with and without hubcache's kagglehub plug-in.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tests.support.kaggle import KaggleModel, KaggleWorld, saved_model_files
from tests.support.mirror import ServeProcess
from tests.support.procs import finish, outputs, start_cli
from tests.support.trees import tree

pytest.importorskip("aiohttp")
kagglehub = pytest.importorskip("kagglehub")
from tests.test_kagglehub_plugin import call  # noqa: E402 - after the skip: needs kagglehub

MIRROR_TOKEN = "mirror-token"  # the mirror's Kaggle credential
ACCESS = "cluster-token"  # what the mirror asks of its clients (--token-file)
CLIENT_TOKEN = "client-secret"  # a client's: must never leave the client's side of the mirror
PRESET = {
    "config.json": b'{"class_name": "BertBackbone"}',
    "assets/tokenizer/vocabulary.txt": b"[PAD]\n[UNK]\nhello\n",
    "model.weights.h5": b"\x89HDF" + b"w" * 20000,
}
_OURS = ("TFHUB_", "HUBCACHE_", "KAGGLE_", "KAGGLEHUB_")
_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def base_env(home: Path) -> dict[str, str]:
    """This environment without anything that points at Kaggle, a proxy or a cache."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_OURS) and k.lower() not in _PROXIES
    }
    env.update(HOME=str(home), HUBCACHE_RETRY_BACKOFF="0.01", HUBCACHE_PROGRESS="0")
    return env


@pytest.fixture(scope="module")
def kaggle() -> Iterator[tuple[KaggleWorld, ServeProcess]]:
    """The local Kaggle and a mirror in front of it holding the only Kaggle credential."""
    import tempfile

    with KaggleWorld() as world, tempfile.TemporaryDirectory() as tmp:
        world.kaggle.accounts.tokens.add(MIRROR_TOKEN)
        world.kaggle.accounts.tokens.add(CLIENT_TOKEN)  # valid: so a leak would be *used*
        home, store, tokens = Path(tmp, "home"), Path(tmp, "store"), Path(tmp, "tokens")
        home.mkdir()
        store.mkdir()
        tokens.write_text(ACCESS + "\n")
        env = {**base_env(home), **world.env(), "KAGGLE_API_TOKEN": MIRROR_TOKEN}
        env["HUBCACHE_RETRIES"] = "1"
        upstream = "www.kaggle.com/models/=http://www.kaggle.com/models/"
        args = ("--upstream", upstream, "--token-file", str(tokens))
        with ServeProcess(str(store), *args, env=env) as mirror:
            yield world, mirror
    assert not (world.kaggle.errors or world.storage.errors)


def with_token(mirror: ServeProcess) -> str:
    """The mirror's URL with the clients' token in it: how each client presents it."""
    return mirror.url.replace("http://", f"http://hubcache:{ACCESS}@")


def kaggle_calls(mirror: ServeProcess, method: str) -> dict[str, float]:
    """The mirror's ``hubcache_mirror_kaggle_calls_total`` for ``method``, by source."""
    text = mirror.get("/metrics", headers={"Authorization": f"Bearer {ACCESS}"}).data.decode()
    found = re.findall(
        rf'hubcache_mirror_kaggle_calls_total{{method="{method}",source="(\w+)"}} (\S+)', text
    )
    return {source: float(value) for source, value in found}


def add(world: KaggleWorld, owner: str, versions: dict[int, dict[str, bytes]]) -> KaggleModel:
    return world.kaggle.add(KaggleModel(owner, "enc", "tensorFlow2", "small", versions))


def blobs(world: KaggleWorld, owner: str) -> list[str]:
    """The storage paths fetched for ``owner``'s model (signatures left out)."""
    return sorted(s.path.split("?")[0] for s in world.storage.seen if f"/{owner}-" in s.path)


def rpcs(world: KaggleWorld, owner: str, method: str) -> int:
    return sum(
        1 for s in world.kaggle.seen if s.path.endswith(method) and f'"{owner}"' in s.body.decode()
    )


def client_env(tmp_path: Path, mirror: ServeProcess, name: str, **extra: str) -> dict[str, str]:
    home = tmp_path / f"home-{name}"
    home.mkdir(exist_ok=True)
    env = base_env(home)
    env.update(TFHUB_CACHE_DIR=str(tmp_path / f"cache-{name}"), HUBCACHE_RETRIES="1")
    env["HUBCACHE_KAGGLE_API"] = with_token(mirror)
    env["KAGGLE_API_TOKEN"] = CLIENT_TOKEN  # hubcache sends it nowhere when a mirror asks
    env.update(extra)
    return env


def resolve_all(handle: str, envs: list[dict[str, str]]) -> list[str]:
    return outputs([start_cli(["-q", "resolve", handle], env) for env in envs])


def kagglehub_call(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mirror: ServeProcess,
    name: str,
    handle: str,
    *,
    plugin: bool,
    **kw: Any,
) -> dict[str, Any]:
    """One unmodified kagglehub call in its own process, pointed at the mirror."""
    home = tmp_path / f"home-{name}"
    home.mkdir(exist_ok=True)
    for key, value in {
        **base_env(home),
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",  # http://localhost ...
        "http_proxy": with_token(mirror),  # ... reached through the mirror
        "KAGGLEHUB_CACHE": str(tmp_path / f"kagglehub-{name}"),
        "TFHUB_CACHE_DIR": str(tmp_path / f"cache-{name}"),
        "KAGGLE_API_TOKEN": CLIENT_TOKEN,
    }.items():
        monkeypatch.setenv(key, value)
    return call(handle, plugin=plugin, **kw)


def test_hubcache_clients_make_one_download_of_each_file(
    kaggle: tuple[KaggleWorld, ServeProcess], tmp_path: Path
) -> None:
    world, mirror = kaggle
    files = saved_model_files("once")
    add(world, "alpha", {1: saved_model_files("old"), 2: files})
    handle = "kaggle:alpha/enc/tensorFlow2/small"

    before = kaggle_calls(mirror, "GetModelInstance")
    [first] = resolve_all(f"{handle}/2", [client_env(tmp_path, mirror, "first")])
    assert tree(first) == files
    # four machines at once, unversioned: the latest version through the mirror
    envs = [client_env(tmp_path, mirror, f"n{i}") for i in range(4)]
    envs[3] = client_env(
        tmp_path, mirror, "n3", HUBCACHE_MIRRORS=f"http://localhost/={with_token(mirror)}"
    )
    del envs[3]["HUBCACHE_KAGGLE_API"]  # the other way to point hubcache at a mirror
    envs[3]["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"  # unreachable: only the mirror answers
    for path in resolve_all(handle, envs):
        assert tree(path) == files

    names = sorted(f"/blob/alpha-enc-tensorflow2-small-2/{n}" for n in files)
    assert blobs(world, "alpha") == names  # each file crossed from Kaggle once
    assert rpcs(world, "alpha", "DownloadModelInstanceVersion") == len(files)
    assert rpcs(world, "alpha", "ListModelInstanceVersionFiles") == 1
    assert rpcs(world, "alpha", "GetModelInstance") == 1  # a burst of four: one call
    after = kaggle_calls(mirror, "GetModelInstance")
    asked = {k: after.get(k, 0) - before.get(k, 0) for k in ("kaggle", "kept")}
    assert asked == {"kaggle": 1, "kept": 3}
    for seen in world.kaggle.seen + world.storage.seen:  # no client credential anywhere
        assert CLIENT_TOKEN not in json.dumps(seen.headers)


def test_a_version_of_many_files_is_one_verified_archive_fill(
    kaggle: tuple[KaggleWorld, ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past one page of 25 files both clients take the version's archive: the mirror keeps
    it (checked as an archive, as every fill is) and serves it again with no upstream GET."""
    world, mirror = kaggle
    files = saved_model_files("big", extra=30)
    add(world, "zeta", {1: files})
    [path] = resolve_all("kaggle:zeta/enc/tensorFlow2/small/1", [client_env(tmp_path, mirror, "z")])
    assert tree(path) == files
    alone = kagglehub_call(
        monkeypatch, tmp_path, mirror, "zk", "zeta/enc/tensorFlow2/small/1", plugin=False
    )
    assert tree(alone["path"]) == files
    assert blobs(world, "zeta") == ["/blob/zeta-enc-tensorflow2-small-1.tar.gz"]


def test_kagglehub_with_no_credential_downloads_through_the_mirror(
    kaggle: tuple[KaggleWorld, ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, mirror = kaggle
    add(world, "beta", {1: PRESET})
    handle = "beta/enc/tensorFlow2/small/1"
    results = [
        kagglehub_call(monkeypatch, tmp_path, mirror, "alone", handle, plugin=False),
        kagglehub_call(monkeypatch, tmp_path, mirror, "plugin", handle, plugin=True),
        kagglehub_call(
            monkeypatch, tmp_path, mirror, "file", handle, plugin=False, path="config.json"
        ),
        kagglehub_call(
            monkeypatch, tmp_path, mirror, "pfile", handle, plugin=True, path="config.json"
        ),
    ]
    for result in results[:2]:
        assert result["version"] == 1, result
        assert tree(result["path"]) == PRESET
    for result in results[2:]:
        assert Path(result["path"]).read_bytes() == PRESET["config.json"], result
    names = sorted(f"/blob/beta-enc-tensorflow2-small-1/{n}" for n in PRESET)
    assert blobs(world, "beta") == names  # one download of each file, for all four
    for seen in world.kaggle.seen:  # Kaggle saw the mirror's credential, never a client's
        assert seen.headers.get("authorization") == f"Bearer {MIRROR_TOKEN}", seen.path
    for seen in world.storage.seen:  # storage saw none at all
        assert "authorization" not in seen.headers


def test_a_download_is_a_redirect_to_the_mirror_never_to_storage(
    kaggle: tuple[KaggleWorld, ServeProcess],
) -> None:
    world, mirror = kaggle
    add(world, "gamma", {1: PRESET})
    body = {
        "ownerSlug": "gamma",
        "modelSlug": "enc",
        "framework": "MODEL_FRAMEWORK_TENSOR_FLOW_2",
        "instanceSlug": "small",
        "versionNumber": 1,
        "path": "config.json",
    }
    url = mirror.url + "api/v1/models.ModelApiService/DownloadModelInstanceVersion"
    with urllib3.PoolManager(retries=False) as http:
        proxy_auth = {"Proxy-Authorization": f"Bearer {ACCESS}"}
        refused = http.request("POST", url, body=json.dumps(body))
        assert refused.status == 401  # no token: the Kaggle routes are the mirror's too
        bad = http.request(
            "POST", url, body=json.dumps({**body, "ownerSlug": "../x"}), headers=proxy_auth
        )
        assert (bad.status, json.loads(bad.data)["code"]) == (400, 400)  # asked of nobody
        headers = {
            "Authorization": f"Bearer {CLIENT_TOKEN}",
            "Proxy-Authorization": f"Bearer {ACCESS}",
        }
        answer = http.request("POST", url, body=json.dumps(body), headers=headers)
        assert answer.status == 302
        location = answer.headers["Location"]
        assert (
            location == "../../../kaggle-models/gamma/enc/tensorflow2/small/1/file?path=config.json"
        )
        got = http.request("GET", mirror.url + location.removeprefix("../../../"), headers=headers)
    assert (got.status, got.data) == (200, PRESET["config.json"])
    for name, value in [*answer.headers.items(), *got.headers.items()]:  # nothing of the mirror's
        assert MIRROR_TOKEN not in value and "X-Goog" not in value, name
    with urllib3.PoolManager(retries=False) as http:  # production's layout (/v1) as well
        latest = http.request(
            "POST",
            mirror.url + "v1/models.ModelApiService/GetModelInstance",
            body=json.dumps({k: v for k, v in body.items() if k.endswith("Slug") or k[0] == "f"}),
            headers=headers,
        )
    assert (latest.status, json.loads(latest.data)["versionNumber"]) == (200, 1)
    [call] = [
        s
        for s in world.kaggle.seen
        if s.path.endswith("DownloadModelInstanceVersion") and b'"gamma"' in s.body
    ]
    assert call.headers["authorization"] == f"Bearer {MIRROR_TOKEN}"
    assert json.loads(call.body)["path"] == "config.json"


def test_kaggles_refusals_reach_clients_as_their_clients_know_them(
    kaggle: tuple[KaggleWorld, ServeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, mirror = kaggle
    add(world, "delta", {1: PRESET})
    world.kaggle.add(KaggleModel("delta", "gated", "keras", "x", {1: PRESET}, gated=True))
    missing = kagglehub_call(
        monkeypatch, tmp_path, mirror, "m", "delta/nope/keras/x/1", plugin=False
    )
    assert missing["status"] == 404, missing
    assert "kagglehub.exceptions.KaggleApiHTTPError" in missing["error"]
    nofile = kagglehub_call(
        monkeypatch,
        tmp_path,
        mirror,
        "f",
        "delta/enc/tensorFlow2/small/1",
        plugin=False,
        path="task.json",
    )
    assert nofile["status"] == 404, nofile  # KerasHub reads this as "no such file"
    body = {"ownerSlug": "delta", "modelSlug": "gated", "framework": "KERAS", "instanceSlug": "x"}
    with urllib3.PoolManager(retries=False) as http:  # the mirror's account has no access
        gated = http.request(
            "POST",
            mirror.url + "api/v1/models.ModelApiService/GetModelInstance",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {ACCESS}"},
        )
    assert (gated.status, json.loads(gated.data)["code"]) == (403, 403)
    envs = [client_env(tmp_path, mirror, "h")]
    proc = start_cli(["resolve", "kaggle:delta/nope/keras/x/1"], envs[0])
    code, _out, err = finish(proc)
    assert code == 3, err
    assert "Traceback" not in err and "delta/nope/keras/x/1" in err


def test_hubcache_kaggle_api_is_checked_and_keeps_the_machines_credential_home(
    tmp_path: Path,
) -> None:
    from hubcache import ConfigurationError
    from hubcache.kaggle.credentials import find_credential
    from hubcache.kaggle.settings import kaggle_settings

    env = {"HOME": str(tmp_path), "KAGGLE_API_TOKEN": CLIENT_TOKEN}
    mirrored = kaggle_settings({**env, "HUBCACHE_KAGGLE_API": "http://mirror:8000/"})
    assert mirrored.rpc_base == "http://mirror:8000/api/v1"  # the layout a mirror answers
    assert find_credential(mirrored) is None  # nothing of the machine's goes to a mirror
    assert find_credential(kaggle_settings(env)) is not None
    for bad in ("ftp://mirror", "mirror:8000", "http://", "http://m:99999", "http://m/?x=1"):
        with pytest.raises(ConfigurationError, match="HUBCACHE_KAGGLE_API"):
            kaggle_settings({**env, "HUBCACHE_KAGGLE_API": bad})


def test_a_server_without_a_kaggle_upstream_says_so_in_kaggles_words(tmp_path: Path) -> None:
    """Kaggle's JSON, not a bare 404: hubcache's client would take a bare one for an older
    API and try Kaggle's legacy route itself, around the mirror."""
    with ServeProcess(str(tmp_path)) as static:
        env = client_env(tmp_path, static, "static")
        env["HUBCACHE_KAGGLE_API"] = static.url
        code, _out, err = finish(start_cli(["resolve", "kaggle:o/m/keras/v/1"], env))
    assert code == 3, err
    assert "--upstream www.kaggle.com/models/" in err and "Traceback" not in err
