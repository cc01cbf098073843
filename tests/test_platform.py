"""The contract of ``hubcache._platform``, checked here for the Linux definitions and, by
loading a second copy of the façade while ``sys.platform`` says so, for the macOS and Windows
ones (the parts that need a real Windows kernel run against a fake kernel32)."""

from __future__ import annotations

import ast
import ctypes
import errno
import importlib.util
import ntpath
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hubcache._platform as platform_here
from hubcache.local.holder import Holder
from hubcache.platforms import common, windows

psutil = pytest.importorskip("psutil")


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A fresh copy of the ``_platform`` façade whose definitions are those for
    ``sys.platform=name``, over fresh copies of that platform's own modules (``family``,
    ``system``); the modules every platform shares (``platforms.common``) are the real ones."""
    spec = importlib.util.spec_from_file_location(
        f"hubcache._platform_as_{name}", platform_here.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with monkeypatch.context() as m:
        m.setattr(sys, "platform", name)
        for own in ("darwin", "windows"):
            m.delitem(sys.modules, f"hubcache.platforms.{own}", raising=False)
        spec.loader.exec_module(module)
    return module


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the PID names no process now
    return child.pid


# -- processes ---------------------------------------------------------------------------
def test_linux_liveness_and_start_token_are_unchanged() -> None:
    assert platform_here.SYSTEM == "linux"
    assert platform_here.pid_alive(os.getpid()) is True
    assert platform_here.pid_alive(dead_pid()) is False
    token = platform_here.start_token(os.getpid())
    assert token is not None and token.startswith("t")
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        ticks = int(f.read().rsplit(b")", 1)[-1].split()[19])
    assert token == f"t{ticks:x}"  # the format locks written before this change carry
    assert platform_here.same_start(os.getpid(), token) is True
    assert platform_here.same_start(os.getpid(), f"t{ticks + 1:x}") is False
    assert platform_here.same_start(dead_pid(), token) is None  # cannot tell, not "reused"
    assert platform_here.same_start(os.getpid(), "p123") is None  # another method's token
    assert platform_here.same_start(os.getpid(), "tzz") is None


@pytest.mark.parametrize("name", ["darwin", "win32"])
def test_psutil_start_token(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = load(name, monkeypatch)
    token = p.start_token(os.getpid())
    assert token == f"p{int(psutil.Process().create_time() * 1000):x}"
    ms = int(token[1:], 16)
    assert p.same_start(os.getpid(), token) is True
    assert p.same_start(os.getpid(), f"p{ms + 400:x}") is True  # rounding across versions
    assert p.same_start(os.getpid(), f"p{ms + 5000:x}") is False  # a reused PID
    assert p.same_start(os.getpid(), "t1234") is None  # Linux's method does not exist there
    assert p.same_start(dead_pid(), token) is None


def test_without_psutil_nothing_is_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    mac = load("darwin", monkeypatch)
    win = load("win32", monkeypatch)
    monkeypatch.setattr(common, "_PSUTIL", [None])
    for p in (mac, win):
        assert p.start_token(os.getpid()) is None
        assert p.same_start(os.getpid(), f"p{1:x}") is None
    assert mac.pid_alive(dead_pid()) is False  # signal 0 is safe on macOS
    assert win.pid_alive(os.getpid()) is None  # no psutil, no kernel32: cannot tell


def test_windows_never_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    win = load("win32", monkeypatch)

    class NoKill:
        def __getattr__(self, name: str) -> Any:
            if name == "kill":
                raise AssertionError("os.kill on Windows terminates the process")
            return getattr(os, name)

    monkeypatch.setattr(win.family, "os", NoKill())
    assert win.pid_alive(os.getpid()) is True  # psutil answers
    assert win.pid_alive(dead_pid()) is False


class FakeKernel32:
    """kernel32 as _win32_process uses it, scripted: (OpenProcess error, wait result, times)."""

    def __init__(self, open_error: int = 0, wait: int = 0x102, created: int = 0) -> None:
        self.open_error = open_error
        self.wait = wait
        self.created = created
        self.closed: list[int] = []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        assert access == 0x1000 | 0x00100000 and not inherit
        return 0 if self.open_error else 4242

    def last_error(self) -> int:
        return self.open_error

    def WaitForSingleObject(self, handle: int, ms: int) -> int:
        assert (handle, ms) == (4242, 0)
        return self.wait

    def GetProcessTimes(self, handle: int, *refs: Any) -> int:
        if not self.created:
            return 0
        refs[0]._obj.value = self.created
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.closed.append(handle)
        return 1


@pytest.mark.parametrize(
    ("kernel", "expected", "closed"),
    [
        (FakeKernel32(open_error=87), (False, None), []),  # no such process
        (FakeKernel32(open_error=5), (True, None), []),  # another user's: alive
        (FakeKernel32(open_error=6), (None, None), []),  # anything else: cannot tell
        (FakeKernel32(wait=0x102, created=133_000_000_000_000_000), (True, 133 * 10**15), [4242]),
        (FakeKernel32(wait=0, created=7), (False, 7), [4242]),  # exited, handle still open
        (FakeKernel32(wait=0xFFFFFFFF), (None, None), [4242]),  # WAIT_FAILED
    ],
)
def test_win32_api_answers(
    kernel: FakeKernel32, expected: tuple[Any, Any], closed: list[int]
) -> None:
    assert windows._win32_process(123, kernel) == expected
    assert kernel.closed == closed


def test_win32_api_is_absent_here() -> None:
    assert not hasattr(ctypes, "WinDLL")
    assert windows._win32_process(os.getpid()) == (None, None)


def test_holder_judged_dead_only_when_known(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    host = socket.gethostname()
    me = Holder(host, os.getpid(), "a" * 32 + (platform_here.start_token(os.getpid()) or ""), "")
    assert not me.is_dead_here()
    assert Holder(host, dead_pid(), "a" * 32, "").is_dead_here()
    reused = Holder(host, os.getpid(), "a" * 32 + "t1", "")
    assert reused.is_dead_here()
    assert not Holder(host, os.getpid(), "a" * 32 + "p1", "").is_dead_here()  # other method
    assert not Holder("elsewhere", dead_pid(), "a" * 32, "").is_dead_here()
    monkeypatch.setattr(platform_here, "pid_alive", lambda pid: None)
    assert not Holder(host, dead_pid(), "a" * 32, "").is_dead_here()  # unknown: alive


# -- files -------------------------------------------------------------------------------
def test_open_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform_here.READ == os.O_RDONLY | os.O_CLOEXEC
    assert platform_here.CREATE_NEW_FILE & os.O_NOFOLLOW and platform_here.SYNC_DIRS
    win = load("win32", monkeypatch)
    assert win.SYNC_FILE & os.O_WRONLY and not win.SYNC_DIRS  # FlushFileBuffers needs write


def test_writeback_without_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("fdatasync"))
        platform_here.writeback(fd)
        monkeypatch.delattr(os, "fdatasync")  # macOS, Windows
        monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
        platform_here.writeback(fd)
    finally:
        os.close(fd)
    assert calls == ["fdatasync", "fsync"]


def test_macos_flushes_the_drive_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mac = load("darwin", monkeypatch)
    calls: list[tuple[int, int]] = []

    def fcntl(fd: int, op: int) -> None:
        calls.append((fd, op))
        os.fstat(fd)  # a real, open descriptor of the folder
        if len(calls) == 2:
            raise OSError(errno.ENOTSUP, "not on this filesystem (SMB)")

    monkeypatch.setitem(sys.modules, "fcntl", types.SimpleNamespace(F_FULLFSYNC=51, fcntl=fcntl))
    mac.flush_drive_cache(str(tmp_path))
    mac.flush_drive_cache(str(tmp_path))  # refused: ignored, the files were fsynced already
    assert [op for _fd, op in calls] == [51, 51]
    platform_here.flush_drive_cache(str(tmp_path))  # Linux: fsync already flushed the drive
    assert len(calls) == 2


def test_flush_drive_cache_is_harmless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is nothing to flush, or nothing to flush it with, the call does nothing:
    no error, no fcntl call, no descriptor left open, nothing written."""
    mac = load("darwin", monkeypatch)
    (tmp_path / "model").write_bytes(b"x")
    fds = set(os.listdir("/proc/self/fd"))
    calls: list[int] = []
    without_full = types.SimpleNamespace(fcntl=lambda fd, op: calls.append(op))
    with_full = types.SimpleNamespace(F_FULLFSYNC=51, fcntl=lambda fd, op: calls.append(op))
    monkeypatch.setitem(sys.modules, "fcntl", with_full)
    assert platform_here.flush_drive_cache(str(tmp_path)) is None  # Linux: fsync flushed it
    assert mac.flush_drive_cache(str(tmp_path / "gone")) is None  # nothing there to open
    monkeypatch.setitem(sys.modules, "fcntl", without_full)  # a macOS without F_FULLFSYNC
    assert mac.flush_drive_cache(str(tmp_path)) is None
    assert calls == []
    assert set(os.listdir("/proc/self/fd")) == fds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_retry_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky(n: int) -> str:
        calls.append(n)
        if len(calls) < 3:
            raise PermissionError(errno.EACCES, "in use")
        return "done"

    with pytest.raises(PermissionError):
        platform_here.retry_busy(flaky, 1)  # POSIX: a real permission problem, at once
    assert calls == [1]
    calls.clear()
    win = load("win32", monkeypatch)
    monkeypatch.setattr(win.family.time, "sleep", lambda s: None)
    assert win.retry_busy(flaky, 2) == "done"
    assert calls == [2, 2, 2]

    def busy() -> None:
        calls.append(0)
        raise PermissionError(errno.EACCES, "in use")

    calls.clear()
    with pytest.raises(PermissionError):
        win.retry_busy(busy)
    assert len(calls) == len(win.family._BUSY_RETRIES) + 1


