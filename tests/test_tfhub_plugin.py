"""The tensorflow_hub plug-in without TensorFlow: a stand-in ``tensorflow_hub`` package.

The stand-in (written below, our own minimal code) has the shape every tensorflow_hub
release since 0.10 has where the plug-in touches it: ``registry.resolver`` tries its
``_impls`` last-registered first, ``config._run()`` registers the defaults and the package
calls it at import; ``resolver.model_load_format()`` and
``compressed_module_resolver.LOCK_FILE_TIMEOUT_SEC``. The real thing is exercised in
tests/test_interop_tfhub_plugin.py. The ``.pth`` is tested through ``site.addsitedir`` on a
temporary folder: exactly what ``site`` does with site-packages, and no real environment is
written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hubcache
from hubcache._config import tfhub_plugin_enabled
from hubcache._errors import as_os_error
from hubcache.cli.main import main
from hubcache.local.holder import new_uid
from hubcache.local.lock import DownloadLock
from hubcache.tensorflow_hub import _pth
from tests.support.archives import M, flip_byte, make_tar
from tests.support.httpserver import ModelServer
from tests.support.procs import run_with_site

SRC = str(Path(hubcache.__file__).resolve().parent.parent)

FAKE = {
    "__init__.py": """
__version__ = "0.16.1"
from tensorflow_hub import registry
from tensorflow_hub.config import _run
_run()

def resolve(handle):
    return registry.resolver(handle)
""",
    "registry.py": """
class MultiImplRegister:
    def __init__(self, name):
        self._name = name
        self._impls = []

    def clear_implementations(self):
        self._impls = []

    def add_implementation(self, impl):
        self._impls += [impl]

    def __call__(self, *args):
        for impl in reversed(self._impls):
            if impl.is_supported(*args):
                return impl(*args)
        raise RuntimeError("no resolver for %r" % (args,))


def _clear():
    resolver.clear_implementations()


resolver = MultiImplRegister("resolver")
""",
    "config.py": """
from tensorflow_hub import registry, resolver


def _run():
    registry.resolver.add_implementation(resolver.PathResolver())
    registry.resolver.add_implementation(resolver.HttpResolver())
""",
    "resolver.py": """
import os


def model_load_format():
    return os.environ.get("TFHUB_MODEL_LOAD_FORMAT", "") or "AUTO"


class PathResolver:
    def is_supported(self, handle):
        return True

    def __call__(self, handle):
        return "path:" + handle


class HttpResolver:
    def is_supported(self, handle):
        return handle.startswith(("http://", "https://"))

    def __call__(self, handle):
        return "tensorflow_hub:" + handle
""",
    "compressed_module_resolver.py": "LOCK_FILE_TIMEOUT_SEC = 600\n",
}


def write_fake(folder: Path, **replace: str) -> Path:
    package = folder / "tensorflow_hub"
    package.mkdir(parents=True)
    for name, text in {**FAKE, **replace}.items():
        (package / name).write_text(text)
    return folder


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in imported into this process (and removed again afterwards)."""
    folder = write_fake(tmp_path / "fake")
    monkeypatch.syspath_prepend(str(folder))
    for name in [m for m in sys.modules if m.startswith("tensorflow_hub")]:
        monkeypatch.delitem(sys.modules, name)
    import tensorflow_hub

    yield tensorflow_hub
    hubcache.tensorflow_hub.uninstall()
    for name in [m for m in sys.modules if m.startswith("tensorflow_hub")]:
        del sys.modules[name]


def impls(hub: Any) -> list[str]:
    return [type(i).__name__ for i in hub.registry.resolver._impls]


# -- in process: install, uninstall, _clear + _run --------------------------------------------


def test_install_is_idempotent_survives_clear_run_and_uninstall_restores(fake_hub: Any) -> None:
    from tensorflow_hub import config, registry

    before = list(registry.resolver._impls)
    original_run = config._run
    assert hubcache.tensorflow_hub.install() is True
    assert hubcache.tensorflow_hub.install() is True
    assert impls(fake_hub) == ["PathResolver", "HttpResolver", "HubcacheResolver"]
    assert hubcache.tensorflow_hub.is_installed()
    registry._clear()
    config._run()
    assert impls(fake_hub) == ["PathResolver", "HttpResolver", "HubcacheResolver"]
    config._run()  # without _clear: the defaults come again, ours stays asked first
    assert impls(fake_hub)[-1] == "HubcacheResolver"
    assert impls(fake_hub).count("HubcacheResolver") == 1
    registry._clear()
    config._run()
    assert hubcache.tensorflow_hub.uninstall() is True
    assert config._run is original_run
    assert [type(i) for i in registry.resolver._impls] == [type(i) for i in before]
    assert not hubcache.tensorflow_hub.is_installed()
    assert hubcache.tensorflow_hub.uninstall() is False


