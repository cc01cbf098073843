"""The CLI as a careless user meets it: one line and the documented exit code for every bad
input, options where people put them, a reader that goes away early, help that answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.httpserver import ModelServer
from tests.support.procs import run_cli

ARCHIVE = make_tar([M("saved_model.pb", b"graph"), M("variables/v", b"0" * 5000)], compression="gz")
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The result failed with ``code`` and exactly one ``hubcache: error:`` line naming
    ``words``; no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hubcache: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_export_into_a_missing_folder_is_one_line_exit_2(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = model_server.add("/a/1", ARCHIVE)
    hubcache.resolve(url)
    before = listing(cache_root)
    out = tmp_path / "missing" / "dir" / "x.tar"
    result = run_cli(["export", str(out), "--all"])
    one_error_line(result, 2, str(out), "No such file or directory")
    assert listing(cache_root) == before
    assert not (tmp_path / "missing").exists()


def test_prefetch_of_a_binary_file_is_one_line_exit_2(cache_root: Path, tmp_path: Path) -> None:
    binary = tmp_path / "models.bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    result = run_cli(["prefetch", str(binary)])
    one_error_line(result, 2, str(binary), "not a text file")
    assert listing(cache_root) == []


def closed_pipe_write_end() -> int:
    """A pipe whose reader has already gone: the first write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("command", ["ls", "resolve"])
def test_stdout_closed_early_exits_quietly(
    command: str, model_server: ModelServer, cache_root: Path
) -> None:
    a = model_server.add("/a/1", ARCHIVE)
    b = model_server.add("/b/1", ARCHIVE)
    hubcache.resolve(a)
    args = ["ls"] if command == "ls" else ["resolve", a, b]
    write = closed_pipe_write_end()
    try:
        result = run_cli([*args], stdout=write)
    finally:
        os.close(write)
    assert result.returncode == EXIT_PIPE
    assert result.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    # resolve stops at the first path it cannot print: b was never fetched
    assert model_server.count("/b/1") == 0