def no_link(*args: Any) -> None:
    raise OSError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize("links", [True, False])
def test_create_from_never_overwrites(
    links: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not links:  # FAT, some network shares: link() is refused
        monkeypatch.setattr(
            os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EPERM, "no"))
        )
    tmp = tmp_path / "x.part"
    tmp.write_bytes(b"ours" * 100_000)
    assert platform_here.create_from(str(tmp), str(tmp_path / "x")) is True
    assert (tmp_path / "x").read_bytes() == b"ours" * 100_000
    other = tmp_path / "x.other.part"
    other.write_bytes(b"theirs")
    assert platform_here.create_from(str(other), str(tmp_path / "x")) is False
    assert (tmp_path / "x").read_bytes() == b"ours" * 100_000
    with pytest.raises(FileNotFoundError):
        platform_here.create_from(str(tmp_path / "missing"), str(tmp_path / "y"))


def test_local_storage_create_without_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubcache.store.storage import LocalStorage

    monkeypatch.setattr(os, "link", no_link)
    store = LocalStorage(str(tmp_path))
    assert store.create("k.lock", b"one") is True
    assert store.create("k.lock", b"two") is False
    assert store.read("k.lock") == b"one"
    assert sorted(os.listdir(tmp_path)) == ["k.lock"]  # no .part left behind


