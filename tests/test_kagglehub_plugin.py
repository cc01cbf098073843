"""The kagglehub plug-in with the real kagglehub (the test extra pins it) against the local
Kaggle test server (tests/support/kaggle.py): unmodified ``kagglehub.model_download`` calls,
in their own processes (kagglehub keeps global state), go through hubcache, return what
kagglehub alone returns, and leave a cache kagglehub alone then uses with the server
stopped. The registry (install, uninstall, staying first, stepping aside) is checked in this
process. The ``.pth`` is tested through ``site.addsitedir`` on a temporary folder: exactly
what ``site`` does with site-packages, and no real environment is written to.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

import hubcache
from hubcache.cli.main import main
from tests.support.kaggle import KaggleModel, KaggleWorld, saved_model_files
from tests.support.procs import run_with_site
from tests.support.trees import tree

kagglehub = pytest.importorskip("kagglehub")

SRC = str(pathlib.Path(hubcache.__file__).resolve().parent.parent)
NNLM = "google/nnlm/tensorFlow2/en-dim128"
BERT = "keras/bert/keras/tiny"
GATED = "google/gemma/keras/gemma-2b"
PRESET = {
    "config.json": b'{"class_name": "BertBackbone"}',
    "metadata.json": b'{"keras_version": "3"}',
    "task.json": b'{"class_name": "BertTextClassifier"}',
    "assets/tokenizer/vocabulary.txt": b"[PAD]\n[UNK]\nhello\n",
    "model.weights.h5": b"\x89HDF" + b"w" * 20000,
    "task.weights.h5": b"\x89HDF" + b"t" * 5000,
}

# One kagglehub call in a fresh process: plug-in on (install() first) or off; prints JSON.
CALL = """
import json, os, sys
if os.environ.get("PLUGIN") == "1":
    import hubcache.kagglehub
    assert hubcache.kagglehub.install()
import kagglehub
from kagglehub import registry
from kagglehub.handle import parse_model_handle
args = json.loads(sys.argv[1])
try:
    path, version = registry.model_resolver(
        parse_model_handle(args["handle"]), args.get("path"),
        force_download=args.get("force", False), output_dir=args.get("output_dir"))
    print(json.dumps({"path": path, "version": version}))
except Exception as exc:
    response = getattr(exc, "response", None)
    print(json.dumps({"error": [c.__module__ + "." + c.__name__ for c in type(exc).__mro__],
                      "status": getattr(response, "status_code", None), "message": str(exc)}))