def test_global_options_before_and_after_the_command(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    url = model_server.add("/a/1", ARCHIVE)
    other = tmp_path / "other"
    before = run_cli(["--cache-dir", str(other), "-v", "resolve", url])
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == str(other / hubcache.cache_key(url))
    assert "downloading" in before.stderr  # -v before the command took effect
    listed = run_cli(["--cache-dir", str(other), "ls", "--json"])
    assert listed.returncode == 0, listed.stderr
    assert f'"root": "{other}"' in listed.stdout
    # after the command, it wins over the one before it
    after = run_cli(
        ["--cache-dir", str(tmp_path / "ignored"), "resolve", url, "--cache-dir", str(other)]
    )
    assert after.stdout.strip() == str(other / hubcache.cache_key(url))
    assert not (tmp_path / "ignored").exists()
    quiet = run_cli(["-q", "cache-dir"])
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_an_unknown_option_prints_the_commands_usage(cache_root: Path) -> None:
    result = run_cli(["resolve", "--bogus", "x"])
    assert result.returncode == 2
    assert result.stderr.startswith("usage: hubcache resolve ")
    assert "unrecognized arguments: --bogus" in result.stderr


def test_help_lists_exit_codes_environment_and_defaults() -> None:
    top = run_cli(["--help"])
    assert top.returncode == 0
    for text in ("exit codes", "130", "TFHUB_CACHE_DIR", "HUBCACHE_OFFLINE", "docs/cli.md"):
        assert text in top.stdout, text
    declined = run_cli(["rm", "--help"]).stdout
    assert "exit codes" in declined and "nothing removed" in declined
    gc = run_cli(["gc", "--help"]).stdout
    assert "default: 3600" in gc


def test_a_bad_load_format_only_stops_the_commands_that_use_it(
    model_server: ModelServer, cache_root: Path
) -> None:
    bad = {"TFHUB_MODEL_LOAD_FORMAT": "foo"}
    assert run_cli(["ls"], extra_env=bad).returncode == 0
    assert run_cli(["cache-dir"], extra_env=bad).returncode == 0
    url = model_server.add("/a/1", ARCHIVE)
    one_error_line(run_cli(["resolve", url], extra_env=bad), 2, "TFHUB_MODEL_LOAD_FORMAT='foo'")
    assert listing(cache_root) == []


@pytest.mark.parametrize(
    ("url", "extra"), [("gs://bucket/m", "gcs"), ("s3://bucket/m", "s3"), ("memory://m", "remote")]
)
def test_a_missing_extra_is_named_at_once(cache_root: Path, url: str, extra: str) -> None:
    code = (
        "import sys\n"
        "sys.modules['fsspec'] = None  # as if no extra were installed\n"
        "from hubcache.cli.main import main\n"
        f"sys.exit(main(['resolve', {url!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    line = one_error_line(result, 2, f"pip install 'hubcache[{extra}]'")
    assert line.count("pip install") == 1


def test_demo_says_it_removes_its_temporary_cache() -> None:
    result = run_cli(["demo"])
    assert result.returncode == 0, result.stderr
    root = next(
        line.split(": ", 1)[1].split(" ", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith("cache root: ")
    )
    assert "temporary" in result.stdout and "--cache-dir" in result.stdout
    assert f"removed the temporary cache root {root}" in result.stdout
    assert not os.path.exists(root)


def test_demo_keeps_a_cache_dir_it_was_given(tmp_path: Path) -> None:
    result = run_cli(["demo", "--cache-dir", str(tmp_path / "kept")])
    assert result.returncode == 0, result.stderr
    assert f"kept the cache root {tmp_path / 'kept'}" in result.stdout
    assert (tmp_path / "kept" / "CACHEDIR.TAG").exists()


def test_cache_dir_says_it_fell_back_and_why(tmp_path: Path) -> None:
    """A default ``<tmp>/tfhub_modules`` writable by others is not used: say so, and why."""
    shared = tmp_path / "tfhub_modules"
    shared.mkdir()
    shared.chmod(0o777)
    result = run_cli(["cache-dir"], extra_env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    fallback = f"{shared}-{os.geteuid()}"
    assert result.stdout.strip() == fallback
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hubcache: fell back to {fallback}")
    assert "writable by other users" in last
    assert "chosen by" not in result.stderr


def test_counted_nouns_agree() -> None:
    from hubcache.cli.common import entries, plural

    assert [entries(n) for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]
    assert plural(1, "item") == "1 item" and plural(3, "item") == "3 items"


def test_docs_cli_describes_every_command_and_exit_code() -> None:
    import re

    from hubcache.cli.common import EXIT_CODES
    from hubcache.cli.main import build_parser

    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"### `hubcache {command}" in text, command
    for code in re.findall(r"^  (\d+) ", EXIT_CODES, flags=re.MULTILINE):
        assert f"\n| {code} | " in text, code


def test_export_never_replaces_something_that_is_not_a_regular_file(
    model_server: ModelServer, cache_root: Path, tmp_path: Path
) -> None:
    """OUT.tar is renamed into place at the end: over a FIFO, a device or a folder that
    rename would destroy what was there, so such an OUT is refused before any work."""
    hubcache.resolve(model_server.add("/a/1", ARCHIVE))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_error_line(run_cli(["export", str(fifo), "--all"]), 2, str(fifo), "not a regular file")
    assert fifo.is_fifo()
    assert sorted(os.listdir(tmp_path)) == sorted(["pipe", cache_root.name])
    regular = tmp_path / "old.tar"
    regular.write_bytes(b"an older export")
    assert (
        run_cli(["export", str(regular), "--all"]).returncode == 0
    )  # a file is replaced, as asked
    assert regular.read_bytes()[:15] != b"an older export"


def test_bad_inputs_to_import_gc_and_entry_names_are_usage_errors(
    cache_root: Path, tmp_path: Path
) -> None:
    one_error_line(run_cli(["import", str(tmp_path)]), 2, str(tmp_path), "is a directory")
    for grace in ("-5", "nan", "inf", "soon"):
        result = run_cli(
            ["gc", "--grace", grace]
        )  # argparse's form: the usage, then one error line
        assert result.returncode == 2 and result.stderr.startswith("usage: hubcache gc ")
        assert result.stderr.splitlines()[-1] == (
            f"hubcache gc: error: argument --grace: {grace!r} is not a duration; use e.g. "
            "45s, 90m, 12h, 30d or 2w"
        )
    for command in ("info", "verify", "rm"):
        one_error_line(run_cli([command, "", "--yes" if command == "rm" else "-q"]), 2, "empty")
    assert listing(cache_root) == []


def test_main_called_in_process_gives_the_logging_tree_back() -> None:
    """A program that calls ``hubcache.cli.main.main()`` in its own process (a notebook, a
    wrapper, a test) keeps its logging: a ``-q`` run must not silence the library's
    warnings, nor leave a handler behind, for the rest of that process."""
    import logging

    from hubcache.cli.main import main

    library = logging.getLogger("hubcache")
    before = (list(library.handlers), library.level, library.propagate)
    assert main(["-q", "cache-dir"]) == 0
    assert main(["-vv", "cache-dir"]) == 0
    assert (list(library.handlers), library.level, library.propagate) == before
    assert logging.getLogger("hubcache.serve.archives").isEnabledFor(logging.WARNING)
