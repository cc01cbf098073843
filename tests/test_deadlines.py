"""Every remote read has a deadline: a place that accepts the connection and then says
nothing never hangs a resolve. With ``HUBCACHE_READ_TIMEOUT=5`` and every other setting at
its default, each case below ends within 60 s (docs/configuration.md, "Deadlines", states
the bounds these tests hold the code to):

* an object-store root (``s3://`` on moto, ``gs://`` on the GCS emulator) that answers the
  first contact and then goes silent: exit 4, one line naming the store;
* the same store as the shared tier: one warning, the model comes from the origin, exit 0;
* a Kaggle API host that goes silent: exit 4, one line;
* a silent mirror: the origin serves the model (exit 0); with ``--no-origin``, exit 4.

Each silent place is a real server behind ``tests.support.relay.SilentRelay``, which drops
the answers it is told to; every process runs the real CLI.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.archives import M, make_tar
from tests.support.emulators import Emulator, activate
from tests.support.httpserver import Fault, ModelServer
from tests.support.kaggle import KaggleModel, KaggleWorld, saved_model_files
from tests.support.relay import SilentRelay
from tests.support.trees import tree
from tests.test_store_errors import isolated, one_line, run

MEMBERS = [M("saved_model.pb", b"graph" * 100)]
FILES = {m.name: m.data for m in MEMBERS}
BOUND = 60.0  # seconds: the promise at HUBCACHE_READ_TIMEOUT=5, defaults otherwise


def defaults(tmp_path: Path, **variables: str) -> dict[str, str]:
    """No cloud configuration, ``HUBCACHE_READ_TIMEOUT=5``, every other setting default."""
    env = isolated(tmp_path, HUBCACHE_READ_TIMEOUT="5", **variables)
    for name in ("HUBCACHE_RETRIES", "HUBCACHE_STORE_TIMEOUT"):  # isolated() lowers these
        env.pop(name)
    return env


@pytest.fixture(params=["s3", "gs"])
def emulator(request: pytest.FixtureRequest) -> Emulator:
    name = {"s3": "s3_emulator", "gs": "gcs_emulator"}[request.param]
    store: Emulator = request.getfixturevalue(name)
    return store


Done = tuple[subprocess.CompletedProcess[str], float]


def _silent_store(
    stack: contextlib.ExitStack, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, str], SilentRelay]:
    """A bucket behind a relay that answers the first contact (hubcache's probe object)
    and nothing after it: (root URL, the variables that point a client at it, the relay)."""
    activate(emulator, monkeypatch)
    bucket = emulator.new_bucket()
    port = int(emulator.endpoint.rsplit(":", 1)[1])
    relay = stack.enter_context(SilentRelay(port, spare=b".hubcache-probe"))
    where = {"s3": "AWS_ENDPOINT_URL", "gs": "STORAGE_EMULATOR_HOST"}[emulator.scheme]
    variables = {**emulator.env(), where: relay.endpoint}
    return f"{emulator.scheme}://{bucket}/cache", variables, relay


def test_every_silent_place_is_bounded(  # noqa: PLR0917 - pytest passes fixtures positionally
    tmp_path: Path,
    model_server: ModelServer,
    s3_emulator: Emulator,
    gcs_emulator: Emulator,
    kaggle_world: KaggleWorld,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seven silent places at HUBCACHE_READ_TIMEOUT=5, defaults otherwise, each resolved by
    its own CLI process, all at once (they only wait, so the test takes as long as the
    slowest, not the sum): each ends within BOUND with what the module docstring says."""
    archive = make_tar(MEMBERS, compression="gz")
    url = model_server.add("/m.tar.gz", archive)
    model_server.add("/mirror/m.tar.gz", archive, faults=(Fault(never_answer=True),))
    mirror = f"{model_server.url('/')}={model_server.url('/mirror/')}"
    cases: dict[str, tuple[list[str], dict[str, str]]] = {}
    relays: dict[str, SilentRelay] = {}
    stores: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for emulator in (s3_emulator, gcs_emulator):
            for role in ("root", "tier"):
                name = f"{emulator.scheme}-{role}"
                store, variables, relays[name] = _silent_store(stack, emulator, monkeypatch)
                stores[name] = store
                here = tmp_path / name
                where = (
                    {"TFHUB_CACHE_DIR": store}
                    if role == "root"
                    else {"HUBCACHE_SHARED_CACHE": store, "TFHUB_CACHE_DIR": str(here / "c")}
                )
                here.mkdir()
                cases[name] = (["resolve", url], defaults(here, **variables, **where))
        api = stack.enter_context(SilentRelay(kaggle_world.kaggle.port, marker=b"ModelApiService"))
        relays["kaggle"] = api
        proxy = {"http_proxy": api.endpoint, "HTTP_PROXY": api.endpoint}
        here = tmp_path / "kaggle"
        here.mkdir()
        cases["kaggle"] = (
            ["resolve", "kaggle:google/nnlm/tensorFlow2/en-dim128/1"],
            defaults(
                here,
                **{**kaggle_world.env(), **proxy},
                TFHUB_CACHE_DIR=str(here / "c"),
                KAGGLEHUB_CACHE=str(here / "kagglehub"),
            ),
        )
        for name, extra in (("mirror", []), ("mirror-no-origin", ["--no-origin"])):
            here = tmp_path / name
            here.mkdir()
            args = ["resolve", "--mirror", mirror, *extra, url]
            cases[name] = (args, defaults(here, TFHUB_CACHE_DIR=str(here / "c")))
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {name: pool.submit(run, *case) for name, case in cases.items()}
            results: dict[str, Done] = {name: f.result() for name, f in futures.items()}
    for name, (done, took) in results.items():
        assert took < BOUND, (name, took)
        assert "Traceback" not in done.stderr, (name, done.stderr)
    for name in ("s3-root", "gs-root", "s3-tier", "gs-tier"):
        done, _took = results[name]
        # Past the first contact every request went unanswered; only hubcache retried it:
        # the root once plus HUBCACHE_RETRIES (5) times, the tier once (s3fs and botocore
        # would have made 125 tries of it, gcsfs 6 per try).
        assert relays[name].silenced == (6 if name.endswith("root") else 1), name
        line = one_line(done)
        if name.endswith("root"):
            assert done.returncode == 4, (name, done.stderr)
            assert stores[name] in line and "stopped answering" in line, line
        else:
            assert done.returncode == 0, (name, done.stderr)
            assert stores[name] in line and "origin" in line, line  # the one warning
            assert tree(done.stdout.strip()) == FILES
    done, _took = results["kaggle"]
    assert relays["kaggle"].silenced >= 1
    assert done.returncode == 4, done.stderr
    assert "localhost" in one_line(done)
    done, _took = results["mirror"]
    assert done.returncode == 0, done.stderr
    assert tree(done.stdout.strip()) == FILES
    done, _took = results["mirror-no-origin"]
    assert done.returncode == 4, done.stderr
    assert "/mirror/m.tar.gz" in one_line(done)


@pytest.fixture
def kaggle_world(tmp_path: Path) -> Iterator[KaggleWorld]:
    with KaggleWorld() as world:
        world.kaggle.add(
            KaggleModel("google", "nnlm", "tensorFlow2", "en-dim128", {1: saved_model_files("v1")})
        )
        yield world


def _dripping_store(
    stack: contextlib.ExitStack,
    tmp_path: Path,
    url: str,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[str], dict[str, str], SilentRelay, str]:
    """One byte a second never trips the read timeout; the deadline of a call on a small
    object (connect + read timeout, set outside the client's wrappers) still ends it."""
    activate(emulator, monkeypatch)
    bucket = emulator.new_bucket()
    port = int(emulator.endpoint.rsplit(":", 1)[1])
    relay = stack.enter_context(SilentRelay(port, spare=b".hubcache-probe", drip=1.0))
    where = {"s3": "AWS_ENDPOINT_URL", "gs": "STORAGE_EMULATOR_HOST"}[emulator.scheme]
    root = f"{emulator.scheme}://{bucket}/cache"
    here = tmp_path / f"drip-{emulator.scheme}"
    here.mkdir()
    env = isolated(
        here,
        **{**emulator.env(), where: relay.endpoint},
        TFHUB_CACHE_DIR=root,
        HUBCACHE_CONNECT_TIMEOUT="2",
        HUBCACHE_READ_TIMEOUT="3",  # a call on a small object: at most 5 s
    )
    return ["resolve", url], env, relay, root


def _silent_archive(
    stack: contextlib.ExitStack, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], dict[str, str], SilentRelay, str]:
    """An archive handle (gs://b/m.tar.gz) whose data never comes: each try is one request
    (no retries inside the client), started over on the download's budget, then exit 4."""
    activate(emulator, monkeypatch)
    bucket = emulator.new_bucket()
    emulator.filesystem().pipe_file(  # type: ignore[attr-defined]
        f"{bucket}/m.tar.gz", make_tar(MEMBERS, compression="gz")
    )
    port = int(emulator.endpoint.rsplit(":", 1)[1])
    data = {"s3": b"GET ", "gs": b"alt=media"}[emulator.scheme]  # the object's bytes only
    relay = stack.enter_context(SilentRelay(port, marker=data))
    where = {"s3": "AWS_ENDPOINT_URL", "gs": "STORAGE_EMULATOR_HOST"}[emulator.scheme]
    here = tmp_path / f"archive-{emulator.scheme}"
    here.mkdir()
    env = isolated(
        here,
        **{**emulator.env(), where: relay.endpoint},
        TFHUB_CACHE_DIR=str(here / "c"),
        HUBCACHE_READ_TIMEOUT="2",
        HUBCACHE_RETRIES="2",
    )
    handle = f"{emulator.scheme}://{bucket}/m.tar.gz"
    return ["resolve", handle], env, relay, f"{bucket}/m.tar.gz"


