"""``hubcache serve DIR`` (static mode) as users run it: what it serves, what it refuses,
and one line with the documented exit code for every bad option."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import hubcache
from tests.support.archives import M, make_tar
from tests.support.mirror import ServeProcess
from tests.support.procs import run_cli

ARCHIVE = make_tar([M("saved_model.pb", b"graph"), M("variables/v", b"0" * 5000)], compression="gz")
BIG = make_tar([M("saved_model.pb", os.urandom(4_000_000))], compression=None)


def run(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    """``hubcache ARGS``; ``code`` runs first in the process (e.g. to hide a module)."""
    script = f"{code}\nimport sys\nfrom hubcache.cli.main import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    (root / "m" / "1.tar.gz").write_bytes(ARCHIVE)
    (root / "big.tar").write_bytes(BIG)
    return root


def test_symlinks_out_of_dir_are_never_served(served: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    (secret / "inner").mkdir(parents=True)
    (secret / "inner" / "key.txt").write_text("do not serve")
    (tmp_path / "outside.tar.gz").write_bytes(ARCHIVE)
    os.symlink(secret, served / "evil")  # the report: ln -s /etc DIR/evil
    os.symlink(tmp_path / "outside.tar.gz", served / "link.tar.gz")
    os.symlink(tmp_path / "outside.tar.gz", served / "m" / "2.tar.gz")
    os.symlink(served / "m" / "1.tar.gz", served / "m" / "3.tar.gz")  # inside: fine
    with ServeProcess(str(served)) as server:
        assert server.get("/evil?tf-hub-format=compressed").status == 404
        assert server.get("/evil/inner?tf-hub-format=compressed").status == 404
        assert server.get("/link.tar.gz").status == 404
        assert server.get("/m/2?tf-hub-format=compressed").status == 404
        assert server.get("/m/%2e%2e/%2e%2e/outside.tar.gz").status == 404
        assert server.get("/m/3?tf-hub-format=compressed").data == ARCHIVE
        assert server.get("/m/1?tf-hub-format=compressed").data == ARCHIVE


def test_a_packed_folder_never_follows_a_link_out(served: Path, tmp_path: Path) -> None:
    folder = served / "f" / "1"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "secret.txt").write_text("do not serve")
    os.symlink(tmp_path / "secret.txt", folder / "leak.txt")
    os.symlink(tmp_path, folder / "leakdir")
    with ServeProcess(str(served)) as server:
        body = server.get("/f/1?tf-hub-format=compressed").data
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["saved_model.pb"]


def test_dot_folders_are_not_served(served: Path) -> None:
    (served / ".hidden").mkdir()
    (served / ".hidden" / "x.tar.gz").write_bytes(ARCHIVE)
    with ServeProcess(str(served)) as server:
        assert server.get("/.hidden/x.tar.gz").status == 404


def test_a_dropped_client_is_no_traceback(served: Path) -> None:
    with ServeProcess(str(served), "--rate-limit", "2M") as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"GET /big.tar HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(1000)  # headers and a little body, then hang up
        assert server.get("/m/1?tf-hub-format=compressed").status == 200  # still serving
        server.stop()
        assert "Traceback" not in server.stderr
        assert "Error" not in server.stderr


def test_uncompressed_format_is_answered(
    served: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    with ServeProcess(str(served)) as server:
        assert server.get("/m/1?tf-hub-format=uncompressed").data == ARCHIVE
        path = hubcache.resolve(server.url + "m/1")
    assert Path(path, "saved_model.pb").read_bytes() == b"graph"


def test_ranges_and_if_range(served: Path) -> None:
    with ServeProcess(str(served)) as server:
        whole = server.get("/big.tar")
        etag = whole.headers["ETag"]
        assert etag.startswith('"') and whole.headers["Accept-Ranges"] == "bytes"
        part = server.get("/big.tar", headers={"Range": "bytes=10-19", "If-Range": etag})
        assert (part.status, part.data) == (206, BIG[10:20])
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(BIG)}"
        stale = server.get("/big.tar", headers={"Range": "bytes=10-19", "If-Range": '"old"'})
        assert (stale.status, len(stale.data)) == (200, len(BIG))  # never a splice
        tail = server.get("/big.tar", headers={"Range": "bytes=-5"})
        assert (tail.status, tail.data) == (206, BIG[-5:])
        past = server.get("/big.tar", headers={"Range": f"bytes={len(BIG)}-"})
        assert past.status == 416
        assert past.headers["Content-Range"] == f"bytes */{len(BIG)}"
        head = server.get("/big.tar", method="HEAD")
        assert head.headers["Content-Length"] == str(len(BIG)) and head.data == b""
        assert server.get("/healthz").data == b"ok\n"


def test_rate_limit_takes_sizes(served: Path) -> None:
    with ServeProcess(str(served), "--rate-limit", "20M") as server:
        assert server.get("/m/1?tf-hub-format=compressed").data == ARCHIVE
    one_line_error(run("serve", str(served), "--rate-limit", "fast"), 2, "--rate-limit", "fast")


def test_bad_port_and_busy_port_are_one_line(served: Path) -> None:
    one_line_error(run("serve", str(served), "--port", "99999"), 2, "99999")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(run("serve", str(served), "--port", str(port)), 2, "in use", str(port))


def test_bad_directory_and_options(served: Path, tmp_path: Path) -> None:
    one_line_error(run("serve", str(tmp_path / "missing")), 2, "not a directory")
    one_line_error(run("serve", str(served), "--upstream", "ftp://x/"), 2, "--upstream")
    one_line_error(run("serve", str(served), "--max-size", "1GB"), 2, "--upstream")
    empty = tmp_path / "tokens"
    empty.write_text("\n")
    one_line_error(
        run("serve", str(served), "--upstream", "http://127.0.0.1:9/", "--token-file", str(empty)),
        2,
        "no token",
    )


def test_without_the_server_extra_one_line_names_it(served: Path) -> None:
    result = run("serve", str(served), code="import sys; sys.modules['aiohttp'] = None")
    one_line_error(result, 2, "pip install 'hubcache[server]'")


def test_demo_runs_without_the_server_extra() -> None:
    hide = "import sys; sys.modules['aiohttp'] = None; sys.modules['prometheus_client'] = None"
    result = run("demo", code=hide)
    assert result.returncode == 0, result.stderr
    assert "server requests: 1" in result.stdout


def test_an_unreachable_bucket_is_one_line_at_start(tmp_path: Path) -> None:
    from tests.support.emulators import free_port

    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HUBCACHE_STORE_TIMEOUT": "5",
    }
    argv = ["serve", "s3://bucket/mirror", "--upstream", "http://127.0.0.1:9/", "--port", "0"]
    one_line_error(run_cli(argv, extra_env=env), 4, "s3://bucket/mirror")


def test_access_log_lines_look_as_mirror_md_shows_them(served: Path) -> None:
    """docs/mirror.md quotes one line; a real one has the same shape (time: three decimals)."""
    doc = (Path(__file__).parents[1] / "docs" / "mirror.md").read_text()
    quoted = re.search(r'`(127\.0\.0\.1 "GET [^`]+)`', doc)
    assert quoted is not None
    shape = r'127\.0\.0\.1 "GET \S+ HTTP/1\.1" 200 \d+ \d+\.\d{3}s "[^"]*"'
    assert re.fullmatch(shape, quoted.group(1)), quoted.group(1)
    with ServeProcess(str(served)) as server:
        assert server.get("/m/1?tf-hub-format=compressed").status == 200
        server.stop()
    assert any(re.fullmatch(shape, line) for line in server.stderr.splitlines()), server.stderr


def test_a_file_changed_right_after_a_hit_is_never_served_stale(
    served: Path, tmp_path: Path
) -> None:
    """Hits reuse a recent lookup for a second (``archives.RECHECK``), but only for the same
    file: replaced, moved behind a link out of DIR, or removed, the very next request sees
    it. Each change below comes within that second of the hit before it."""
    other = make_tar(
        [M("saved_model.pb", b"GRAPH"), M("variables/v", b"1" * 5000)], compression="gz"
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1.tar.gz").write_bytes(other)
    path = "/m/1?tf-hub-format=compressed"
    with ServeProcess(str(served)) as server:
        for _ in range(3):  # a plain GET is the fast path's; HEAD too
            assert server.get(path).data == ARCHIVE
        fresh = served / "m" / "new"
        fresh.write_bytes(other)
        os.replace(fresh, served / "m" / "1.tar.gz")  # what a fill's publish does
        assert server.get(path).data == other
        os.rename(served / "m", served / "m-old")
        os.symlink(outside, served / "m")  # the folder is now a link out of DIR
        assert server.get(path).status == 404
        os.remove(served / "m")
        os.rename(served / "m-old", served / "m")
        assert server.get(path).data == other
        os.remove(served / "m" / "1.tar.gz")
        assert server.get(path).status == 404


def test_access_log_lines_are_written_whole_in_pipe_sized_writes() -> None:
    """The access log joins a turn's lines (serve.accesslog) but never into a write larger
    than PIPE_BUF, which a pipe shared by --workers keeps whole; each line escaped."""
    import io

    from hubcache.serve.accesslog import PIPE_BUF, AccessLog

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def write(self, text: str) -> int:
            self.sizes.append(len(text.encode()))
            return super().write(text)

    stream = Writes()
    log = AccessLog(stream)
    for i in range(300):  # no event loop here: each line is written at once, so join by hand
        log._lines.append(f'127.0.0.1 "GET /m/{i} HTTP/1.1" 200 5 0.001s "{"a" * 80}"\n')
    log.line("::1", 'GET /"x" HTTP/1.1', 200, "5", 0.5, "ua\x1b")
    assert stream.sizes and max(stream.sizes) <= PIPE_BUF, stream.sizes
    lines = stream.getvalue().splitlines()
    assert len(lines) == 301 and lines[0].startswith('127.0.0.1 "GET /m/0 ')
    assert lines[-1] == '::1 "GET /\\x22x\\x22 HTTP/1.1" 200 5 0.500s "ua\\x1b"'
    assert not AccessLog(None) and not AccessLog(None).enabled
