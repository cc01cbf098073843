"""Careless inputs, tried as a new user would: each gets one line naming what was wrong and
what to do, with the documented exit code; never a traceback, never a silent wrong result.
One test (or a few) per row of the table in issue 21, in its order.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.emulators import free_port
from tests.support.httpserver import Fault, ModelServer, serve
from tests.support.procs import ARCHIVE, child_env, run_cli


def cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, with this (hermetic) environment plus ``variables``."""
    return run_cli(args, {**os.environ, **variables})


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- 1: a cache root that is a regular file -------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["verify"],
        ["prune", "--older-than", "1d", "--dry-run"],
        ["gc"],
        ["gc", "--dry-run"],
        ["resolve", "http://127.0.0.1:9/m/1"],  # said "[Errno 17] File exists" (x3)
    ],
)
def test_a_cache_root_that_is_a_file_is_exit_6(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"x")
    done = cli(*command, "--cache-dir", str(root))
    assert done.returncode == 6, (done.returncode, done.stderr)
    assert str(root) in one_line(done) and "not a folder" in done.stderr
    assert done.stdout == ""


# a root inside a file: ls, verify, rm... were a NotADirectoryError traceback (x3)
@pytest.mark.parametrize(
    "command", [["ls"], ["verify"], ["rm", "-y", "x"], ["resolve", "http://127.0.0.1:9/m/1"]]
)
def test_a_cache_root_inside_a_file_is_exit_6(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_bytes(b"x")
    root = tmp_path / "a-file" / "cache"
    done = cli(*command, "--cache-dir", str(root))
    assert done.returncode == 6, (done.returncode, done.stderr)
    assert str(root) in one_line(done) and "a file where a folder" in done.stderr
    assert done.stdout == ""


# The plug-in commands (tfhub, kagglehub) and the .pth and switch of each: the same rules.
PLUGINS = [
    ("tfhub", "hubcache-tfhub.pth", "HUBCACHE_TFHUB_PLUGIN"),
    ("kagglehub", "hubcache-kagglehub.pth", "HUBCACHE_KAGGLEHUB_PLUGIN"),
]


# -- 2: enable over a .pth that hubcache did not write ---------------------------------------
@pytest.mark.parametrize(("plugin", "pth", "switch"), PLUGINS)
def test_enable_leaves_a_foreign_pth_alone(
    tmp_path: Path, plugin: str, pth: str, switch: str
) -> None:
    foreign = tmp_path / pth
    foreign.write_text("import somebody_elses_hook\n")
    done = cli(plugin, "enable", "--site-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "not written by hubcache" in one_line(done) and done.stdout == ""
    assert foreign.read_text() == "import somebody_elses_hook\n"


# -- 8: empty folder names --------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["ls", "--cache-dir", ""],
        ["--cache-dir", "", "gc", "--dry-run"],
        ["resolve", "--cache-dir", "", "http://127.0.0.1:9/m/1"],
        *(
            [plugin, action, "--site-dir", ""]
            for plugin in ("tfhub", "kagglehub")
            for action in ("enable", "status", "disable")
        ),
    ],
)
def test_an_empty_folder_name_is_a_usage_error(args: list[str]) -> None:
    done = cli(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "''" in one_line(done) and done.stdout == ""


# -- 11: status for a folder this python does not read ----------------------------------------
@pytest.mark.parametrize(("plugin", "pth", "switch"), PLUGINS)
def test_status_of_a_folder_no_python_here_reads_is_not_active(
    tmp_path: Path, plugin: str, pth: str, switch: str
) -> None:
    assert cli(plugin, "enable", "-q", "--site-dir", str(tmp_path)).returncode == 0
    done = cli(plugin, "status", "--site-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("active: no (this python does not read .pth files from there)")
    assert '"active": false' in cli(plugin, "status", "--json", "--site-dir", str(tmp_path)).stdout


# -- 12: enable while the switch is off -------------------------------------------------------
@pytest.mark.parametrize(("plugin", "pth", "switch"), PLUGINS)
def test_enable_with_the_switch_off_says_so_plainly(
    tmp_path: Path, plugin: str, pth: str, switch: str
) -> None:
    done = cli(plugin, "enable", "--site-dir", str(tmp_path), **{switch: "0"})
    assert done.returncode == 0, done.stderr
    line = one_line(done)
    assert f"enabled, but {switch}=0 keeps it off in this shell" in line
    assert "will use hubcache" not in line
    # the undo it gives names the folder (it said `... disable --site-dir` with no folder) (x3)
    assert f"`hubcache {plugin} disable --site-dir {shlex.quote(str(tmp_path))}`" in line


@pytest.mark.parametrize(("plugin", "pth", "switch"), PLUGINS[:1])
def test_enable_in_another_folder_gives_an_undo_that_works(
    tmp_path: Path, plugin: str, pth: str, switch: str
) -> None:
    done = cli(plugin, "enable", "--site-dir", str(tmp_path))
    undo = f"hubcache {plugin} disable --site-dir {shlex.quote(str(tmp_path))}"
    assert done.returncode == 0 and f"undo with `{undo}`" in one_line(done), done.stderr
    assert cli(*shlex.split(undo)[1:]).returncode == 0 and not (tmp_path / pth).exists()


# -- 13: the common options before the tfhub (or kagglehub) action ----------------------------
@pytest.mark.parametrize(("plugin", "pth", "switch"), PLUGINS)
def test_tfhub_takes_the_common_options_before_its_action(
    tmp_path: Path, plugin: str, pth: str, switch: str
) -> None:
    done = cli(plugin, "-q", "enable", "--site-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.strip().endswith(pth)
    assert cli(plugin, "-q", "status", "--site-dir", str(tmp_path)).returncode == 0


# -- 3 and 10: a mirror that is not a usable HTTP(S) URL ---------------------------------------
@pytest.mark.parametrize(
    "mirror", ["http://a/=http://[::1/", "http://a/=http://b:port/", "http://a/=ftp://b/"]
)
@pytest.mark.parametrize("where", ["option", "variable"])
def test_a_mirror_that_is_not_an_http_url_is_a_usage_error(mirror: str, where: str) -> None:
    if where == "option":
        done = cli("resolve", "--mirror", mirror, "http://a/m")
    else:
        done = cli("resolve", "http://a/m", HUBCACHE_MIRRORS=mirror, HUBCACHE_NO_ORIGIN="1")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert mirror in one_line(done) and done.stdout == ""


# -- 4: stdout that refuses writes -------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["ls"], ["cache-dir"], ["resolve", "{model}"]])
def test_a_full_stdout_is_one_line(tmp_path: Path, command: list[str]) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    args = [a.format(model=model) for a in command]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "hubcache", *args, "--cache-dir", str(tmp_path / "c")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode not in (0, 2), done.stderr
    assert "cannot write the output" in one_line(done)


# -- 6 (and 17, "prefetched 1 handles"): a prefetch list saved with a byte-order mark ----------
def test_a_prefetch_list_with_a_bom_is_read(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + str(model).encode() + b"\r\n")
    done = cli("prefetch", str(listing), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert "\\ufeff" not in done.stderr and "failed: " not in done.stderr
    assert "prefetched 1 handle:" in done.stderr


# -- 7: import of a file that is not an export ------------------------------------------------
# (an unsafe or cut tar said only "archive member '../x' ..." or "the tar archive ends without
# an end-of-archive marker", naming neither the file refused nor what to do (x3))
NOT_AN_ARCHIVE = "not a tar or zip archive"
DAMAGED_EXPORT = ["cannot import {path}: ", "export it again"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"ghp_" + b"s3cr3t" * 8 + b"\n", [NOT_AN_ARCHIVE]),
        (b'{"token": "s3cr3t"}', [NOT_AN_ARCHIVE]),
        (b"", [NOT_AN_ARCHIVE]),
        (make_tar([M("../x", b"x")]), DAMAGED_EXPORT),
        (make_tar([M(f"{'a' * 40}/saved_model.pb", b"x" * 600)], end_marker=False), DAMAGED_EXPORT),
    ],
)
def test_importing_a_wrong_file_never_shows_its_bytes(
    tmp_path: Path, content: bytes, words: list[str]
) -> None:
    wrong = tmp_path / "token.txt"
    wrong.write_bytes(content)
    done = cli("import", str(wrong), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 5, done.stderr
    line = one_line(done)
    assert all(word.format(path=wrong) in line for word in words) and "s3cr3t" not in line


# -- 9: Kaggle credential files that are there but unusable -----------------------------------
@pytest.mark.parametrize(
    "case",
    [
        "kaggle.json folder",
        "token names a folder",
        "empty access_token",
        "token file gone",
        "token with a euro sign",  # a UnicodeEncodeError traceback at the first request (x3)
        "access_token with a euro sign",
    ],
)
def test_an_unusable_kaggle_credential_is_a_usage_error_naming_it(
    tmp_path: Path, case: str
) -> None:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    variables = {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle")}
    if case == "kaggle.json folder":
        named = home / ".kaggle" / "kaggle.json"
        named.mkdir()
    elif case == "token names a folder":
        named = tmp_path / "tokens"
        named.mkdir()
        variables["KAGGLE_API_TOKEN"] = str(named)
    elif case == "empty access_token":
        named = home / ".kaggle" / "access_token"
        named.write_text("\n")
        named.chmod(0o600)
    elif case == "token with a euro sign":
        named = Path("KAGGLE_API_TOKEN")  # the variable, as the line names it
        variables["KAGGLE_API_TOKEN"] = "KGAT_0123\u20ac"
    elif case == "access_token with a euro sign":
        named = home / ".kaggle" / "access_token"
        named.write_text("KGAT_0123\u20ac\n", encoding="utf-8")
        named.chmod(0o600)
    else:
        named = tmp_path / "no-such-token-file"
        variables["KAGGLE_API_TOKEN"] = str(named)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing may leave this machine
    done = cli(
        "resolve",
        "kaggle:google/nnlm/tensorFlow2/en-dim128/1",
        "--cache-dir",
        str(tmp_path / "c"),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        http_proxy=nowhere,
        HTTP_PROXY=nowhere,
        HUBCACHE_RETRIES="0",
        **variables,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert str(named) in one_line(done) and "KGAT" not in done.stderr


# -- 16: gc --grace takes durations as every other option does --------------------------------
@pytest.mark.parametrize("grace", ["1h", "90m", "45s", "2w", "3600"])
def test_gc_grace_takes_a_duration(tmp_path: Path, grace: str) -> None:
    done = cli("gc", "--dry-run", "--grace", grace, "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "would remove 0 items" in done.stderr


# -- 5: verify after kill -9 of a download -----------------------------------------------------
@pytest.mark.parametrize("fix", [False, True], ids=["verify", "verify --fix"])
def test_verify_leaves_a_killed_downloads_debris_to_gc(
    model_server: ModelServer, tmp_path: Path, fix: bool
) -> None:
    root = tmp_path / "c"
    url = model_server.add("/m/1", ARCHIVE, query_required="tf-hub-format=compressed")
    crashed = run_cli(["resolve", url], child_env(root, "mid-download=kill"))
    assert crashed.returncode == -9, crashed.stderr
    assert list(root.glob("*.lock")) and list(root.glob("*.tmp"))  # the debris is there
    done = cli("verify", *(["--fix"] if fix else []), "--cache-dir", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DAMAGED" not in done.stdout and "re-downloading" not in done.stderr
    assert "hubcache gc" in done.stdout and done.stdout.startswith("skipped")
    assert "0 damaged" in done.stderr


# -- 17: messages, one clean line each ---------------------------------------------------------
def test_kaggle_network_advice_is_given_once(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = cli(
        "resolve",
        "kaggle:google/nnlm/tensorFlow2/en-dim128/1",
        "--cache-dir",
        str(tmp_path / "c"),
        HOME=str(tmp_path),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        http_proxy=nowhere,
        HTTP_PROXY=nowhere,
        HUBCACHE_RETRIES="0",
    )
    assert done.returncode == 4, done.stderr
    line = one_line(done)
    assert line.count("check the network") == 1 and "KAGGLE_API_ENVIRONMENT" in line


def test_a_bad_plugin_switch_warns_in_one_line(tmp_path: Path) -> None:
    from tests.test_tfhub_plugin import REPORT, SRC, run_site, write_fake

    site = tmp_path / "site"
    site.mkdir()
    assert cli("tfhub", "enable", "-q", "--site-dir", str(site)).returncode == 0
    fake = write_fake(tmp_path / "fake")
    done = run_site(site, REPORT, Path(SRC), fake, HUBCACHE_TFHUB_PLUGIN="maybe")
    assert done.returncode == 0, done.stderr
    assert "HUBCACHE_TFHUB_PLUGIN='maybe'" in one_line(done)


def test_exported_descriptors_and_manifests_are_not_dated_1970(tmp_path: Path) -> None:
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(make_tar([M("saved_model.pb", b"graph")], compression="gz"))
    root = tmp_path / "c"
    assert cli("resolve", str(archive), "--cache-dir", str(root)).returncode == 0
    out = tmp_path / "export.tar"
    assert cli("export", str(out), "--all", "--cache-dir", str(root)).returncode == 0
    with tarfile.open(out) as tar:
        dates = {m.name: m.mtime for m in tar.getmembers()}
    assert any(n.endswith(".manifest.json") for n in dates)
    assert all(when > 1_000_000_000 for when in dates.values()), dates


# -- 14: kagglehub's cache as ls shows it -------------------------------------------------------
def test_ls_shows_only_usable_kagglehub_versions_and_info_takes_them(tmp_path: Path) -> None:
    variation = tmp_path / "kagglehub" / "models" / "google" / "nnlm" / "tensorFlow2" / "en-dim128"
    (variation / "1").mkdir(parents=True)  # empty, yet marked complete
    (variation / "1.complete").write_text("")
    (variation / "2").mkdir()
    (variation / "2" / "saved_model.pb").write_bytes(b"graph")
    (variation / "2.complete").write_text("")
    variables = {"KAGGLEHUB_CACHE": str(tmp_path / "kagglehub"), "HOME": str(tmp_path)}
    listing = cli("ls", "--cache-dir", str(tmp_path / "c"), **variables)
    assert listing.returncode == 0, listing.stderr
    assert "kagglehub:google/nnlm/tensorFlow2/en-dim128/2" in listing.stdout
    assert "en-dim128/1" not in listing.stdout
    done = cli(
        "info",
        "kagglehub:google/nnlm/tensorFlow2/en-dim128/2",
        "--cache-dir",
        str(tmp_path / "c"),
        **variables,
    )
    assert done.returncode == 0, done.stderr
    assert f"path: {variation / '2'}" in done.stdout and "state: kagglehub" in done.stdout


# -- 15: a size limit that cannot be met yet says so --------------------------------------------
def test_a_size_limit_kept_above_says_why_with_v(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for n in range(3):
        archive = tmp_path / f"m{n}.tar.gz"
        archive.write_bytes(make_tar([M("saved_model.pb", os.urandom(20_000))], compression="gz"))
        done = cli("resolve", "-v", str(archive), "--cache-dir", str(root), HUBCACHE_MAX_SIZE="1kB")
        assert done.returncode == 0, done.stderr
    assert "over HUBCACHE_MAX_SIZE=1 kB" in done.stderr, done.stderr
    assert "just downloaded" in done.stderr and "idle less than 65 min" in done.stderr


# -- docs that disagreed with the code ---------------------------------------------------------
def test_info_root_prints_like_cache_dir(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    info = cli("info", "--root", "--cache-dir", root)
    cache_dir = cli("cache-dir", "--cache-dir", root)
    assert info.returncode == cache_dir.returncode == 0
    assert info.stdout == cache_dir.stdout == root + "\n"
    assert info.stderr == cache_dir.stderr == "hubcache: chosen by --cache-dir\n"


def test_ls_help_does_not_read_like_a_default() -> None:
    done = cli("ls", "--help")
    assert "(30d)" not in done.stdout and "default: all" in done.stdout


def test_a_missing_extra_is_exit_2_for_serve_and_stores_alike(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['fsspec'] = sys.modules['aiohttp'] = None  # as if no extra were installed\n"
        "from hubcache.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for args in (["resolve", "gs://bucket/m"], ["serve", str(tmp_path)]):
        done = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (args, done.stderr)
        assert "pip install 'hubcache[" in one_line(done)


# -- a cache root on a storage scheme hubcache does not know (x3) -----------------------------
@pytest.mark.parametrize(
    "command",
    [
        # bogus:// made fsspec raise "Protocol not known"; ftp:// connected (to a discard
        # port here) in fsspec's constructor, with no deadline of ours: both were tracebacks
        ["resolve", "--cache-dir", "bogus://bucket/cache", "http://127.0.0.1:9/m/1"],
        ["ls", "--cache-dir", "ftp://127.0.0.1:9/cache"],
    ],
)
def test_a_root_on_an_unknown_storage_scheme_is_a_usage_error(command: list[str]) -> None:
    done = cli(*command)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "unsupported storage scheme" in one_line(done) and "gs://" in done.stderr


# -- JSON nested deeper than the parser's recursion limit (x3) --------------------------------
DEEP_JSON = "[" * 5000 + "]" * 5000  # json.loads raises RecursionError, not ValueError


def test_a_manifest_nested_too_deeply_is_a_damaged_entry(tmp_path: Path) -> None:
    key = "ab" * 20
    (tmp_path / key).mkdir()
    (tmp_path / key / "saved_model.pb").write_bytes(b"x")
    (tmp_path / f"{key}.manifest.json").write_text(DEEP_JSON)
    done = cli("ls", "--cache-dir", str(tmp_path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "damaged" in done.stdout


def test_headers_nested_too_deeply_are_a_usage_error(tmp_path: Path) -> None:
    done = cli(
        "resolve",
        "http://127.0.0.1:9/m/1",
        "--cache-dir",
        str(tmp_path),
        HUBCACHE_HTTP_HEADERS=DEEP_JSON,
    )
    assert done.returncode == 2, done.stderr
    assert "HUBCACHE_HTTP_HEADERS" in one_line(done)


# -- verify --fix: a fix whose download fails does not stop the others (x3) -------------------
def test_a_failed_fix_does_not_stop_the_others(model_server: ModelServer, tmp_path: Path) -> None:
    fixable = serve(model_server, "/fixable/1", ARCHIVE)
    # a handle whose key sorts first, so its failure used to end verify before the other
    lost = next(
        url
        for i in range(100)
        if hubcache.cache_key(url := serve(model_server, f"/lost/{i}", ARCHIVE))
        < hubcache.cache_key(fixable)
    )
    env = child_env(tmp_path)
    for url in (lost, fixable):
        assert run_cli(["resolve", url], env).returncode == 0
        (tmp_path / hubcache.cache_key(url) / "saved_model.pb").unlink()
    model_server.faults(urlsplit(lost).path, Fault(status=404))
    done = run_cli(["verify", "--fix"], env)
    assert done.returncode == 3, done.stderr  # the first failure's code, as prefetch gives
    assert "Traceback" not in done.stderr and "answered 404" in done.stderr
    assert f"fixed    damaged     {fixable}" in done.stdout
    assert f"DAMAGED  damaged     {lost}" in done.stdout


# -- rm and prune --keep: names as every command takes them (x3) -------------------------------
def test_an_entry_named_twice_is_exported_and_removed_once(
    model_server: ModelServer, tmp_path: Path
) -> None:
    url = serve(model_server, "/twice/1", ARCHIVE)
    env = child_env(tmp_path)
    assert run_cli(["resolve", url], env).returncode == 0
    key = hubcache.cache_key(url)
    exported = run_cli(["export", str(tmp_path / "out.tar"), url, key], env)  # it wrote 2
    assert exported.returncode == 0 and exported.stdout == url + "\n", exported.stderr
    with tarfile.open(tmp_path / "out.tar") as tar:
        names = tar.getnames()
    assert len(names) == len(set(names)) and "exported 1 entry to" in exported.stderr
    done = run_cli(["rm", "-y", url, key, key[:12]], env)  # it said "remove 3 entries"
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("remove 1 entry,") and done.stdout.count(key[:12]) == 1
    assert "removed 1 entry," in done.stderr


def test_prune_keep_naming_no_entry_is_exit_3(model_server: ModelServer, tmp_path: Path) -> None:
    # a typo in --keep was ignored, so the entry meant to be kept could go
    url = serve(model_server, "/kept/1", ARCHIVE)
    env = child_env(tmp_path)
    assert run_cli(["resolve", url], env).returncode == 0
    done = run_cli(["prune", "--older-than", "0s", "--keep", url + "x", "--dry-run"], env)
    assert done.returncode == 3, done.stderr
    assert f"{url}x is not in the cache" in one_line(done)


# -- prefetch shows each handle as every other line does (x3) ----------------------------------
def test_prefetch_never_shows_a_password_or_a_control_character(
    model_server: ModelServer, tmp_path: Path
) -> None:
    url = serve(model_server, "/secret/1", ARCHIVE)
    with_password = url.replace("://", "://bob:s3cr3t@") + "x"  # a 404: on the failed line too
    listing = tmp_path / "list.txt"
    listing.write_text(f"{with_password}\n\x1b]0;title\x07{url}\n", encoding="utf-8")
    done = run_cli(["prefetch", str(listing)], child_env(tmp_path / "c"))
    assert done.returncode == 3, done.stderr
    assert "s3cr3t" not in done.stderr and "bob:***@" in done.stderr
    assert "\x1b" not in done.stderr and "\\x1b]0;title" in done.stderr


def test_verify_fix_keeps_an_entry_whose_password_it_cannot_know(
    model_server: ModelServer, tmp_path: Path
) -> None:
    # the manifest keeps user:***@: re-downloading that sent "***" into another key, after the
    # entry was removed, and said "fixed" (x3)
    url = serve(model_server, "/pw/1", ARCHIVE).replace("://", "://bob:s3cr3t@")
    env = child_env(tmp_path)
    assert run_cli(["resolve", url], env).returncode == 0
    key = hubcache.cache_key(url)
    (tmp_path / key / "saved_model.pb").unlink()
    done = run_cli(["verify", "--fix"], env)
    assert done.returncode == 5, done.stderr
    assert f"cannot re-download {key}: the password" in done.stderr and "s3cr3t" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "." not in p.name) == [key]


# -- the demo behind a company proxy (x3) --------------------------------------------------
def test_the_demo_runs_with_a_proxy_in_the_environment(tmp_path: Path) -> None:
    # the proxy cannot reach the demo's own 127.0.0.1 host: it was a ProxyError, exit 4
    proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens: any use of it fails
    done = cli("demo", "--cache-dir", str(tmp_path), http_proxy=proxy, HUBCACHE_RETRIES="0")
    assert done.returncode == 0, done.stderr
    assert "cold resolve:" in done.stdout


# -- a local "archive" that is a folder or a FIFO (x3) ----------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("command", ["resolve", "import"])
def test_an_archive_path_that_is_a_fifo_is_refused_at_once(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "model.tar.gz"
    os.mkfifo(fifo)  # opening it waited for a writer: a hang
    done = cli(command, str(fifo), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2, done.stderr
    assert "is a pipe or a device, not an archive file" in one_line(done)


def test_an_archive_path_that_is_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "model.tar.gz"
    folder.mkdir()  # it was "cannot read ...: Is a directory", exit 4 (network)
    done = cli("resolve", str(folder), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2, done.stderr
    assert "is a folder, not an archive file" in one_line(done)


def test_one_attempt_is_not_counted_as_attempts(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: refused at once
    url = f"http://127.0.0.1:{port}/m.tar.gz"
    done = cli("resolve", url, "--cache-dir", str(tmp_path), HUBCACHE_RETRIES="0")
    assert done.returncode == 4, done.stderr
    assert "after 1 attempt:" in one_line(done)  # it said "after 1 attempts" (x3)


# -- a cache root with blanks around it (x3) ----------------------------------------------------
@pytest.mark.parametrize("root", [" {}", "{} ", "   "])
def test_a_root_with_blanks_around_it_is_a_usage_error(tmp_path: Path, root: str) -> None:
    # " /data" made a cache in "./ /data" (a folder named " " here), "/data " another folder
    named = root.format(tmp_path / "c")
    done = run_cli(["ls"], {**os.environ, "TFHUB_CACHE_DIR": named})
    assert done.returncode == 2, done.stderr
    assert f"TFHUB_CACHE_DIR={named!r} begins or ends with white space" in one_line(done)


# -- a lock left empty by a process killed as it took it (x3) ----------------------------------
def test_an_empty_lock_is_broken_within_seconds(model_server: ModelServer, tmp_path: Path) -> None:
    url = serve(model_server, "/empty-lock/1", ARCHIVE)
    (tmp_path / f"{hubcache.cache_key(url)}.lock").write_bytes(b"")  # names no holder
    started = time.monotonic()
    done = run_cli(["resolve", url], child_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30  # it waited out the whole lease: 120 s
    assert "the lock is empty" in done.stderr


# -- HUBCACHE_HTTP_HEADERS that http.client cannot send (x3) ----------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        '{"X": "\u20ac"}',
        '{"\u03a9": "x"}',
        '{"": "x"}',
        '{"X:Y": "z"}',
        '{"A": "\\u0000"}',
        '{"Range": "bytes=5-"}',  # accepted, then every archive was "not an archive" (exit 5)
        '{"accept-encoding": "gzip"}',
        '{"Host": "elsewhere"}',
    ],
)
def test_headers_http_cannot_send_are_a_usage_error(
    model_server: ModelServer, tmp_path: Path, headers: str
) -> None:
    url = serve(model_server, "/headers/1", ARCHIVE)  # each was a traceback at the request
    done = run_cli(["resolve", url], child_env(tmp_path, HUBCACHE_HTTP_HEADERS=headers))
    assert done.returncode == 2, done.stderr
    assert one_line(done).startswith("hubcache: error: HUBCACHE_HTTP_HEADERS: ")


# -- a proxy variable urllib3 cannot use (x3) -------------------------------------------------
@pytest.mark.parametrize(
    "proxy", ["garbage", "ftp://127.0.0.1:1", "http://[::1", "http://u:pw@:80"]
)
def test_an_unusable_proxy_variable_is_a_usage_error(
    model_server: ModelServer, tmp_path: Path, proxy: str
) -> None:
    url = serve(model_server, "/proxied/1", ARCHIVE)  # each was a traceback at the request
    done = run_cli(["resolve", url], child_env(tmp_path, http_proxy=proxy, no_proxy=""))
    assert done.returncode == 2, done.stderr
    assert "is not an http:// or https:// proxy URL" in one_line(done) and "pw" not in done.stderr


def test_prefetch_of_a_tar_is_not_a_text_file(tmp_path: Path) -> None:
    listing = tmp_path / "models.tar"  # valid UTF-8 (NULs and ASCII): it passed for text
    listing.write_bytes(make_tar([M("saved_model.pb", b"x")]))
    done = cli("prefetch", str(listing), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2, done.stderr
    line = one_line(done)  # it was one line of some 1500 characters quoting the tar's header
    assert "is not a text file (it holds NUL bytes)" in line and len(line) < 300


def test_a_sha256_pin_on_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"x")
    done = cli("resolve", str(folder), "--sha256", "a" * 64, "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2, done.stderr  # the pin was silently never checked (x3)
    assert "is a folder, used as it is" in one_line(done) and done.stdout == ""


def test_a_file_replaced_by_a_folder_is_named_so(tmp_path: Path) -> None:
    archive = tmp_path / "m.tar"
    make_tar([M("saved_model.pb", b"x"), M("empty.txt", b"")], dest=archive)
    done = cli("resolve", str(archive), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    model = Path(done.stdout.strip())
    (model / "empty.txt").unlink()
    (model / "empty.txt").mkdir()  # it read "file empty.txt has 4096 bytes instead of 0" (x3)
    listed = cli("ls", "--cache-dir", str(tmp_path / "c"))
    assert "damaged (file empty.txt is not a regular file)" in listed.stdout, listed.stdout
