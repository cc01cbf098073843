"""Cache root selection (docs/configuration.md) and environment validation, read on every call."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hubcache
from hubcache._config import load_config
from tests.support.procs import run_cli


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


def test_a_bad_load_format_is_refused_by_the_calls_that_download_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hubcache._config import check_load_format

    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "zipped")
    config = load_config()  # ls, rm, gc... build a Config and never use the format
    with pytest.raises(hubcache.ConfigurationError, match="TFHUB_MODEL_LOAD_FORMAT='zipped'"):
        check_load_format(config)
    with pytest.raises(hubcache.ConfigurationError, match="TFHUB_MODEL_LOAD_FORMAT"):
        hubcache.resolve("https://example.invalid/m/1", cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_cert_validation_opt_out_has_tensorflow_hub_semantics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value, verify in [("true", False), ("", True), ("false", True), ("0", True), ("no", True)]:
        monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", value)
        assert load_config().verify_tls is verify


# -- every setting is validated by one parser per kind (issue 10) ---------------------------

# (variable, a value it accepts, out-of-range values) for every numeric setting
NUMERIC = [
    ("HUBCACHE_LOCK_TIMEOUT", "0", ["-1"]),
    ("HUBCACHE_LOCK_LEASE", "30", ["0", "-5"]),
    # 1e300 is finite but overflowed socket.settimeout() into a traceback; more than a day
    # of silence is a typo
    ("HUBCACHE_CONNECT_TIMEOUT", "2.5", ["0", "-1", "1e300", "86401"]),
    ("HUBCACHE_READ_TIMEOUT", "7", ["0", "-1", "1e300", "86401"]),
    ("HUBCACHE_STALL_TIMEOUT", "0", ["-1"]),
    ("HUBCACHE_MIN_SPEED", "0", ["-1"]),
    ("HUBCACHE_RETRIES", "0", ["-1", "1.5", "101"]),
    ("HUBCACHE_CONNECTIONS", "4", ["-1", "2.5", "9"]),
    ("HUBCACHE_RETRY_BACKOFF", "0", ["-0.5", "61"]),
    ("HUBCACHE_STORE_TIMEOUT", "3", ["0", "-1", "1e300", "86401"]),
    ("HUBCACHE_MAX_BYTES", "1000", ["0", "-1", "1.5"]),
    ("HUBCACHE_MAX_MEMBERS", "10", ["0", "-1"]),
    ("HUBCACHE_MAX_NAME_LENGTH", "100", ["0"]),
    ("HUBCACHE_MAX_DEPTH", "8", ["0"]),
    ("HUBCACHE_MAX_RATIO", "50.5", ["0", "-1"]),
    ("HUBCACHE_MAX_SIZE", "20GB", ["-1"]),
]
NOT_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "soon", "0x10", "1_000"]
FLAGS = [
    "HUBCACHE_OFFLINE",
    "HUBCACHE_FSYNC",
    "HUBCACHE_NO_ORIGIN",
    "HUBCACHE_KAGGLEHUB",
    "TFHUB_DOWNLOAD_PROGRESS",
]


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, bad) for name, _, bads in NUMERIC for bad in [*bads, *NOT_NUMBERS]],
)
def test_every_numeric_setting_rejects_nan_inf_and_out_of_range(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(hubcache.ConfigurationError) as info:
        load_config()
    message = str(info.value)
    assert name in message and repr(value) in message and "\n" not in message


@pytest.mark.parametrize(("name", "value"), [(name, good) for name, good, _ in NUMERIC])
def test_every_numeric_setting_accepts_a_sane_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    field, parsed = PARSED[name]
    before = operator.attrgetter(field)(load_config())
    monkeypatch.setenv(name, value)
    after = operator.attrgetter(field)(load_config())
    assert (after, type(after)) == (parsed, type(parsed))
    assert after != before  # the value reached its field: the default would not pass


# the Config field each NUMERIC value lands in, and what it parses to
PARSED: dict[str, tuple[str, object]] = {
    "HUBCACHE_LOCK_TIMEOUT": ("lock_timeout", 0.0),
    "HUBCACHE_LOCK_LEASE": ("lock_lease", 30.0),
    "HUBCACHE_CONNECT_TIMEOUT": ("connect_timeout", 2.5),
    "HUBCACHE_READ_TIMEOUT": ("read_timeout", 7.0),
    "HUBCACHE_STALL_TIMEOUT": ("stall_timeout", 0.0),
    "HUBCACHE_MIN_SPEED": ("min_speed", 0.0),
    "HUBCACHE_RETRIES": ("retries", 0),
    "HUBCACHE_CONNECTIONS": ("connections", 4),
    "HUBCACHE_RETRY_BACKOFF": ("backoff", 0.0),
    "HUBCACHE_STORE_TIMEOUT": ("store_timeout", 3.0),
    "HUBCACHE_MAX_BYTES": ("limits.max_total_bytes", 1000),
    "HUBCACHE_MAX_MEMBERS": ("limits.max_members", 10),
    "HUBCACHE_MAX_NAME_LENGTH": ("limits.max_name_length", 100),
    "HUBCACHE_MAX_DEPTH": ("limits.max_depth", 8),
    "HUBCACHE_MAX_RATIO": ("limits.max_ratio", 50.5),
    "HUBCACHE_MAX_SIZE": ("max_size", 20 * 1000**3),
}


def test_every_numeric_setting_has_its_expected_value() -> None:
    assert sorted(PARSED) == sorted(name for name, _, _ in NUMERIC)


def test_numeric_settings_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, _ in NUMERIC:
        monkeypatch.setenv(name, value)
    config = load_config()
    assert (config.lock_timeout, config.lock_lease, config.connect_timeout) == (0, 30, 2.5)
    assert (config.retries, config.connections, config.backoff) == (0, 4, 0)
    assert config.store_timeout == 3 and config.max_size == 20 * 1000**3
    assert (config.limits.max_total_bytes, config.limits.max_ratio) == (1000, 50.5)
    assert isinstance(config.limits.max_members, int) and config.limits.max_depth == 8


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("value", ["maybe", "2", "yes please", "tru"])
def test_every_yes_no_setting_rejects_what_is_neither(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(hubcache.ConfigurationError) as info:
        load_config()
    assert name in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("name", FLAGS)
def test_every_yes_no_setting_accepts_both_spellings(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    attribute = {
        "HUBCACHE_OFFLINE": "offline",
        "HUBCACHE_FSYNC": "fsync",
        "HUBCACHE_NO_ORIGIN": "no_origin",
        "HUBCACHE_KAGGLEHUB": "kagglehub",
        "TFHUB_DOWNLOAD_PROGRESS": "progress",
    }[name]
    for value, expected in [("1", True), ("Yes", True), (" on ", True), ("0", False)]:
        monkeypatch.setenv(name, value)
        assert getattr(load_config(), attribute) is expected
    monkeypatch.setenv(name, "FALSE")
    assert getattr(load_config(), attribute) is False


def test_cert_validation_rejects_a_yes_that_tensorflow_hub_would_not_honour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tensorflow_hub turns checks off only for the exact string "true": "1" or "TRUE" would
    # silently keep verifying there, so we name the mistake instead of guessing either way.
    for value in ["1", "TRUE", "yes", "maybe"]:
        monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", value)
        with pytest.raises(hubcache.ConfigurationError, match="exactly 'true'"):
            load_config()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HUBCACHE_OFFLINE", "maybe"),
        ("HUBCACHE_RETRIES", "nan"),
        ("HUBCACHE_READ_TIMEOUT", "inf"),
        ("HUBCACHE_CONNECT_TIMEOUT", "0"),
        ("HUBCACHE_LOCK_LEASE", "nan"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2_before_any_download(
    model_server: object, cache_root: Path, name: str, value: str
) -> None:
    from tests.support.httpserver import ModelServer

    assert isinstance(model_server, ModelServer)
    url = model_server.add("/m.tar.gz", b"never asked for")
    env = {**os.environ, name: value}
    done = run_cli(["resolve", url], env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and name in done.stderr, done.stderr
    assert model_server.requests == [] and list(cache_root.iterdir()) == []


def test_the_plugin_switch_uses_the_same_yes_no_parser() -> None:
    from hubcache._config import tfhub_plugin_enabled

    assert tfhub_plugin_enabled({}) is True and tfhub_plugin_enabled({"X": "1"}) is True
    assert tfhub_plugin_enabled({"HUBCACHE_TFHUB_PLUGIN": "off"}) is False
    with pytest.raises(hubcache.ConfigurationError, match="HUBCACHE_TFHUB_PLUGIN"):
        tfhub_plugin_enabled({"HUBCACHE_TFHUB_PLUGIN": "maybe"})


def test_load_config_reads_only_the_variables_its_memo_is_keyed_by() -> None:
    """load_config is memoised by the text of CONFIG_VARIABLES: a variable it reads that is
    not in that list would be read once per process and then silently ignored."""
    from collections.abc import Iterator, Mapping

    from hubcache._config import CONFIG_VARIABLES

    class Recording(Mapping[str, str]):
        def __init__(self) -> None:
            self.read: set[str] = set()

        def __getitem__(self, name: str) -> str:
            self.read.add(name)
            raise KeyError(name)

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

    env = Recording()
    load_config(environ=env)
    assert env.read and env.read <= set(CONFIG_VARIABLES), env.read - set(CONFIG_VARIABLES)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HUBCACHE_OFFLINE", "maybe"),
        ("HUBCACHE_RETRIES", "nan"),
        ("HUBCACHE_MIRRORS", "garbage"),
        ("TFHUB_MODEL_LOAD_FORMAT", "bogus"),
        ("HUBCACHE_MAX_SIZE", "lots"),
    ],
)
def test_a_bad_setting_fails_on_a_warm_hit_as_on_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """The same call must not succeed while the model is cached and fail the day the cache
    is cold: every setting is checked on every call (memoised, so a hit stays cheap)."""
    archive = tmp_path / "m.tar"
    from tests.support.procs import ARCHIVE

    archive.write_bytes(ARCHIVE)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    hubcache.resolve(str(archive))  # now cached
    hubcache.resolve(str(archive))  # and in this process's memo of complete entries
    monkeypatch.setenv(variable, value)
    with pytest.raises(hubcache.ConfigurationError, match=variable):
        hubcache.resolve(str(archive))
    monkeypatch.delenv(variable)
    hubcache.resolve(str(archive))  # fixed: the memo does not keep the bad answer


def test_a_bad_mirror_argument_fails_on_a_warm_hit_in_the_cli(tmp_path: Path) -> None:
    from tests.support.procs import ARCHIVE, child_env

    archive = tmp_path / "m.tar"
    archive.write_bytes(ARCHIVE)
    env = child_env(tmp_path / "cache")
    assert run_cli(["resolve", str(archive)], env).returncode == 0
    result = run_cli(["resolve", "--mirror", "garbage", str(archive)], env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "garbage" in result.stderr


def test_an_empty_cache_dir_argument_is_refused_not_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``cache_dir=""`` (an unset variable in a script) must not quietly mean the shared
    default root, nor TFHUB_CACHE_DIR: the CLI refuses ``--cache-dir ''`` the same way."""
    monkeypatch.setenv("TFHUB_CACHE_DIR", "/never/used")
    for empty in ("", "  "):
        with pytest.raises(hubcache.ConfigurationError, match="cache_dir is empty"):
            hubcache.resolve("https://tfhub.dev/google/m/1", cache_dir=empty)
        with pytest.raises(hubcache.ConfigurationError, match="cache_dir is empty"):
            hubcache.cache_dir(empty)