"""


@pytest.fixture
def world(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, cache_root: pathlib.Path
) -> Iterator[KaggleWorld]:
    monkeypatch.setenv("HUBCACHE_RETRIES", "1")
    monkeypatch.setenv("HUBCACHE_PROGRESS", "0")
    with KaggleWorld() as w:
        w.use(monkeypatch, tmp_path)
        nnlm = {1: saved_model_files("v1"), 2: saved_model_files("v2")}
        w.kaggle.add(KaggleModel("google", "nnlm", "tensorFlow2", "en-dim128", nnlm))
        backbone = {k: v for k, v in PRESET.items() if not k.startswith("task")}
        w.kaggle.add(KaggleModel("keras", "bert", "keras", "tiny", {1: backbone, 2: PRESET}))
        w.kaggle.add(
            KaggleModel(
                "google", "gemma", "keras", "gemma-2b", {1: {"config.json": b"{}"}}, gated=True
            )
        )
        yield w
    assert not (w.kaggle.errors or w.storage.errors or w.tfhub.errors)


def call(handle: str, *, plugin: bool = True, **kw: Any) -> dict[str, Any]:
    env = {**os.environ, "PLUGIN": "1" if plugin else "0"}
    out = subprocess.run(
        [sys.executable, "-c", CALL, json.dumps({"handle": handle, **kw})],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def storage_gets(world: KaggleWorld) -> int:
    return len(world.storage.seen)


def api_calls(world: KaggleWorld) -> list[str]:
    return [s.path.rsplit("/", 1)[-1] for s in world.kaggle.seen]


# -- the contract, against kagglehub alone ---------------------------------------------------
def test_whole_version_is_kagglehubs_path_and_kagglehub_alone_uses_it_offline(
    world: KaggleWorld, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = call(f"{NNLM}/2", plugin=False, output_dir=None)
    assert alone["version"] == 2
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "through-hubcache"))
    world.kaggle.seen.clear()
    world.storage.seen.clear()
    ours = call(f"{NNLM}/2")
    assert ours["version"] == 2
    rel = os.path.relpath(alone["path"], str(tmp_path / "kagglehub"))
    assert ours["path"] == str(tmp_path / "through-hubcache" / rel)
    assert tree(ours["path"]) == tree(alone["path"]) == saved_model_files("v2")
    agents = {s.headers.get("user-agent", "") for s in world.kaggle.seen + world.storage.seen}
    assert agents and all(a.startswith("hubcache/") for a in agents)
    variation = pathlib.Path(ours["path"]).parent
    assert sorted(p.name for p in variation.iterdir()) == [".complete", "2", "2.complete"]
    markers = variation / ".complete" / "2"
    assert sorted(str(p.relative_to(markers)) for p in markers.rglob("*.complete")) == sorted(
        f"{name}.complete" for name in saved_model_files("v2")
    )

    world.stop()  # kagglehub alone, without the plug-in, finds everything complete
    assert call(f"{NNLM}/2", plugin=False) == ours
    one = call(f"{NNLM}/2", plugin=False, path="variables/variables.index")
    assert one == {"path": ours["path"] + "/variables/variables.index", "version": 2}


def test_per_file_calls_cost_one_download_and_then_no_request(world: KaggleWorld) -> None:
    first = call(f"{BERT}/2", path="config.json")
    assert first["version"] == 2 and first["path"].endswith("/keras/tiny/2/config.json")
    gets = storage_gets(world)
    assert gets == len(PRESET)  # the version's files, each once
    seen = len(world.kaggle.seen)
    for name, data in PRESET.items():
        again = call(f"{BERT}/2", path=name)
        assert pathlib.Path(again["path"]).read_bytes() == data
    assert storage_gets(world) == gets and len(world.kaggle.seen) == seen  # no request at all


def test_a_path_the_version_does_not_have_is_kagglehubs_value_error(world: KaggleWorld) -> None:
    call(f"{BERT}/1")
    world.stop()  # answered from the cached version, with no network
    out = call(f"{BERT}/1", path="task.json")
    assert "builtins.ValueError" in out["error"]
    assert out["message"].startswith("'task.json' is not present in the model files")


def test_unversioned_is_the_latest_and_offline_the_newest_cached(
    world: KaggleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert call(BERT, path="config.json")["version"] == 2
    assert "GetModelInstance" in api_calls(world)
    world.stop()
    monkeypatch.setenv("HUBCACHE_OFFLINE", "1")
    out = call(BERT, path="config.json")
    assert out["version"] == 2 and out["path"].endswith("/tiny/2/config.json")
    missing = call(f"{BERT}/2", path="no/such.file")
    assert "builtins.ValueError" in missing["error"]
    never = call(NNLM)  # nothing of it cached: kagglehub's connection error class
    assert "requests.exceptions.ConnectionError" in never["error"]
    assert "hubcache._errors.OfflineError" in never["error"]


def test_network_down_unversioned_falls_back_to_the_newest_cached(world: KaggleWorld) -> None:
    call(f"{BERT}/1")
    world.stop()
    out = call(BERT, path="config.json")  # no HUBCACHE_OFFLINE: Kaggle cannot be reached
    assert out["version"] == 1
    assert "requests.exceptions.ConnectionError" in call(NNLM)["error"]


def test_a_half_written_kagglehub_folder_is_replaced(world: KaggleWorld) -> None:
    variation = pathlib.Path(os.environ["KAGGLEHUB_CACHE"]) / "models" / NNLM
    (variation / "1" / "variables").mkdir(parents=True)  # kagglehub died mid-download:
    (variation / "1" / "saved_model.pb").write_bytes(b"cut")  # files, no marker
    out = call(f"{NNLM}/1")
    assert out["path"] == str(variation / "1")
    assert tree(out["path"]) == saved_model_files("v1")
    assert (variation / "1.complete").is_file()
    assert sorted(p.name for p in variation.iterdir()) == [".complete", "1", "1.complete"]


def test_force_download_fetches_again(world: KaggleWorld) -> None:
    first = call(f"{NNLM}/1")
    gets = storage_gets(world)
    assert call(f"{NNLM}/1") == first and storage_gets(world) == gets
    again = call(f"{NNLM}/1", force=True)
    assert again == first and storage_gets(world) == 2 * gets
    assert tree(again["path"]) == saved_model_files("v1")


def test_output_dir_as_kagglehub_treats_it(world: KaggleWorld, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    first = call(f"{NNLM}/1", output_dir=str(out))
    assert first == {"path": str(out), "version": 1}
    assert tree(str(out))["saved_model.pb"] == saved_model_files("v1")["saved_model.pb"]
    marker = out / ".complete/models/google/nnlm/tensorFlow2/en-dim128/1/bundle.complete"
    assert marker.is_file()
    assert call(f"{NNLM}/1", output_dir=str(out)) == first  # its marker: a hit
    other = call(f"{NNLM}/2", output_dir=str(out))  # not empty, not this version's
    assert "builtins.FileExistsError" in other["error"]
    forced = call(f"{NNLM}/2", output_dir=str(out), force=True)
    assert forced == {"path": str(out), "version": 2}
    one = call(f"{NNLM}/2", output_dir=str(tmp_path / "one"), path="saved_model.pb")
    assert pathlib.Path(one["path"]).read_bytes() == saved_model_files("v2")["saved_model.pb"]
    assert not os.path.samefile(forced["path"] + "/saved_model.pb", one["path"])  # copies


@pytest.mark.parametrize(
    ("handle", "status"),
    [("google/nosuch/keras/x/1", 404), (f"{GATED}/1", 401)],
    ids=["unknown", "gated"],
)
def test_kaggle_errors_are_kagglehubs_http_error_with_our_message(
    world: KaggleWorld, handle: str, status: int
) -> None:
    out = call(handle)
    assert "kagglehub.exceptions.KaggleApiHTTPError" in out["error"]
    assert "hubcache._errors.HubcacheError" in out["error"]
    assert out["status"] in (status, 403) and "Kaggle" in out["message"]


def test_kagglehubs_own_test_setting_empty_token_file_and_bytes_in_the_answer(
    world: KaggleWorld, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kagglehub's own tests name an empty token file (kagglesdk reads it as none) and their
    server answers downloads with the bytes: what works with kagglehub alone works through
    the plug-in, with a warning. hubcache's own calls keep refusing the empty file
    (tests/test_careless_inputs.py)."""
    empty = tmp_path / "empty_access_token"
    empty.write_text("")
    empty.chmod(0o600)
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(empty))
    world.kaggle.direct = True
    assert call(f"{NNLM}/1", plugin=False)["version"] == 1
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "through-hubcache"))
    ours = call(f"{NNLM}/2", path="saved_model.pb")
    assert ours["version"] == 2
    assert pathlib.Path(ours["path"]).read_bytes() == saved_model_files("v2")["saved_model.pb"]
    assert not any("authorization" in s.headers for s in world.kaggle.seen)
    assert storage_gets(world) == 0
    with pytest.raises(hubcache.ConfigurationError, match="is empty"):
        hubcache.resolve(f"kaggle:{NNLM}/1")  # not cached here: the API would be asked


