"""The public surface is ``hubcache.__all__``; importing it stays cheap."""

from __future__ import annotations

import os
import subprocess
import sys

import hubcache


def test_all_names_exist_and_private_modules_stay_private() -> None:
    for name in hubcache.__all__:
        assert hasattr(hubcache, name), name
    public = {n for n in dir(hubcache) if not n.startswith("_")}
    # everything public at the top level is in __all__, except the internal subpackages
    # (the architecture: fetch/, archive/, local/...), which are never part of the surface
    helpers = {"annotations", "logging", "Any", "Optional", "TYPE_CHECKING"}  # import-only names
    package = os.path.dirname(hubcache.__file__)
    internal = {n for n in os.listdir(package) if os.path.isfile(f"{package}/{n}/__init__.py")}
    internal -= {"tensorflow_hub", "kagglehub"}  # the public plug-in subpackages
    assert public - set(hubcache.__all__) - helpers - internal == set()
    assert not internal & set(hubcache.__all__)


def test_errors_form_one_hierarchy_with_exit_codes() -> None:
    errors = [getattr(hubcache, n) for n in hubcache.__all__ if n.endswith("Error")]
    for error in errors:
        assert issubclass(error, hubcache.HubcacheError)
        assert isinstance(error.exit_code, int)


def test_import_does_not_load_heavy_dependencies() -> None:
    code = (
        "import sys, hubcache\n"
        "heavy = ['tensorflow', 'fsspec', 'tqdm', 'gcsfs', 's3fs', 'absl', 'zlib_ng', 'isal']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


RETURNED_TYPES = {
    "EntryInfo": ("Cache.entries", "Cache.info"),
    "VerifyResult": ("Cache.verify",),
    "Outcome": ("Cache.execute",),
    "Plan": ("Cache.plan_remove", "Cache.plan_prune"),
    "PlanItem": ("Plan.remove",),
    "DebrisPlan": ("Cache.plan_gc",),
    "Debris": ("Cache.execute_gc",),
    "Imported": ("Cache.import_archive",),
}


def test_the_types_cache_methods_return_are_exported() -> None:
    import typing

    for name in RETURNED_TYPES:
        assert name in hubcache.__all__, name
        assert isinstance(getattr(hubcache, name), type), name
        assert getattr(hubcache, name).__doc__, f"{name} has no docstring"
    hints = {
        method: typing.get_type_hints(getattr(hubcache.Cache, method))["return"]
        for method in ("entries", "info", "verify", "execute", "plan_remove", "plan_gc")
    }
    assert hints["info"] is hubcache.EntryInfo and hints["entries"] == list[hubcache.EntryInfo]
    assert hints["verify"] == list[hubcache.VerifyResult]
    assert hints["execute"] is hubcache.Outcome and hints["plan_remove"] is hubcache.Plan
    assert hints["plan_gc"] is hubcache.DebrisPlan
    assert typing.get_type_hints(hubcache.Cache.import_archive)["return"] == list[hubcache.Imported]


def test_help_shows_cache_and_every_exported_name_is_documented() -> None:
    import pydoc

    text = pydoc.render_doc(hubcache, renderer=pydoc.plaintext)
    assert "class Cache" in text
    for name in hubcache.__all__:
        if name != "__version__":
            assert name in (hubcache.__doc__ or ""), f"{name} is not in the module docstring"
            assert getattr(hubcache, name).__doc__, f"{name} has no docstring"
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        readme = f.read()
    for name in ("EntryInUseError", "cache_key", "Cache", "EntryInfo", "VerifyResult"):
        assert f"`{name}" in readme, f"{name} is not in the README"


def test_the_lazy_names_are_not_imported_by_import_hubcache() -> None:
    code = (
        "import sys, hubcache\n"
        "print(sorted(m for m in sys.modules if m.startswith('hubcache.') and\n"
        "      m.split('.')[1] in ('_cache', 'manage', 'cli')))\n"
        "print('Cache' in dir(hubcache))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
