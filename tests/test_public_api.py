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
    internal -= {"tensorflow_hub"}  # the one public subpackage, when present
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