def test_four_processes_at_once_make_one_download_of_each_file(world: KaggleWorld) -> None:
    code = CALL.replace(
        "args = json.loads(sys.argv[1])",
        "args = json.loads(sys.argv[1])\n"
        "import time; time.sleep(max(0, float(os.environ['GO']) - time.time()))",
    )
    import time

    env = {**os.environ, "PLUGIN": "1", "GO": str(time.time() + 1.5)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps({"handle": f"{BERT}/2", "path": name})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("config.json", "task.json", "model.weights.h5", "config.json")
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(r.get("version") == 2 for r in results), results
    blobs = [s.path.split("?")[0] for s in world.storage.seen]
    assert len(blobs) == len(set(blobs)) == len(PRESET)


# -- the registry, in this process -------------------------------------------------------------
@pytest.fixture
def registry() -> Iterator[Any]:
    from kagglehub import registry as reg

    before = list(reg.model_resolver._impls)
    yield reg
    hubcache.kagglehub.uninstall()
    reg.model_resolver._impls = before


def names(reg: Any) -> list[str]:
    return [type(i).__name__ for i in reg.model_resolver._impls]


KAGGLEHUBS = ["ModelHttpResolver", "ModelKaggleCacheResolver", "ModelColabCacheResolver"]


def test_install_is_idempotent_stays_first_and_uninstall_restores(registry: Any) -> None:
    before = list(registry.model_resolver._impls)
    assert hubcache.kagglehub.install() and hubcache.kagglehub.install()
    assert names(registry) == [*KAGGLEHUBS, "HubcacheModelResolver"]
    assert hubcache.kagglehub.is_installed()
    importlib.reload(kagglehub)  # kagglehub registers its own three again: ours stays first
    assert names(registry) == [*KAGGLEHUBS, *KAGGLEHUBS, "HubcacheModelResolver"]

    class Users:
        def is_supported(self, *args: Any, **kwargs: Any) -> bool:
            return True

    registry.model_resolver.add_implementation(Users())  # a user's own, later: it wins
    assert names(registry)[-2:] == ["HubcacheModelResolver", "Users"]
    registry.model_resolver._impls = [*before]
    hubcache.kagglehub.install()
    assert hubcache.kagglehub.uninstall() is True
    assert registry.model_resolver._impls == before
    assert "add_implementation" not in vars(registry.model_resolver)
    assert not hubcache.kagglehub.is_installed() and hubcache.kagglehub.uninstall() is False


def test_kill_switch(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_KAGGLEHUB_PLUGIN", "0")
    assert hubcache.kagglehub.install() is False
    assert "HubcacheModelResolver" not in names(registry)
    monkeypatch.setenv("HUBCACHE_KAGGLEHUB_PLUGIN", "maybe")
    with pytest.raises(hubcache.ConfigurationError, match="neither yes nor no"):
        hubcache.kagglehub.install()


def test_steps_aside_in_kaggle_notebooks(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kagglehub.handle import parse_model_handle

    hubcache.kagglehub.install()
    ours = registry.model_resolver._impls[-1]
    handle = parse_model_handle(f"{NNLM}/1")
    assert ours.is_supported(handle, None)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")  # a Kaggle notebook, as
    monkeypatch.setenv("KAGGLE_DATA_PROXY_URL", "http://127.0.0.1:9")  # kagglehub tells it
    assert not ours.is_supported(handle, "saved_model.pb")
    assert names(registry)[-1] == "HubcacheModelResolver"
    monkeypatch.setenv("DISABLE_KAGGLE_CACHE", "1")
    assert ours.is_supported(handle, None)


def test_leaves_kagglehub_what_hubcache_cannot_cache(
    registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kagglehub.handle import ModelHandle, parse_model_handle

    hubcache.kagglehub.install()
    ours = registry.model_resolver._impls[-1]
    assert ours.is_supported(parse_model_handle(f"{NNLM}/1"))
    newer = ModelHandle("google", "nnlm", "someNewFramework", "v", 1)  # not in hubcache's list
    assert not ours.is_supported(newer)
    monkeypatch.setenv("TFHUB_CACHE_DIR", "memory://plugin-root")  # no files to link there
    assert not ours.is_supported(parse_model_handle(f"{NNLM}/1"))


def test_an_unknown_registry_is_one_warning_not_a_crash() -> None:
    from hubcache.kagglehub import _registry

    odd = types.SimpleNamespace(model_resolver=types.SimpleNamespace(impls=[]))
    with pytest.warns(RuntimeWarning, match="_impls"):
        assert _registry.install(odd) is False


# -- the .pth and its hook, through site.addsitedir ------------------------------------------
def run_site(site: pathlib.Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_with_site(site, code, pathlib.Path(SRC), **env)


REPORT = (
    "import sys, json, kagglehub; from kagglehub import registry;"
    "print(json.dumps([[type(i).__name__ for i in registry.model_resolver._impls],"
    " [type(f).__name__ for f in sys.meta_path]]))"
)


def test_cli_enable_status_disable_with_the_hook(tmp_path: pathlib.Path, capsys: Any) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert main(["kagglehub", "enable", "--site-dir", str(site), "-q"]) == 0
    pth = site / hubcache.kagglehub.PTH.name
    assert capsys.readouterr().out.strip() == str(pth)
    assert pth.read_text().count("\n") == 1 and pth.read_text().startswith("import ")

    proc = run_site(site, REPORT)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    impls, meta_path = json.loads(proc.stdout)
    assert impls == [*KAGGLEHUBS, "HubcacheModelResolver"]
    assert "_Finder" not in meta_path  # one shot: disarmed once kagglehub is in

    off = run_site(site, REPORT, HUBCACHE_KAGGLEHUB_PLUGIN="0")
    assert json.loads(off.stdout)[0] == KAGGLEHUBS
    bad = run_site(site, REPORT, HUBCACHE_KAGGLEHUB_PLUGIN="perhaps")
    assert bad.returncode == 0 and json.loads(bad.stdout)[0] == KAGGLEHUBS
    assert "HUBCACHE_KAGGLEHUB_PLUGIN='perhaps'" in bad.stderr and "Traceback" not in bad.stderr

    assert main(["kagglehub", "status", "--site-dir", str(site), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["pth_present"] is True and state["registry"] == "compatible"
    assert state["kagglehub_version"] == kagglehub.__version__ and state["switch"] == "on"
    # every condition of "active" holds but one: this python does not read that folder at
    # start-up (a test cannot write into its own site-packages), and status says so
    assert state["site_dir_read"] is False and state["active"] is False

    assert main(["kagglehub", "disable", "--site-dir", str(site), "-q"]) == 0
    assert not pth.exists()
    assert main(["kagglehub", "disable", "--site-dir", str(site), "-q"]) == 0  # nothing to do
    assert json.loads(run_site(site, REPORT).stdout)[0] == KAGGLEHUBS


def test_both_plugins_share_one_finder_and_start_up_imports_only_the_hooks(
    tmp_path: pathlib.Path,
) -> None:
    from hubcache.tensorflow_hub import _pth as tfhub_pth

    site = tmp_path / "site"
    site.mkdir()
    hubcache.kagglehub.PTH.write(str(site))
    tfhub_pth.write(str(site))
    code = (
        "import sys, json; print(json.dumps([sorted(sys.modules),"
        " [sorted(getattr(f, 'targets', [])) for f in sys.meta_path if hasattr(f, 'targets')]]))"
    )
    before = set(json.loads(run_site(tmp_path, code).stdout)[0])
    after, finders = json.loads(run_site(site, code).stdout)
    assert set(after) - before == {"_hubcache_hook", "_hubcache_tfhub"}
    assert finders == [["kagglehub", "tensorflow_hub"]]


def test_install_in_code_with_the_pth_armed_is_silent(tmp_path: pathlib.Path) -> None:
    """``install()`` before ``import kagglehub`` (as docs/kagglehub.md shows) while the .pth
    watches kagglehub: the import hands over to install() once more, inside the first."""
    hubcache.kagglehub.PTH.write(str(tmp_path))
    code = "import hubcache.kagglehub as h; print(h.install(), h.install(), h.is_installed())"
    proc = run_site(tmp_path, code)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True True True\n", "")


# kagglehub 0.3's shape (checked against 0.3.13): the same registry, but its cache helper is
# module functions, not the Cache class the plug-in uses.
OLD_KAGGLEHUB = {
    "__init__.py": (
        "__version__ = '0.3.13'\n"
        "from kagglehub import http_resolver, registry\n"
        "registry.model_resolver.add_implementation(http_resolver.ModelHttpResolver())\n"
        "def model_download(handle, path=None):\n"
        "    return registry.model_resolver(handle, path)[0]\n"
    ),
    "registry.py": (
        "class MultiImplRegistry:\n"
        "    def __init__(self):\n"
        "        self._impls = []\n"
        "    def add_implementation(self, impl):\n"
        "        self._impls.append(impl)\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        for impl in reversed(self._impls):\n"
        "            if impl.is_supported(*args, **kwargs):\n"
        "                return impl(*args, **kwargs)\n"
        "model_resolver = MultiImplRegistry()\n"
    ),
    "http_resolver.py": (
        "class ModelHttpResolver:\n"
        "    def is_supported(self, *args, **kwargs):\n"
        "        return True\n"
        "    def __call__(self, handle, path=None, **kwargs):\n"
        "        return '/from/kagglehub/itself', 1\n"
    ),
    "cache.py": "def load_from_cache(handle, path=None):\n    return None\n",
    "exceptions.py": "class KaggleApiHTTPError(Exception):\n    pass\n",
}


def test_a_kagglehub_of_another_shape_gets_one_warning_and_keeps_working(
    tmp_path: pathlib.Path,
) -> None:
    package = tmp_path / "old" / "kagglehub"
    package.mkdir(parents=True)
    for name, text in OLD_KAGGLEHUB.items():
        (package / name).write_text(text)
    site = tmp_path / "site"
    site.mkdir()
    hubcache.kagglehub.PTH.write(str(site))
    code = (
        "import json, kagglehub, hubcache.kagglehub as h; ok = h.install(); "
        "print(json.dumps([ok, [type(i).__name__ for i in kagglehub.registry.model_resolver."
        "_impls], kagglehub.model_download('o/m/keras/v/1'), h.status().registry]))"
    )
    proc = run_with_site(site, code, tmp_path / "old", pathlib.Path(SRC))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        False,
        ["ModelHttpResolver"],
        "/from/kagglehub/itself",
        "differs: kagglehub/cache.py has no 'class Cache'",
    ]
    warning = [line for line in proc.stderr.splitlines() if "Warning" in line]
    assert len(warning) == 1 and "not one hubcache's plug-in knows" in warning[0], proc.stderr
    assert "Traceback" not in proc.stderr

    (tmp_path / "other").mkdir()
    command = ["kagglehub", "enable", "--site-dir", str(tmp_path / "other")]
    enable = run_with_site(
        site,
        f"from hubcache.cli.main import main; raise SystemExit(main({command!r}))",
        tmp_path / "old",
        pathlib.Path(SRC),
    )
    assert enable.returncode == 0 and "Traceback" not in enable.stderr, enable.stderr
    assert "is not one the plug-in knows" in enable.stderr  # the version: pip's record
    assert "keeps resolving on its own" in enable.stderr


def test_a_stale_pth_without_hubcache_is_silent(tmp_path: pathlib.Path) -> None:
    hubcache.kagglehub.PTH.write(str(tmp_path))
    proc = run_with_site(tmp_path, "print('ok')", bare=True)  # hubcache not importable
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_public_module_is_cheap_and_does_not_import_kagglehub() -> None:
    code = (
        "import sys, hubcache.kagglehub as k; k.status(); "
        "print([m for m in ('kagglehub', 'requests', 'kagglesdk') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
