"""One contract for every storage backend (docs/architecture.md): local disk, memory://, GCS, S3.

The bookkeeping in ``Storage`` (manifest last, completeness, verified copies) relies only on
these primitives, so each backend must pass exactly the same tests."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubcache.local.manifest import Manifest
from hubcache.store.backend import open_storage
from hubcache.store.lock import StorageLock
from hubcache.store.storage import LocalStorage, Storage
from tests.support.emulators import activate, probe_preconditions


@pytest.fixture(params=["local", "memory", "gcs", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Storage]:
    kind = request.param
    if kind == "local":
        yield LocalStorage(str(tmp_path / "root"))
    elif kind == "memory":
        yield open_storage(f"memory://hc-{uuid.uuid4().hex[:8]}/cache")
    else:
        emulator = request.getfixturevalue("gcs_emulator" if kind == "gcs" else "s3_emulator")
        activate(emulator, monkeypatch)
        if emulator.honours_preconditions is None:
            emulator.honours_preconditions = probe_preconditions(emulator)
        if not emulator.honours_preconditions and "precondition" in request.node.name:
            pytest.skip(
                f"PRECONDITIONS NOT HONOURED by {emulator.name}: exclusive create untestable"
            )
        yield open_storage(f"{emulator.scheme}://{emulator.new_bucket()}/cache")


def test_precondition_create_is_exclusive(store: Storage) -> None:
    assert store.read("k.lock") is None
    assert store.create("k.lock", b"first")
    assert not store.create("k.lock", b"second")
    assert store.read("k.lock") == b"first"
    store.write("k.lock", b"third")
    assert store.read("k.lock") == b"third"
    store.remove("k.lock")
    store.remove("k.lock")  # missing is fine
    assert store.read("k.lock") is None
    assert store.create("k.lock", b"again")


def test_put_list_read_remove_tree(store: Storage, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "big"
    local.write_bytes(data)
    store.put_file(str(local), "key/variables/v.data")
    store.write("key/saved_model.pb", b"pb")
    store.write("keyother/x", b"not under key/")
    assert store.listing("key") == {"variables/v.data": len(data), "saved_model.pb": 2}
    assert store.listing("absent") == {}
    with store.open_read("key/variables/v.data") as f:
        assert f.read() == data
    store.remove_tree("key")
    assert store.listing("key") == {}
    assert store.listing("keyother") == {"x": 14}
    store.remove_tree("key")  # missing is fine


def test_modified_is_the_stores_clock(store: Storage) -> None:
    store.write("a", b"1")
    when = store.modified("a")
    assert when is not None
    now = store.server_time()
    assert -5 <= now - when < 120  # same clock, taken moments apart (S3 has 1 s resolution)
    assert store.modified("missing") is None


def _tree(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    src = tmp_path / "src"
    files = {
        "saved_model.pb": b"graph",
        "variables/variables.index": b"i",
        "assets/v.txt": b"w" * 5000,
    }
    for rel, body in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    manifest = Manifest.new(
        handle="h",
        key="k",
        files={rel: (len(b), hashlib.sha256(b).hexdigest()) for rel, b in files.items()},
        dirs=["", "assets", "variables"],
    )
    return str(src), manifest


def test_manifest_last_proves_completeness(store: Storage, tmp_path: Path) -> None:
    src, manifest = _tree(tmp_path)
    assert store.complete_manifest("k") is None
    assert store.upload_entry("k", src, manifest, "Module: h")
    assert store.complete_manifest("k") == manifest
    assert store.read("k.descriptor.txt") == b"Module: h"
    assert not store.upload_entry("k", src, manifest, "Module: h")  # manifest only if absent
    dest = tmp_path / "dest"
    dest.mkdir()
    store.download_entry("k", manifest, str(dest))
    assert (dest / "assets" / "v.txt").read_bytes() == b"w" * 5000
    store.remove("k/assets/v.txt")  # a lost object: no longer complete
    assert store.complete_manifest("k") is None
    store.retire("k")
    assert store.read("k.manifest.json") is None and store.listing("k") == {}


def test_a_tree_without_manifest_is_not_an_entry(store: Storage, tmp_path: Path) -> None:
    src, manifest = _tree(tmp_path)
    for rel in manifest.files:
        store.put_file(os.path.join(src, rel), f"k/{rel}")
    assert store.complete_manifest("k") is None
    store.write("k.manifest.json", b"{not json")
    assert store.complete_manifest("k") is None
    store.write("k.manifest.json", manifest.to_json().encode())
    assert store.complete_manifest("k") == manifest


def test_damaged_copy_is_refused(store: Storage, tmp_path: Path) -> None:
    src, manifest = _tree(tmp_path)
    store.upload_entry("k", src, manifest, "d")
    store.write("k/saved_model.pb", b"GRAPH")  # same size, other bytes
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OSError, match="does not match its manifest"):
        store.download_entry("k", manifest, str(dest))


def test_precondition_lock_excludes_and_takes_over_after_lease(store: Storage) -> None:
    first = StorageLock(store, "k", handle="h", lease=60, timeout=None)
    assert first.try_acquire()
    second = StorageLock(store, "k", handle="h", lease=60, timeout=0.3)
    assert not second.try_acquire()
    with pytest.raises(TimeoutError):
        second.wait_for_turn(lambda: False)
    first.release()
    assert store.read("k.lock") is None
    # a holder on another host that stopped refreshing: taken over once its lease expired
    store.write("k.lock", b"otherhost.1.deadbeef")
    third = StorageLock(store, "k", handle="h", lease=0.0, timeout=30)
    assert third.wait_for_turn(lambda: False)
    assert store.read("k.lock") == third.contents.encode()
    third.release()


def test_canary_gcs_emulator_honours_preconditions(
    gcs_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fake-gcs-server honours ifGenerationMatch=0; gcp-storage-emulator (the fallback) does
    not, and then every precondition test above is skipped with a loud reason instead of
    passing falsely against an emulator that overwrites."""
    activate(gcs_emulator, monkeypatch)
    gcs_emulator.honours_preconditions = probe_preconditions(gcs_emulator)
    if not gcs_emulator.honours_preconditions:
        pytest.skip(f"PRECONDITIONS NOT HONOURED by {gcs_emulator.name}: precondition tests skip")
    assert gcs_emulator.name == "fake-gcs-server"