def test_dripping_stores_and_silent_archives_are_cut(
    tmp_path: Path,
    model_server: ModelServer,
    s3_emulator: Emulator,
    gcs_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both stores, both cases, as concurrent CLI processes (each only waits)."""
    url = model_server.add("/m.tar.gz", make_tar(MEMBERS, compression="gz"))
    cases: dict[str, tuple[list[str], dict[str, str], SilentRelay, str]] = {}
    with contextlib.ExitStack() as stack:
        for emulator in (s3_emulator, gcs_emulator):
            cases[f"drip-{emulator.scheme}"] = _dripping_store(
                stack, tmp_path, url, emulator, monkeypatch
            )
            cases[f"archive-{emulator.scheme}"] = _silent_archive(
                stack, tmp_path, emulator, monkeypatch
            )
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {name: pool.submit(run, c[0], c[1]) for name, c in cases.items()}
            results: dict[str, Done] = {name: f.result() for name, f in futures.items()}
    for name, (done, took) in results.items():
        _args, _env, relay, what = cases[name]
        assert done.returncode == 4, (name, done.stderr)
        assert took < 30, (name, took)
        if name.startswith("drip"):
            assert relay.silenced >= 1, name
            assert what in one_line(done)
        else:
            assert relay.silenced == 3, (name, relay.silenced)  # 1 + HUBCACHE_RETRIES
            line = one_line(done)  # restarts are logged at info: one line in all
            assert what in line and "after 3 attempts" in line and "stopped answering" in line
