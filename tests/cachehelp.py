"""Helpers shared by the cache-management tests: a cache filled from a loopback server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import hubcache
from hubcache._cli import main
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer

DAY = 86400.0


def model(size: int, seed: bytes = b"x") -> bytes:
    return make_tar(
        [
            M("saved_model.pb", seed * 100),
            M("variables/variables.index", b"index"),
            M("variables/variables.data-00000-of-00001", seed * size),
        ],
        compression="gz",
    )


def serve(server: ModelServer, path: str, body: bytes, **kw: Any) -> str:
    server.add(path, body, query_required="tf-hub-format=compressed", **kw)
    return server.url(path)


def age(path: str, *, used_days_ago: float) -> None:
    """Make an entry look last used ``used_days_ago`` days ago (the manifest's atime)."""
    manifest = path + ".manifest.json"
    st = os.stat(manifest)
    os.utime(manifest, ns=(int((time.time() - used_days_ago * DAY) * 1e9), st.st_mtime_ns))


def fill(server: ModelServer, ages: dict[str, float]) -> dict[str, str]:
    """Resolve one model per name (size grows with its position), then age each: name -> URL."""
    urls = {}
    for i, (name, days) in enumerate(ages.items()):
        urls[name] = serve(server, f"/{name}/1", model(10_000 * (i + 1), name[:1].encode()))
        age(hubcache.resolve(urls[name]), used_days_ago=days)
    return urls


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: Any, *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}
