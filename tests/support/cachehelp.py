"""Helpers shared by the cache-management tests: a cache filled from a loopback server, on
a local root or a ``memory://`` root (:class:`Root` hides which)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import hubcache
from hubcache.cli.main import main
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer, serve

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


def age(path: str, *, used_days_ago: float) -> None:
    """Make an entry look last used ``used_days_ago`` days ago (the manifest's atime)."""
    manifest = path + ".manifest.json"
    st = os.stat(manifest)
    os.utime(manifest, ns=(int((time.time() - used_days_ago * DAY) * 1e9), st.st_mtime_ns))


def fill(
    server: ModelServer, ages: dict[str, float], root: Optional[Root] = None
) -> dict[str, str]:
    """Resolve one model per name (size grows with its position), then age each: name -> URL."""
    urls = {}
    for i, (name, days) in enumerate(ages.items()):
        urls[name] = serve(server, f"/{name}/1", model(10_000 * (i + 1), name[:1].encode()))
        path = hubcache.resolve(urls[name])
        if root is None:
            age(path, used_days_ago=days)
        else:
            root.age(hubcache.cache_key(urls[name]), days)
    return urls


class Root:
    """A cache root under test, set as TFHUB_CACHE_DIR: a local folder (``kind="local"``) or
    a fresh ``memory://`` prefix, with the few manipulations the tests make by hand."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        if kind == "local":
            self.local: Optional[Path] = tmp / "tfhub_cache"
            self.local.mkdir()
            self.url = str(self.local)
        else:
            import fsspec

            self.local = None
            self.url = f"memory://hc-{uuid.uuid4().hex[:12]}/cache"
            self.fs = fsspec.filesystem("memory")
            self.base = self.url[len("memory:/") :]

    def _p(self, name: str) -> str:
        return f"{self.base}/{name}"

    def write(self, name: str, data: bytes) -> None:
        if self.local is not None:
            (self.local / name).parent.mkdir(parents=True, exist_ok=True)
            (self.local / name).write_bytes(data)
        else:
            self.fs.pipe_file(self._p(name), data)

    def read(self, name: str) -> bytes:
        if self.local is not None:
            return (self.local / name).read_bytes()
        return bytes(self.fs.cat_file(self._p(name)))

    def remove(self, name: str) -> None:
        if self.local is not None:
            os.unlink(self.local / name)
        else:
            self.fs.rm_file(self._p(name))

    def exists(self, name: str) -> bool:
        if self.local is not None:
            return os.path.lexists(self.local / name)
        return bool(self.fs.exists(self._p(name)))

    def names(self) -> set[str]:
        """Top-level names: ``<key>``, ``<key>.manifest.json``..."""
        if self.local is not None:
            return names(self.local)
        prefix = self.base + "/"
        return {p[len(prefix) :].split("/")[0] for p in self.fs.find(prefix)}

    def tree_size(self, key: str) -> int:
        if self.local is not None:
            return sum(f.stat().st_size for f in (self.local / key).rglob("*") if f.is_file())
        return sum(self.fs.du(self._p(key), total=False).values())

    def age(self, key: str, days: float) -> None:
        """Make an entry look last used ``days`` ago: the manifest's atime on a local root;
        on a store the times of ``<key>.used`` and of the manifest (the download time)."""
        if self.local is not None:
            age(str(self.local / key), used_days_ago=days)
            return
        when = datetime.datetime.fromtimestamp(time.time() - days * DAY, datetime.timezone.utc)
        if not self.exists(f"{key}.used"):
            self.write(f"{key}.used", b"")
        for name in (f"{key}.used", f"{key}.manifest.json"):
            self.fs.store[self._p(name)].modified = when

    def cleanup(self) -> None:
        if self.local is not None:
            shutil.rmtree(self.local, ignore_errors=True)
        elif self.fs.exists(self.base):
            self.fs.rm(self.base, recursive=True)


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