def test_kill_switch_stops_install(fake_hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBCACHE_TFHUB_PLUGIN", "0")
    assert hubcache.tensorflow_hub.install() is False
    assert impls(fake_hub) == ["PathResolver", "HttpResolver"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", True), ("1", True), ("yes", True), ("ON", True), ("0", False), ("no", False)],
)
def test_kill_switch_values(value: str, expected: bool) -> None:
    assert tfhub_plugin_enabled({"HUBCACHE_TFHUB_PLUGIN": value}) is expected


def test_a_bad_kill_switch_value_is_a_configuration_error() -> None:
    with pytest.raises(
        hubcache.ConfigurationError, match="HUBCACHE_TFHUB_PLUGIN='maybe' is neither yes nor no"
    ):
        tfhub_plugin_enabled({"HUBCACHE_TFHUB_PLUGIN": "maybe"})


def test_handles_the_plugin_claims_and_leaves(
    fake_hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubcache.tensorflow_hub.install()
    ours = fake_hub.registry.resolver._impls[-1]
    assert ours.is_supported("https://tfhub.dev/google/m/1")
    assert ours.is_supported("http://127.0.0.1:9/m.tar.gz")
    for local in ("/models/m", "gs://bucket/m.tar.gz", "relative/dir", b"https://x"):
        assert not ours.is_supported(local)
    assert fake_hub.resolve("/models/m") == "path:/models/m"  # left to tensorflow_hub
    # tensorflow_hub's exact reading: only "UNCOMPRESSED" means uncompressed.
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    assert not ours.is_supported("https://tfhub.dev/google/m/1")
    assert fake_hub.resolve("https://h/m") == "tensorflow_hub:https://h/m"
    for value in ("uncompressed", "COMPRESSED", "AUTO", "bogus"):
        monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", value)
        assert ours.is_supported("https://tfhub.dev/google/m/1"), value


# -- resolving through the stand-in -------------------------------------------------------------


def model_tar() -> bytes:
    return make_tar(
        [M("saved_model.pb", b"graph" * 100), M("variables/variables.index", b"i")],
        compression="gz",
    )


def test_resolves_into_tensorflow_hubs_path_with_one_request(
    fake_hub: Any, model_server: ModelServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubcache.tensorflow_hub.install()
    url = model_server.add("/models/m/1", model_tar())
    # tensorflow_hub's reading of the format: lower-case "uncompressed" is compressed there.
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "uncompressed")
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    assert fake_hub.resolve(url) == os.path.join(str(cache_root), key)
    assert fake_hub.resolve(url) == os.path.join(str(cache_root), key)
    assert model_server.count("/models/m/1") == 1
    request = model_server.requests[0]
    assert "tf-hub-format=compressed" in request.path
    assert request.headers["User-Agent"].startswith("hubcache/")


def test_the_absl_flag_root_is_tensorflow_hubs_too(
    fake_hub: Any, model_server: ModelServer, tmp_path: Path
) -> None:
    from absl import flags

    defined_here = "tfhub_cache_dir" not in flags.FLAGS
    hubcache.define_absl_flags()  # tensorflow_hub defines it at import; the stand-in does not
    hubcache.tensorflow_hub.install()
    url = model_server.add("/m/1", model_tar())
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    flags.FLAGS["tfhub_cache_dir"].value = str(tmp_path / "flag-root")
    try:
        assert fake_hub.resolve(url) == os.path.join(str(tmp_path / "flag-root"), key)
    finally:
        flags.FLAGS["tfhub_cache_dir"].value = None
        if defined_here:  # leave absl's global flags as they were
            delattr(flags.FLAGS, "tfhub_cache_dir")


def test_a_store_root_gives_the_store_path_back(
    fake_hub: Any, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fsspec")
    hubcache.tensorflow_hub.install()
    url = model_server.add("/m/1", model_tar())
    root = f"memory://plugin-{uuid.uuid4().hex}"
    monkeypatch.setenv("TFHUB_CACHE_DIR", root)
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    assert fake_hub.resolve(url) == f"{root}/{key}"  # what os.path.join gives tensorflow_hub


def test_offline_miss_is_an_oserror_there(
    fake_hub: Any, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubcache.tensorflow_hub.install()
    monkeypatch.setenv("HUBCACHE_OFFLINE", "1")
    with pytest.raises(OSError) as info:
        fake_hub.resolve("https://tfhub.dev/google/never/1")
    assert isinstance(info.value, hubcache.OfflineError)
    assert "hubcache prefetch" in str(info.value)


def test_a_file_url_root_gives_a_file_url_back(
    fake_hub: Any, model_server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubcache.tensorflow_hub.install()
    url = model_server.add("/m/1", model_tar())
    monkeypatch.setenv("TFHUB_CACHE_DIR", f"file://{tmp_path}/root")
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    assert fake_hub.resolve(url) == f"file://{tmp_path}/root/{key}"  # os.path.join's answer
    assert (tmp_path / "root" / key / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    "case",
    [
        (flip_byte(model_tar(), 60), hubcache.CorruptArchiveError),
        (b"<!doctype html><p>log in", hubcache.NotAnArchiveError),
        (None, hubcache.ModelNotFoundError),  # nothing served there: 404
    ],
    ids=["corrupt", "html", "not_found"],
)
def test_errors_are_oserrors_there_with_our_class_and_message(
    fake_hub: Any, model_server: ModelServer, cache_root: Path, case: tuple[Any, type]
) -> None:
    body, error = case
    hubcache.tensorflow_hub.install()
    url = model_server.add("/bad", body) if body is not None else model_server.url("/bad")
    with pytest.raises(OSError) as info:  # what code written for tensorflow_hub catches
        fake_hub.resolve(url)
    assert isinstance(info.value, error)
    assert isinstance(info.value, hubcache.HubcacheError)
    assert "127.0.0.1" in str(info.value)  # our message, naming the handle
    assert os.listdir(cache_root) == []  # the cache as it was: not even a CACHEDIR.TAG


def test_as_os_error_keeps_message_handle_and_facts() -> None:
    original = hubcache.HTTPStatusError("x", handle="h", status=503)
    assert as_os_error(original) is original  # already an OSError
    mapped = as_os_error(hubcache.CorruptArchiveError("the tar is cut", handle="h", at=5))
    assert isinstance(mapped, OSError) and isinstance(mapped, hubcache.CorruptArchiveError)
    assert (str(mapped), mapped.handle, mapped.at) == ("the tar is cut", "h", 5)
    assert mapped.exit_code == 5
    import pickle

    again = pickle.loads(pickle.dumps(mapped))  # noqa: S301 - our own bytes
    assert type(again) is type(mapped) and str(again) == "the tar is cut"


def test_a_missing_remote_extra_hands_the_handle_to_tensorflow_hub(
    fake_hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubcache.tensorflow_hub.install()
    ours = fake_hub.registry.resolver._impls[-1]

    def missing(handle: str) -> str:
        raise hubcache.MissingDependencyError("gs:// roots need pip install 'hubcache[gcs]'")

    monkeypatch.setattr("hubcache.tensorflow_hub._resolver.resolve_as_tfhub", missing)
    with pytest.warns(RuntimeWarning, match=r"hubcache\[gcs\]"):
        assert ours("https://h/m") == "tensorflow_hub:https://h/m"


# -- tensorflow_hub's locks are judged by its rule -------------------------------------------


def _lock(tmp_path: Path, uid: str) -> DownloadLock:
    path = tmp_path / "k.lock"
    path.write_text(f"{socket.gethostname()}.{os.getpid()}.{uid}")  # a live holder: us
    return DownloadLock(
        str(path),
        lambda u: str(tmp_path / f"k.{u}.tmp"),
        handle="h",
        lease=1000,
        timeout=3,
        foreign_lease=0.3,
    )


def test_a_tensorflow_hub_lock_is_broken_after_its_timeout(tmp_path: Path) -> None:
    lock = _lock(tmp_path, uuid.uuid4().hex)  # tensorflow_hub's task id
    start = time.monotonic()
    assert lock.wait_for_turn(lambda: False)
    assert 0.3 <= time.monotonic() - start < 3
    lock.release()


def test_a_hubcache_lock_keeps_our_lease_even_as_the_plugin(tmp_path: Path) -> None:
    lock = _lock(tmp_path, new_uid())  # ours: our start time after the uuid
    with pytest.raises(hubcache.LockTimeoutError):
        lock.wait_for_turn(lambda: False)


# -- the .pth and its hook, through site.addsitedir ------------------------------------------


run_site = run_with_site  # the .pth through site.addsitedir on a temporary folder


REPORT = (
    "import sys, json, tensorflow_hub as hub; from tensorflow_hub import registry, config;"
    "a = [type(i).__name__ for i in registry.resolver._impls];"
    "registry._clear(); config._run();"
    "b = [type(i).__name__ for i in registry.resolver._impls];"
    "print(json.dumps([a, b, [type(f).__name__ for f in sys.meta_path]]))"
)


def test_cli_enable_status_disable_with_the_hook(tmp_path: Path, capsys: Any) -> None:
    site = tmp_path / "site"
    site.mkdir()
    fake = write_fake(tmp_path / "fake")
    assert main(["tfhub", "enable", "--site-dir", str(site), "-q"]) == 0
    pth = site / _pth.PTH_NAME
    assert capsys.readouterr().out.strip() == str(pth)
    assert pth.read_text().count("\n") == 1 and pth.read_text().startswith("import ")

    proc = run_site(site, REPORT, Path(SRC), fake)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    first, after_clear_run, meta_path = json.loads(proc.stdout)
    assert first == after_clear_run == ["PathResolver", "HttpResolver", "HubcacheResolver"]
    assert "_Finder" not in meta_path  # one shot: disarmed once tensorflow_hub is in

    off = run_site(site, REPORT, Path(SRC), fake, HUBCACHE_TFHUB_PLUGIN="0")
    assert json.loads(off.stdout)[0] == ["PathResolver", "HttpResolver"]
    bad = run_site(site, REPORT, Path(SRC), fake, HUBCACHE_TFHUB_PLUGIN="perhaps")
    assert bad.returncode == 0 and json.loads(bad.stdout)[0] == ["PathResolver", "HttpResolver"]
    assert "HUBCACHE_TFHUB_PLUGIN='perhaps'" in bad.stderr and "Traceback" not in bad.stderr

    assert main(["tfhub", "status", "--site-dir", str(site), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["pth_present"] is True and state["pth_path"] == str(pth)

    assert main(["tfhub", "disable", "--site-dir", str(site), "-q"]) == 0
    assert not pth.exists()
    assert main(["tfhub", "disable", "--site-dir", str(site), "-q"]) == 0  # nothing to do
    proc = run_site(site, REPORT, Path(SRC), fake)
    assert json.loads(proc.stdout)[0] == ["PathResolver", "HttpResolver"]


def test_start_up_imports_only_the_hook(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / _pth.PTH_NAME).write_text(_pth.PTH_LINE)
    code = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    before = set(json.loads(run_site(tmp_path, code, Path(SRC)).stdout))
    after = set(json.loads(run_site(site, code, Path(SRC)).stdout))
    assert after - before == {"_hubcache_tfhub", "_hubcache_hook"}  # the finder both share


def test_a_stale_pth_without_hubcache_is_silent(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / _pth.PTH_NAME).write_text(_pth.PTH_LINE)
    proc = run_site(site, "print('ok')")  # hubcache is not on the path
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_an_unknown_registry_is_one_warning_not_a_crash(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / _pth.PTH_NAME).write_text(_pth.PTH_LINE)
    fake = write_fake(
        tmp_path / "fake",
        **{"registry.py": FAKE["registry.py"].replace("self._impls", "self._list")},
    )
    proc = run_site(site, "import tensorflow_hub; print('imported')", Path(SRC), fake)
    assert proc.returncode == 0 and proc.stdout == "imported\n"
    assert proc.stderr.count("RuntimeWarning") == 1 and "_impls" in proc.stderr


def test_disable_leaves_a_foreign_file_alone(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / _pth.PTH_NAME).write_text("/some/path\n")
    assert main(["tfhub", "disable", "--site-dir", str(tmp_path)]) == 2
    assert "not written by hubcache" in capsys.readouterr().err
    assert (tmp_path / _pth.PTH_NAME).read_text() == "/some/path\n"


def test_enable_where_it_cannot_write_says_so(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "file").write_text("")
    assert main(["tfhub", "enable", "--site-dir", str(tmp_path / "file" / "site")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the .pth" in err


def test_public_module_is_cheap_and_does_not_import_tensorflow_hub() -> None:
    code = (
        "import sys, hubcache.tensorflow_hub as t; "
        "print([m for m in ('tensorflow_hub', 'tensorflow', 'absl') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
