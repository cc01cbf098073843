"""Cache root selection (docs/configuration.md) and environment validation, read on every call."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hubcache
from hubcache._config import load_config


def test_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "env"))
    config = load_config(cache_dir=str(tmp_path / "arg"))
    assert (config.root, config.root_source) == (str(tmp_path / "arg"), "argument")


def test_env_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "one"))
    assert hubcache.cache_dir() == str(tmp_path / "one")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "two"))
    assert hubcache.cache_dir() == str(tmp_path / "two")


def test_empty_env_falls_through_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFHUB_CACHE_DIR", "")
    config = load_config()
    assert config.root == os.path.join(tempfile.gettempdir(), "tfhub_modules")
    assert config.root_source == "default"


def test_tilde_and_vars_are_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SUB", "models")
    monkeypatch.setenv("TFHUB_CACHE_DIR", "~/$SUB/cache")
    assert hubcache.cache_dir() == str(tmp_path / "models" / "cache")


def test_urls_are_roots_as_given() -> None:
    assert load_config(cache_dir="gs://bucket/prefix").root == "gs://bucket/prefix"


def test_absl_flag_is_used_when_defined_and_never_defined_by_us(tmp_path: Path) -> None:
    pytest.importorskip("absl")
    script = f"""
import sys
from absl import flags
import hubcache
assert "tfhub_cache_dir" not in flags.FLAGS, "hubcache must not define the flag implicitly"
hubcache.define_absl_flags()
hubcache.define_absl_flags()  # idempotent
flags.FLAGS(["prog", "--tfhub_cache_dir={tmp_path / "flag"}"])
print(hubcache.cache_dir())
"""
    env = {k: v for k, v in os.environ.items() if k != "TFHUB_CACHE_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "flag")


@pytest.mark.parametrize("value", ["auto", "COMPRESSED", "Uncompressed"])
def test_load_format_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", value)
    assert load_config().load_format == value.upper()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TFHUB_MODEL_LOAD_FORMAT", "zipped"),
        ("HUBCACHE_LOCK_TIMEOUT", "soon"),
        ("HUBCACHE_RETRIES", "-1"),
    ],
)
def test_bad_settings_raise_configuration_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(hubcache.ConfigurationError, match=name):
        load_config()


def test_cert_validation_opt_out_has_tensorflow_hub_semantics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value, verify in [("true", False), ("TRUE", True), ("1", True), ("yes", True)]:
        monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", value)
        assert load_config().verify_tls is verify
