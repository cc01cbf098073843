"""An object store that cannot be used (closed port, wrong endpoint, no credentials): a
bounded wait (HUBCACHE_STORE_TIMEOUT), then ONE line naming the store and the fix, with
exit 4 (unreachable) or 6 (credentials); the shared tier degrades with one warning.

Hermetic: every endpoint is on 127.0.0.1 (a closed port, or the emulators of
tests/support/emulators.py); credentials and the metadata server are pointed nowhere, so
no client library can reach the internet.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import M, make_tar
from tests.support.emulators import activate, free_port
from tests.support.httpserver import ModelServer
from tests.support.procs import run_cli
from tests.support.relay import SilentRelay
from tests.support.trees import tree

# Looked up, not imported: gcsfs reads some variables when it is imported, and the session's
# GCS emulator fixture sets them first; importing it at collection would bypass that.
if importlib.util.find_spec("gcsfs") is None or importlib.util.find_spec("s3fs") is None:
    pytest.skip("needs hubcache[gcs] and hubcache[s3]", allow_module_level=True)

MEMBERS = [M("saved_model.pb", b"graph" * 100)]
FILES = {m.name: m.data for m in MEMBERS}


def isolated(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of a user with no cloud configuration at all, plus ``variables``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GOOGLE_", "GCE_", "CLOUDSDK_", "FSSPEC_", "STORAGE_"))
    }
    closed = f"127.0.0.1:{free_port()}"
    env.update(
        HOME=str(tmp_path / "home"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        GCE_METADATA_HOST=closed,
        GCE_METADATA_IP=closed,
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
        HUBCACHE_STORE_TIMEOUT="3",
        HUBCACHE_RETRIES="0",
    )
    env.update(variables)
    return env


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = run_cli(args, env, timeout=120)
    return done, time.monotonic() - started


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("command", [["resolve", "http://127.0.0.1:9/m/1"], ["ls"]])
def test_gcs_root_on_a_closed_port_fails_in_bounded_time(
    tmp_path: Path, command: list[str]
) -> None:
    env = isolated(
        tmp_path,
        STORAGE_EMULATOR_HOST=closed_endpoint(),
        FSSPEC_GS_TOKEN="anon",
        TFHUB_CACHE_DIR="gs://bucket/cache",
    )
    done, took = run(command, env)
    assert done.returncode == 4, done.stderr
    line = one_line(done)
    assert "gs://bucket/cache" in line and "STORAGE_EMULATOR_HOST" in line
    assert "HUBCACHE_STORE_TIMEOUT" in line or "cannot reach" in line
    assert took < 20  # gcsfs alone retries for about 35 s


def test_s3_root_without_credentials_is_exit_6_naming_the_variables(
    tmp_path: Path, s3_emulator: Any
) -> None:
    env = isolated(
        tmp_path, AWS_ENDPOINT_URL=s3_emulator.endpoint, TFHUB_CACHE_DIR="s3://bucket/cache"
    )
    done, _took = run(["resolve", "http://127.0.0.1:9/m/1"], env)
    assert done.returncode == 6, done.stderr
    line = one_line(done)
    assert "s3://bucket/cache" in line and "credentials" in line
    assert "AWS_ACCESS_KEY_ID" in line


def test_s3_root_on_a_wrong_endpoint_is_exit_4(tmp_path: Path) -> None:
    env = isolated(
        tmp_path,
        AWS_ENDPOINT_URL=closed_endpoint(),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # moto accepts any
        TFHUB_CACHE_DIR="s3://bucket/cache",
    )
    done, took = run(["resolve", "http://127.0.0.1:9/m/1"], env)
    assert done.returncode == 4, done.stderr
    line = one_line(done)
    assert "s3://bucket/cache" in line and "AWS_ENDPOINT_URL" in line
    assert took < 20


def test_an_archive_handle_on_an_unreachable_store_is_exit_4(tmp_path: Path) -> None:
    env = isolated(
        tmp_path,
        STORAGE_EMULATOR_HOST=closed_endpoint(),
        FSSPEC_GS_TOKEN="anon",
        TFHUB_CACHE_DIR=str(tmp_path / "cache"),
    )
    done, took = run(["resolve", "gs://bucket/models/m.tar.gz"], env)
    assert done.returncode == 4, done.stderr
    assert "gs://bucket/models/m.tar.gz" in one_line(done) and took < 20
    assert not (tmp_path / "cache").exists() or not any(
        n for n in os.listdir(tmp_path / "cache") if n != "CACHEDIR.TAG"
    )


@pytest.mark.slow
def test_a_bucket_that_goes_silent_mid_download_fails_in_bounded_time(
    tmp_path: Path, gcs_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answers the first contact, then never again: without a per-request
    timeout gcsfs would wait forever. HUBCACHE_READ_TIMEOUT bounds each of its tries."""
    activate(gcs_emulator, monkeypatch)  # this process uploads straight to the emulator
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.filesystem().pipe_file(f"{bucket}/m.tar.gz", make_tar(MEMBERS, compression="gz"))
    port = int(gcs_emulator.endpoint.rsplit(":", 1)[1])
    with SilentRelay(port, marker=b"alt=media") as relay:  # metadata yes, data never
        env = isolated(
            tmp_path,
            STORAGE_EMULATOR_HOST=relay.endpoint,
            FSSPEC_GS_TOKEN="anon",
            TFHUB_CACHE_DIR=str(tmp_path / "cache"),
            HUBCACHE_READ_TIMEOUT="0.5",
            HUBCACHE_CONNECT_TIMEOUT="2",
        )
        done, took = run(["resolve", f"gs://{bucket}/m.tar.gz"], env)
        assert relay.silenced >= 1  # it did reach the read, and the read went unanswered
    assert done.returncode == 4, done.stderr
    line = one_line(done)
    assert f"gs://{bucket}/m.tar.gz stopped answering" in line and "HUBCACHE_READ_TIMEOUT" in line
    assert took < 90  # gcsfs's 6 tries of 0.5 s and its backoff (1+2+4+8+16 s)
    left = os.listdir(tmp_path / "cache") if (tmp_path / "cache").exists() else []
    assert [n for n in left if n != "CACHEDIR.TAG"] == []


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_an_unusable_shared_tier_is_one_warning_then_the_origin(
    tmp_path: Path, model_server: ModelServer, scheme: str
) -> None:
    url = model_server.add("/m.tar.gz", make_tar(MEMBERS, compression="gz"))
    store = {
        "gs": {"STORAGE_EMULATOR_HOST": closed_endpoint(), "FSSPEC_GS_TOKEN": "anon"},
        "s3": {"AWS_ENDPOINT_URL": closed_endpoint()},  # and no credentials
    }[scheme]
    env = isolated(
        tmp_path,
        **store,
        HUBCACHE_SHARED_CACHE=f"{scheme}://bucket/tier",
        TFHUB_CACHE_DIR=str(tmp_path / "cache"),
    )
    done, took = run(["resolve", url], env)
    assert done.returncode == 0, done.stderr
    line = one_line(done)
    assert f"{scheme}://bucket/tier" in line and "origin" in line
    assert tree(done.stdout.strip()) == FILES and took < 20


def test_gcsfs_is_imported_without_its_probe_and_the_environment_is_left_alone() -> None:
    """gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT once, at import: hubcache sets it for
    that import (no 60 s bucket probe) and removes it again, so a library user's process
    environment (and its children's) is not changed; a value the user set is kept."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from hubcache._config import load_config\n"
        "from hubcache.fetch.objectstore import client_options\n"
        "client_options('gs://bucket/x', load_config())\n"
        "import gcsfs, gcsfs.core\n"
        "print(gcsfs.GCSFileSystem is gcsfs.core.GCSFileSystem,"
        " os.environ.get('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "None"]  # the plain client; nothing left behind
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "true"  # the user's own choice is kept
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "true"