def test_read_only_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform_here.read_only_fs(str(tmp_path)) is False
    assert platform_here.read_only_fs(str(tmp_path / "missing")) is None
    monkeypatch.delattr(os, "statvfs")
    assert platform_here.read_only_fs(str(tmp_path)) is None


# -- the default root --------------------------------------------------------------------
def test_inside_is_case_blind_on_windows_paths() -> None:
    temp = r"C:\Users\Bob\AppData\Local\Temp"
    assert platform_here.inside(temp, r"c:\users\bob", ntpath)
    assert platform_here.inside(r"C:\Users\Bob", r"C:\Users\Bob", ntpath)
    assert not platform_here.inside(r"C:\Temp", r"C:\Users\Bob", ntpath)
    assert not platform_here.inside(r"C:\Users\Bobby\Temp", r"C:\Users\Bob", ntpath)
    assert not platform_here.inside(r"D:\Users\Bob", r"C:\Users\Bob", ntpath)
    assert not platform_here.inside("/tmp/x", "/home/bob")


def test_windows_default_root_must_be_in_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    win = load("win32", monkeypatch)
    home = tmp_path / "home"
    temp = home / "AppData" / "Local" / "Temp"
    (temp / "tfhub_modules").mkdir(parents=True)
    (tmp_path / "shared" / "tfhub_modules").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    inside = temp / "tfhub_modules"
    outside = tmp_path / "shared" / "tfhub_modules"
    assert win.private_folder_problem(str(inside), os.lstat(inside)) is None
    reason = win.private_folder_problem(str(outside), os.lstat(outside))
    assert reason is not None and "outside your user profile" in reason
    (temp / "link").symlink_to(outside)
    reason = win.private_folder_problem(str(temp / "link"), os.lstat(temp / "link"))
    assert reason is not None and "link" in reason
    fallback = win.private_fallback(str(outside))
    assert fallback == str(home / "AppData" / "Local" / "hubcache" / "cache")


