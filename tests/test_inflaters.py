"""Every inflater hubcache can pick gives the same result and the same integrity checks.

ISA-L and zlib-ng are both regular dependencies; which one is tried first depends on the
CPU (``decode.preference``), each is the other's fallback, and the standard library's zlib
is the last resort when neither wheel is there (a platform without wheels, a broken
install). Each case runs in a fresh process in which the faster
modules are blocked (``sys.modules[name] = None`` makes their import fail), so the fallback
paths run exactly as they would on such a machine, and the child reports which inflater it
really used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.archives import M, concat_members, flip_byte, make_tar, strip_trailer

pytest.importorskip("isal")
pytest.importorskip("zlib_ng")

_CHILD = r"""
import hashlib, json, os, sys
blocked = [m for m in sys.argv[1].split(",") if m]
for name in blocked:
    sys.modules[name] = None  # the import fails as if the wheel were missing
import hubcache
from hubcache.archive import decode
out = {"results": {}}
root = sys.argv[2]
for case in sys.argv[3:]:
    name, path = case.split("=", 1)
    try:
        where = hubcache.resolve(path, cache_dir=os.path.join(root, name))
    except hubcache.HubcacheError as exc:
        out["results"][name] = {"error": type(exc).__name__, "exit": exc.exit_code}
        continue
    files = {}
    for folder, _dirs, names in os.walk(where):
        for n in names:
            p = os.path.join(folder, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, where)] = hashlib.sha256(f.read()).hexdigest()
    manifest = [n for n in os.listdir(os.path.join(root, name)) if n.endswith(".manifest.json")]
    with open(os.path.join(root, name, manifest[0])) as f:
        archive = json.load(f)["archive"]
    out["results"][name] = {"files": files, "archive": archive}
out["engine"] = decode.inflater()[0]
out["loaded"] = sorted(m for m in ("isal", "zlib_ng") if sys.modules.get(m) is not None)
print(json.dumps(out))
"""


def _archives(tmp: Path) -> dict[str, Path]:
    """A model big enough for many 1 MiB chunks (compressible and random parts), a
    two-member gzip stream, and the two kinds of damage a trailer check must catch."""
    import random

    rng = random.Random(7)
    members = [
        M("saved_model.pb", data=b"graph " * 40_000),
        M("variables/variables.data-00000-of-00001", data=rng.randbytes(3 << 20)),
        M("assets/vocab.txt", data=b"".join(b"token%d\n" % i for i in range(200_000))),
    ]
    good = make_tar(members, compression="gz")
    tar = make_tar(members)
    half = len(tar) // 2 // 512 * 512
    import gzip

    two = concat_members(gzip.compress(tar[:half], mtime=0), gzip.compress(tar[half:], mtime=0))
    cases = {
        "good": good,
        "members": two,
        "flipped": flip_byte(good, len(good) // 2),
        "no-trailer": strip_trailer(good),
    }
    paths = {}
    for name, data in cases.items():
        path = tmp / f"{name}.tar.gz"
        path.write_bytes(data)
        paths[name] = path
    return paths


def _run(tmp: Path, blocked: str, archives: dict[str, Path]) -> dict[str, object]:
    root = tmp / f"cache-{blocked or 'none'}"
    root.mkdir()
    argv = [sys.executable, "-c", _CHILD, blocked, str(root)]
    argv += [f"{name}={path}" for name, path in archives.items()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_every_inflater_gives_identical_trees_and_refuses_the_same_damage(tmp_path: Path) -> None:
    archives = _archives(tmp_path)
    runs = {
        "isal": _run(tmp_path, "zlib_ng", archives),
        "zlib-ng": _run(tmp_path, "isal", archives),
        "zlib": _run(tmp_path, "isal,zlib_ng", archives),
    }
    # each child really used the inflater the blocking left it, and loaded nothing faster
    assert {name: run["engine"] for name, run in runs.items()} == {
        "isal": "isal",
        "zlib-ng": "zlib-ng",
        "zlib": "zlib",
    }
    assert runs["isal"]["loaded"] == ["isal"]
    assert runs["zlib-ng"]["loaded"] == ["zlib_ng"]
    assert runs["zlib"]["loaded"] == []
    reference = runs["isal"]["results"]
    assert isinstance(reference, dict)
    assert set(reference["good"]["files"]) == {
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "assets/vocab.txt",
    }
    assert reference["members"]["files"] == reference["good"]["files"]
    for case in ("flipped", "no-trailer"):
        assert reference[case] == {"error": "CorruptArchiveError", "exit": 5}, case
    for name in ("zlib-ng", "zlib"):
        assert runs[name]["results"] == reference, name


def test_the_default_install_has_both_fast_inflaters_and_picks_by_cpu() -> None:
    """isal and zlib-ng are regular dependencies: without them every user would inflate
    ~2x slower, and the faster of the two depends on the CPU."""
    from importlib.metadata import requires

    deps = [r.replace(" ", "") for r in requires("hubcache") or [] if "extra ==" not in r]
    assert any(r.startswith("isal") for r in deps), deps
    assert any(r.startswith("zlib-ng") for r in deps), deps
    from hubcache.archive import decode

    assert decode._inflater_factory("AuthenticAMD")[0] == "zlib-ng"
    assert decode._inflater_factory("GenuineIntel")[0] == "isal"
    assert decode._inflater_factory("")[0] == "isal"
    assert decode.inflater()[0] == decode.preference(decode.cpu_vendor())[0]