def test_windows_junction_is_a_link(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    st = os.lstat(tmp_path)
    fake = types.SimpleNamespace(st_mode=st.st_mode, st_file_attributes=0x400)
    reason = platform_here.private_folder_problem(str(tmp_path), fake)  # type: ignore[arg-type]
    assert reason == "it is a symbolic link or junction"


# -- names -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["C:", "c:x", "file:stream", "a\\b", "\\\\server", "NUL", "nul.txt", "COM1", "lpt9.log",
     "Con ", "x.", "x ", "a<b", "a|b", "a?b", "a*b", 'a"b', "tab\there"],
)  # fmt: skip
def test_names_windows_cannot_hold(name: str) -> None:
    assert platform_here.name_problem(name, windows=True) is not None
    assert platform_here.name_problem(name, windows=False) is None  # fine on POSIX
    assert platform_here.name_problem(name) is None  # this machine is Linux


@pytest.mark.parametrize(
    "name", ["saved_model.pb", "variables", "CONSOLE", "com10", "nul_x", ".hidden", "a.b c"]
)
def test_names_windows_can_hold(name: str) -> None:
    assert platform_here.name_problem(name, windows=True) is None


def test_windows_refuses_drive_members(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On Windows ``C:/x`` or ``\\\\server\\share`` would leave the staging folder: refused."""
    from hubcache._config import Limits
    from hubcache._errors import UnsafeArchiveError
    from hubcache.archive.safetree import SafeTree

    tree = SafeTree(str(tmp_path), Limits(), fsync=False)
    real = platform_here.name_problem
    monkeypatch.setattr(platform_here, "name_problem", lambda part: real(part, True))
    for raw in ("C:/Windows/x.dll", "\\\\server\\share\\x", "models/NUL", "a/b:c"):
        with pytest.raises(UnsafeArchiveError, match="Windows"):
            tree.normalize(raw)
    assert tree.normalize("variables/variables.index") == "variables/variables.index"


# -- the one-module rule -----------------------------------------------------------------
SRC = Path(platform_here.__file__).parent
# Names that exist on some platforms only, or whose meaning differs (os.kill on Windows).
OS_SPECIFIC = {"kill", "geteuid", "getegid", "getuid", "getgid", "statvfs", "fstatvfs"}
OS_SPECIFIC |= {"fdatasync", "sendfile", "O_NOFOLLOW", "O_CLOEXEC", "O_NOATIME", "O_BINARY"}
OS_SPECIFIC |= {"ST_RDONLY", "getpgid", "killpg", "name", "chown", "fchown", "lchown"}
OS_SPECIFIC |= {"pread", "pwrite", "preadv", "pwritev"}
SIGNAL_SPECIFIC = {"SIGKILL", "SIGSTOP", "SIGCONT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM"}
MODULES_SPECIFIC = {"fcntl", "msvcrt", "pwd", "grp", "winreg", "resource", "termios"}
# What ``_faults.fs`` (typed Any, so invisible to mypy) may be asked for outside _platform:
# names every platform's os module has.
PORTABLE_FS = {"open", "write", "close", "fsync", "rename", "replace", "mkdir", "makedirs"}
PORTABLE_FS |= {"unlink", "utime", "rmdir", "link"}


def _platform_specific(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, name = node.value.id, node.attr
            if (
                (owner == "os" and name in OS_SPECIFIC)
                or (owner == "signal" and name in SIGNAL_SPECIFIC)
                or (owner == "sys" and name == "platform")
            ):
                yield node.lineno, f"{owner}.{name}"
        if isinstance(node, ast.Attribute) and node.attr == "add_signal_handler":
            yield node.lineno, "loop.add_signal_handler (absent on Windows)"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "hasattr") and len(node.args) > 1:
                target = node.args[0]
                if isinstance(target, ast.Name) and target.id in ("os", "signal"):
                    yield node.lineno, f"{node.func.id}({target.id}, ...)"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name.split(".")[0] in MODULES_SPECIFIC:
                    yield node.lineno, f"import {name}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("/proc")
        ):
            yield node.lineno, node.value


def platform_code(path: Path) -> bool:
    """The façade and its per-OS modules: the one place that may differ by platform."""
    rel = path.relative_to(SRC)
    return str(rel) == "_platform.py" or rel.parts[0] == "platforms"


def test_platform_specific_calls_live_in_one_module() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if not platform_code(path):
            tree = ast.parse(path.read_text())
            offenders += [
                f"{path.relative_to(SRC)}:{n}: {what}" for n, what in _platform_specific(tree)
            ]
    assert offenders == [], "use hubcache._platform instead:\n" + "\n".join(offenders)


def test_only_the_facade_imports_the_per_os_modules() -> None:
    """The rest of hubcache asks ``_platform``; reaching into ``platforms.windows`` directly
    would bypass the choice made at import (and run Windows code on Linux). Among
    themselves, the OS modules share only ``common``."""
    import grimp

    graph = grimp.build_graph("hubcache")
    for module in graph.find_children("hubcache.platforms"):
        outside = {
            importer
            for importer in graph.find_modules_that_directly_import(module)
            if not importer.startswith("hubcache.platforms.")
        }
        assert outside <= {"hubcache._platform"}, (module, outside)
        inside = {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.startswith("hubcache.platforms.")
        }
        assert inside <= {"hubcache.platforms.common"}, (module, inside)


def test_the_rule_catches_what_it_should() -> None:
    code = "import fcntl\nos.kill(1, 0)\nx = os.O_CLOEXEC\nif sys.platform: pass\n"
    code += "getattr(os, 'fdatasync')\nopen('/proc/1/stat')\nsignal.SIGKILL\n"
    code += "os.pread(1, 2, 3)\nloop.add_signal_handler(2, f)\n"
    assert len(list(_platform_specific(ast.parse(code)))) == 9
    ok = "os.open(p, os.O_RDONLY)\nos.getpid()\nsignal.SIGTERM\n'/tmp'\n"
    assert list(_platform_specific(ast.parse(ok))) == []


def test_fault_hook_calls_are_portable() -> None:
    used = set()
    for path in sorted(SRC.rglob("*.py")):
        if platform_code(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "fs"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "_faults"
            ):
                used.add(node.attr)
    assert used and used <= PORTABLE_FS, used - PORTABLE_FS


@pytest.mark.parametrize("rel", ["../escaped", "a/../../escaped", "/abs", "a//b"])
def test_shared_copy_cannot_write_outside(rel: str, tmp_path: Path) -> None:
    """A shared tier's manifest is written by other hosts: its names are checked like an
    archive's (and on Windows by the same name rules), never joined blindly."""
    from hubcache._errors import DownloadError
    from hubcache.local.manifest import Manifest
    from hubcache.store.storage import LocalStorage

    store = LocalStorage(str(tmp_path / "tier"))
    store.write("k/x", b"data")
    dest = tmp_path / "stage" / "inner"
    dest.mkdir(parents=True)
    manifest = Manifest.new(handle="h", key="k", files={rel: (4, "")}, dirs=[])
    with pytest.raises(DownloadError, match="would leave the model folder"):
        store.download_entry("k", manifest, str(dest))
    manifest = Manifest.new(handle="h", key="k", files={}, dirs=[rel])
    with pytest.raises(DownloadError, match="would leave the model folder"):
        store.download_entry("k", manifest, str(dest))
    assert sorted(p.name for p in (tmp_path / "stage").rglob("*")) == ["inner"]


@pytest.mark.parametrize("name", ["linux", "win32"])
def test_pread(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform_here if name == "linux" else load(name, monkeypatch)
    (tmp_path / "f").write_bytes(b"0123456789")
    fd = os.open(tmp_path / "f", p.READ)
    try:
        assert p.pread(fd, 3, 4) == b"456"
        assert p.pread(fd, 100, 8) == b"89"
        assert p.pread(fd, 2, 0) == b"01"
        assert p.pread(fd, 5, 10) == b""
    finally:
        os.close(fd)


def test_user_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert platform_here.user_id() == str(os.getuid())
    monkeypatch.delattr(os, "getuid")  # Windows
    monkeypatch.setenv("HOME", str(tmp_path / "bob"))
    assert platform_here.user_id() == "bob"


def test_on_termination_without_loop_signal_support() -> None:
    """Windows' asyncio loop has no add_signal_handler: a plain handler hands over."""
    import signal

    class WindowsLoop:
        def __init__(self) -> None:
            self.handed: list[object] = []

        def add_signal_handler(self, sig: int, callback: object) -> None:
            raise NotImplementedError

        def call_soon_threadsafe(self, callback: object) -> None:
            self.handed.append(callback)

    def stop() -> None:
        pass

    loop = WindowsLoop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        platform_here.on_termination(loop, stop)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert loop.handed == [stop, stop]
