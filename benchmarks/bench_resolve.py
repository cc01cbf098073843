"""Benchmark hubcache's resolve against curl|tar, curl|pigz|tar and tensorflow_hub.

Run from the repository root with the project's interpreter::

    python benchmarks/bench_resolve.py --sizes 100 --reps 5
    python benchmarks/bench_resolve.py --sizes 100,1000 --reps 3 --json benchmarks/out/r.json
    python benchmarks/bench_resolve.py --sizes 100 --rate-limit 20M   # + throttled rows

The script only prints figures: it never asserts on time. Generated archives are cached
under ``benchmarks/out/`` (git-ignored). All servers bind 127.0.0.1 and are stopped on exit,
on errors and on Ctrl-C. The page cache cannot be dropped without root, so every method
runs one discarded warm-up repetition before the measured ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import itertools
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import IO, Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "out")
GENERATOR_VERSION = 2
MB = 1_000_000  # archive sizes are decimal megabytes
RESULT_PREFIX = "BENCH_RESULT "
DEFAULT_TF_PYTHON = os.path.join("~", ".cache", "hubcache-ci", "tf-venv", "bin", "python")

# --------------------------------------------------------------------------------------
# Code run in child processes (passed with ``-c``; arguments arrive in sys.argv[1:]).
# Each prints one line starting with RESULT_PREFIX followed by JSON.
# --------------------------------------------------------------------------------------

_CHILD_COMMON = r"""
import json, os, resource, sys, time
def _maxrss_kb():
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v // 1024 if sys.platform == "darwin" else v
def _emit(**kw):
    sys.stdout.write("BENCH_RESULT " + json.dumps(kw) + "\n")
    sys.stdout.flush()
"""

_HUBCACHE_RESOLVE = r"""
import hubcache
_url, _cache_dir = sys.argv[1], sys.argv[2]
def _resolve():
    return hubcache.resolve(_url, cache_dir=_cache_dir)
_version = getattr(hubcache, "__version__", "?")
"""

_TFHUB_RESOLVE = r"""
import tensorflow_hub as hub
_url = sys.argv[1]
def _resolve():
    return hub.resolve(_url)
try:
    import tensorflow as _tf
    _version = "tensorflow_hub %s, tensorflow %s" % (hub.__version__, _tf.__version__)
except Exception:
    _version = "tensorflow_hub %s" % hub.__version__
"""

_COLD_BODY = r"""
_base = _maxrss_kb()
_t0 = time.perf_counter()
_path = _resolve()
_dt = time.perf_counter() - _t0
_emit(seconds=_dt, path=str(_path), base_maxrss_kb=_base, maxrss_kb=_maxrss_kb(),
      version=_version)
"""

# Warm: make sure the cache is filled, calibrate, then time reps+1 loops of n calls each.
_WARM_BODY = r"""
_calls, _reps, _budget = int(sys.argv[-3]), int(sys.argv[-2]), float(sys.argv[-1])
_path = _resolve()
_t0 = time.perf_counter()
for _ in range(10):
    _resolve()
_per = (time.perf_counter() - _t0) / 10
_n = max(10, min(_calls, int(_budget / max(_per, 1e-9))))
_samples = []
for _ in range(_reps + 1):
    _t0 = time.perf_counter()
    for _ in range(_n):
        _resolve()
    _samples.append((time.perf_counter() - _t0) / _n)
_emit(per_call=_samples, calls=_n, path=str(_path), maxrss_kb=_maxrss_kb(), version=_version)
"""

# VmHWM: this process image's own peak RSS. Linux starts a child's ru_maxrss at the peak
# RSS of the process that spawned it, so ru_maxrss alone can hide the client's real peak.
_COLD_HWM_BODY = r"""
_base = _maxrss_kb()
_t0 = time.perf_counter()
_path = _resolve()
_dt = time.perf_counter() - _t0
_hwm = None
try:
    with open("/proc/self/status") as _f:
        for _line in _f:
            if _line.startswith("VmHWM:"):
                _hwm = int(_line.split()[1])
except OSError:
    pass
_emit(seconds=_dt, path=str(_path), base_maxrss_kb=_base, maxrss_kb=_maxrss_kb(),
      vmhwm_kb=_hwm, version=_version)
"""

HUBCACHE_COLD = _CHILD_COMMON + _HUBCACHE_RESOLVE + _COLD_BODY
HUBCACHE_COLD_HWM = _CHILD_COMMON + _HUBCACHE_RESOLVE + _COLD_HWM_BODY
HUBCACHE_WARM = _CHILD_COMMON + _HUBCACHE_RESOLVE + _WARM_BODY
TFHUB_COLD = _CHILD_COMMON + _TFHUB_RESOLVE + _COLD_BODY
TFHUB_WARM = _CHILD_COMMON + _TFHUB_RESOLVE + _WARM_BODY


# --------------------------------------------------------------------------------------
# Archive generation
# --------------------------------------------------------------------------------------


class _Generated(io.RawIOBase):
    """A read-only stream of ``size`` bytes produced chunk by chunk (never all in memory)."""

    def __init__(self, size: int, chunk: Any) -> None:
        super().__init__()
        self._left = size
        self._chunk = chunk  # callable: int -> bytes (at most that many)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        want = min(len(b), self._left)
        if want <= 0:
            return 0
        while len(self._buf) < want:
            self._buf += self._chunk(max(want - len(self._buf), 1 << 20))
        b[:want] = self._buf[:want]
        self._buf = self._buf[want:]
        self._left -= want
        return want


def _word_pool(rng: random.Random, size: int) -> bytes:
    """Vocabulary-like text with Zipf-distributed words (deflates ~2-3x, like real
    vocab/merges files)."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocab = [
        "".join(rng.choices(letters, cum_weights=_ZIPF26, k=rng.randint(2, 9)))
        for _ in range(8_000)
    ]
    cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))
    out = io.StringIO()
    written = 0
    index = 0
    while written < size:
        words = rng.choices(vocab, cum_weights=cum, k=2_000)
        for k in range(0, len(words), 2):
            line = f"{words[k]} {words[k + 1]}\t{index}\n"
            out.write(line)
            written += len(line)
            index += 1
    return out.getvalue().encode("ascii")[:size]


_ZIPF26 = list(itertools.accumulate(1.0 / (r + 1) for r in range(26)))


def _text_chunker(rng: random.Random, pool: bytes) -> Any:
    """Chunks cut from a pool at random offsets: deflate only sees 32 KiB back, so the
    compression ratio equals the pool's own, and generation stays cheap for GBs."""

    def chunk(n: int) -> bytes:
        n = min(n, len(pool) // 2)
        start = rng.randrange(0, len(pool) - n)
        # start on a line boundary so the text stays line-shaped
        nl = pool.find(b"\n", start, start + 200)
        start = nl + 1 if nl >= 0 else start
        return pool[start : start + n]

    return chunk


def _saved_model_pb(rng: random.Random, size: int) -> bytes:
    """Protobuf-ish bytes: op names and attrs (compressible) around float constants (not)."""
    ops = [
        b"VarHandleOp",
        b"ReadVariableOp",
        b"MatMul",
        b"BiasAdd",
        b"Relu",
        b"Conv2D",
        b"StatefulPartitionedCall",
        b"Identity",
        b"Const",
        b"AssignVariableOp",
    ]
    out = bytearray()
    i = 0
    while len(out) < size:
        op = rng.choice(ops)
        name = b"model/layer_%d/%s_%d" % (i % 97, op.lower(), i)
        out += b"\n" + bytes([len(name) & 0x7F]) + name + b"\x12" + bytes([len(op)]) + op
        out += b"*\x0b\n\x05dtype\x12\x020\x01" + rng.randbytes(rng.randint(0, 24))
        i += 1
    return bytes(out[:size])


def _variables_index(rng: random.Random, n_vars: int) -> bytes:
    """A small sorted-table-like index: variable names + random offsets/checksums."""
    out = bytearray()
    for i in range(n_vars):
        name = b"layer_%03d/kernel/.ATTRIBUTES/VARIABLE_VALUE" % i
        out += bytes([0, len(name)]) + name + rng.randbytes(12)
    out += b"\x00" * 16 + rng.randbytes(32)
    return bytes(out)


@dataclasses.dataclass
class Archive:
    size_mb: int
    path: str  # the .tar.gz
    name: str  # "100mb"
    archive_bytes: int
    manifest: dict[str, int]  # member path -> size (regular files only)
    sha256: str


def _archive_spec(size_mb: int) -> dict[str, Any]:
    return {"generator": GENERATOR_VERSION, "size_mb": size_mb, "gzip_level": 6}


def generate_archive(out_dir: str, size_mb: int, *, force: bool = False) -> Archive:
    """Create (or reuse) ``out_dir/archives/bench/<N>mb.tar.gz`` and its ``.json`` sidecar."""
    bench_dir = os.path.join(out_dir, "archives", "bench")
    os.makedirs(bench_dir, exist_ok=True)
    name = f"{size_mb}mb"
    path = os.path.join(bench_dir, name + ".tar.gz")
    meta_path = path + ".json"
    spec = _archive_spec(size_mb)
    if not force and os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("spec") == spec and meta.get("archive_bytes") == os.path.getsize(path):
            return Archive(
                size_mb, path, name, meta["archive_bytes"], meta["manifest"], meta["sha256"]
            )

    print(f"generating {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    target = size_mb * MB
    rng = random.Random(size_mb)
    pool = _word_pool(rng, 4 * 1024 * 1024)
    text_ratio = len(pool) / len(zlib.compress(pool, 6))
    pb = _saved_model_pb(rng, 100 * 1024)
    index = _variables_index(rng, 200)
    pb_packed = len(zlib.compress(pb, 6))
    # ~5% of the archive is compressed text, the rest is (incompressible) variables.
    text_raw = int(0.05 * target * text_ratio)
    data_size = max(1, target - int(0.05 * target) - pb_packed - len(index) - 64 * 1024)
    members: list[tuple[str, int, Any]] = [
        ("saved_model.pb", len(pb), lambda _n, b=pb: b),
        ("fingerprint.pb", 56, lambda _n, r=rng: r.randbytes(56)),
        ("variables/variables.data-00000-of-00001", data_size, rng.randbytes),
        ("variables/variables.index", len(index), lambda _n, b=index: b),
        ("assets/vocab.txt", int(text_raw * 0.6), _text_chunker(rng, pool)),
        ("assets/merges.txt", text_raw - int(text_raw * 0.6), _text_chunker(rng, pool)),
        ("assets/README.txt", 2_000, _text_chunker(rng, pool)),
    ]
    tmp = path + ".tmp"
    mtime = 1_700_000_000
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for d in ("variables", "assets"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = mtime
            tar.addfile(info)
        for member, size, chunk in members:
            info = tarfile.TarInfo(member)
            info.size = size
            info.mode = 0o644
            info.mtime = mtime
            tar.addfile(info, io.BufferedReader(_Generated(size, chunk), 1 << 20))
    digest = hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    os.replace(tmp, path)
    manifest = {m: s for m, s, _ in members}
    meta = {
        "spec": spec,
        "archive_bytes": os.path.getsize(path),
        "manifest": manifest,
        "sha256": digest.hexdigest(),
    }
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    print(
        f"  {meta['archive_bytes'] / MB:.1f} MB in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return Archive(size_mb, path, name, meta["archive_bytes"], manifest, meta["sha256"])


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def child_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment of every child: no inherited cache/hubcache settings, no proxy."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUBCACHE_", "TFHUB_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class Server:
    """``python -m hubcache serve DIR`` on 127.0.0.1 with an OS-chosen port."""

    def __init__(
        self, python: str, root: str, log_path: str, rate_limit: Optional[int] = None
    ) -> None:
        self.argv = [python, "-m", "hubcache", "serve", root, "--host", "127.0.0.1", "--port", "0"]
        if rate_limit:
            self.argv += ["--rate-limit", str(rate_limit)]
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen[str]] = None
        self.base = ""

    def start(self, timeout: float = 30.0) -> str:
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=child_env(),
                start_new_session=True,
            )
        finally:
            log.close()
        lines: queue.Queue[Optional[str]] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def drain() -> None:  # keep reading so the server never blocks on a full pipe
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            first = None
        m = re.match(r"serving .* at (http://127\.0\.0\.1:\d+)/", first or "")
        if not m:
            self.stop()
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(
                f"server did not start: {' '.join(self.argv[1:])!r}\n"
                f"first stdout line: {first!r}\nstderr tail:\n{tail}"
            )
        self.base = m.group(1)
        return self.base

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclasses.dataclass
class RunResult:
    wall: float
    rss_kb: int  # sum over the pipeline's processes of each one's peak RSS
    returncode: int
    stdout: str
    stderr: str


def run_pipeline(
    cmds: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: Optional[str] = None,
) -> RunResult:
    """Run ``cmds[0] | cmds[1] | ...``; wall time and per-process peak RSS via wait4."""
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    timed_out = threading.Event()

    def kill_all() -> None:
        for p in procs:
            if p.returncode is None:
                try:
                    p.kill()
                except OSError:
                    pass

    t0 = time.perf_counter()

    def on_timeout() -> None:
        timed_out.set()
        kill_all()

    timer = threading.Timer(timeout, on_timeout)
    timer.start()
    rss = 0
    codes: list[int] = []
    out = b""
    try:
        prev: Optional[IO[bytes]] = None
        for i, cmd in enumerate(cmds):
            err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
            errs.append(err)
            last = i == len(cmds) - 1
            p = subprocess.Popen(
                list(cmd),
                stdin=prev if prev is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=dict(env),
                cwd=cwd,
            )
            if prev is not None:
                prev.close()  # the child holds its own copy; keep SIGPIPE semantics
            procs.append(p)
            prev = None if last else p.stdout
        assert procs[-1].stdout is not None
        out = procs[-1].stdout.read()
        procs[-1].stdout.close()
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            rss += usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)
        wall = time.perf_counter() - t0
    finally:
        timer.cancel()
        kill_all()
    stderr = b""
    for err in errs:
        err.seek(0)
        stderr += err.read()
        err.close()
    code = next((c for c in codes if c != 0), 0)
    if timed_out.is_set():
        code = code or -9
        stderr += f"\n[bench] killed after {timeout:.0f} s timeout".encode()
    return RunResult(
        wall, rss, code, out.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def parse_child(res: RunResult) -> dict[str, Any]:
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise RuntimeError(f"exit code {res.returncode}; stderr tail:\n{res.stderr[-2500:].strip()}")


def rmtree(path: str) -> None:
    """Remove a tree even when the cache made files or directories read-only."""
    if not os.path.lexists(path):
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path)


def check_tree(root: str, manifest: Mapping[str, int]) -> Optional[str]:
    """None when ``root`` holds the archive's files with the right sizes, else a message."""
    for member, size in manifest.items():
        p = os.path.join(root, *member.split("/"))
        try:
            got = os.path.getsize(p)
        except OSError:
            return f"missing {member} under the result directory"
        if got != size:
            return f"{member}: {got} bytes, expected {size}"
    return None


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    key: str
    label: str
    kind: str  # "cold" | "call" | "cli" | "import" | "throttled"
    samples: list[float] = dataclasses.field(default_factory=list)  # seconds
    warmup: list[float] = dataclasses.field(default_factory=list)
    rss_kb: list[int] = dataclasses.field(default_factory=list)
    base_rss_kb: list[int] = dataclasses.field(default_factory=list)
    skipped: Optional[str] = None
    errors: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.samples) if self.samples else None

    @property
    def minimum(self) -> Optional[float]:
        return min(self.samples) if self.samples else None


class Bench:
    def __init__(self, args: argparse.Namespace, archive: Archive, work: str) -> None:
        self.args = args
        self.archive = archive
        self.work = work
        self.python = sys.executable
        self.tf_python = args.tf_python
        self.rows: dict[str, Row] = {}
        self.counter = 0
        self.timeout = 120 + archive.archive_bytes / MB * 2.0  # >= 0.5 MB/s

    # -- helpers ------------------------------------------------------------------------

    def row(self, key: str, label: str, kind: str) -> Row:
        if key not in self.rows:
            self.rows[key] = Row(key, label, kind)
            if key in self.args.skip:
                self.rows[key].skipped = "--skip"
        return self.rows[key]

    def fresh_dir(self, tag: str) -> str:
        self.counter += 1
        path = os.path.join(self.work, f"{tag}-{self.counter}")
        rmtree(path)
        os.makedirs(path)
        return path

    def record(
        self, row: Row, warm_up: bool, seconds: float, rss: int = 0, base_rss: int = 0
    ) -> None:
        if warm_up:
            row.warmup.append(seconds)
            return
        row.samples.append(seconds)
        if rss:
            row.rss_kb.append(rss)
        if base_rss:
            row.base_rss_kb.append(base_rss)

    def fail(self, row: Row, message: str) -> None:
        print(
            f"  ! {row.label}: {message.splitlines()[0] if message else '?'}",
            file=sys.stderr,
            flush=True,
        )
        row.errors.append(message)

    # -- methods ----------------------------------------------------------------------

    def curl_tar(
        self, row: Row, url: str, warm_up: bool, pigz: bool, timeout: Optional[float] = None
    ) -> None:
        dest = self.fresh_dir(row.key)
        curl = ["curl", "-s", "-f", "--noproxy", "*", url]
        cmds = (
            [curl, ["pigz", "-dc"], ["tar", "-xf", "-", "-C", dest]]
            if pigz
            else [curl, ["tar", "-xzf", "-", "-C", dest]]
        )
        res = run_pipeline(cmds, env=child_env(), timeout=timeout or self.timeout)
        try:
            if res.returncode != 0:
                self.fail(row, f"exit {res.returncode}: {res.stderr[-1500:].strip()}")
                return
            problem = check_tree(dest, self.archive.manifest)
            if problem:
                self.fail(row, problem)
                return
            self.record(row, warm_up, res.wall, res.rss_kb)
        finally:
            rmtree(dest)

    def python_cold(
        self,
        row: Row,
        python: str,
        code: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        warm_up: bool,
        dest: str,
        keep: bool,
        timeout: Optional[float] = None,
    ) -> Optional[str]:
        """One cold resolve in a fresh interpreter; returns the resolved path if kept."""
        res = run_pipeline([[python, "-c", code, *args]], env=env, timeout=timeout or self.timeout)
        try:
            try:
                out = parse_child(res)
            except (RuntimeError, ValueError) as e:
                self.fail(row, str(e))
                return None
            row.extra.setdefault("version", out.get("version"))
            problem = check_tree(out["path"], self.archive.manifest)
            if problem:
                self.fail(row, f"bad result at {out['path']}: {problem}")
                return None
            self.record(row, warm_up, out["seconds"], out["maxrss_kb"], out["base_maxrss_kb"])
            row.extra.setdefault("process_wall_s", []).append(res.wall)
            return str(out["path"]) if keep else None
        finally:
            if not keep:
                rmtree(dest)

    def python_warm(
        self, row: Row, python: str, code: str, args: Sequence[str], env: Mapping[str, str]
    ) -> None:
        calls, reps = self.args.warm_calls, self.args.reps
        res = run_pipeline(
            [[python, "-c", code, *args, str(calls), str(reps), "2.0"]],
            env=env,
            timeout=self.timeout + 60 * (reps + 1),
        )
        try:
            out = parse_child(res)
        except (RuntimeError, ValueError) as e:
            self.fail(row, str(e))
            return
        per = [float(x) for x in out["per_call"]]
        row.warmup.append(per[0])
        row.samples.extend(per[1:])
        row.rss_kb.append(int(out["maxrss_kb"]))
        row.extra["calls_per_rep"] = out["calls"]
        row.extra.setdefault("version", out.get("version"))

    def cli_warm(self, row: Row, url: str, cache_dir: str, expected: str, warm_up: bool) -> None:
        script = os.path.join(os.path.dirname(self.python), "hubcache")
        argv = ([script] if os.access(script, os.X_OK) else [self.python, "-m", "hubcache"]) + [
            "resolve",
            url,
        ]
        row.extra["argv"] = " ".join(
            ["hubcache" if argv[0] == script else "python -m hubcache", *argv[-2:]]
        )
        res = run_pipeline([argv], env=child_env({"TFHUB_CACHE_DIR": cache_dir}), timeout=120)
        if res.returncode != 0:
            self.fail(row, f"exit {res.returncode}: {res.stderr[-1500:].strip()}")
            return
        got = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if os.path.realpath(got) != os.path.realpath(expected):
            self.fail(row, f"printed {got!r}, expected the cached {expected!r}")
            return
        self.record(row, warm_up, res.wall, res.rss_kb)

    def import_time(self, row: Row, reps: int) -> None:
        env = child_env()
        base: list[float] = []
        imp: list[float] = []
        for i in range(reps + 1):
            a = run_pipeline([[self.python, "-c", "pass"]], env=env, timeout=60)
            b = run_pipeline([[self.python, "-c", "import hubcache"]], env=env, timeout=60)
            if b.returncode != 0:
                self.fail(row, f"exit {b.returncode}: {b.stderr[-1500:].strip()}")
                return
            if i:
                base.append(a.wall)
                imp.append(b.wall)
                row.rss_kb.append(b.rss_kb)
                row.base_rss_kb.append(a.rss_kb)
        row.samples = [max(0.0, x - statistics.median(base)) for x in imp]
        row.extra["python_startup_median_s"] = statistics.median(base)
        res = run_pipeline(
            [[self.python, "-X", "importtime", "-c", "import hubcache"]], env=env, timeout=60
        )
        for line in res.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "hubcache" and parts[1].isdigit():
                row.extra["importtime_cumulative_us"] = int(parts[1])
        heavy = []
        for line in res.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[1].isdigit():  # every module, by cumulative time
                heavy.append((int(parts[1]), parts[2]))
        row.extra["importtime_top"] = sorted(heavy, reverse=True)[:8]

    # -- orchestration ----------------------------------------------------------------

    def run(self, base: str, throttled_base: Optional[str]) -> dict[str, Row]:
        a = self.archive
        handle = f"{base}/bench/{a.name}"  # a model handle: resolvers add ?tf-hub-format=
        archive_url = f"{base}/bench/{a.name}?tf-hub-format=compressed"
        reps = self.args.reps
        have_pigz = shutil.which("pigz") is not None
        tf_python = (
            self.tf_python if self.tf_python and os.access(self.tf_python, os.X_OK) else None
        )

        r_tar = self.row("curl_tar", "curl | tar -xzf", "cold")
        r_pigz = self.row("curl_pigz_tar", "curl | pigz -dc | tar -xf", "cold")
        r_hc = self.row("hubcache_cold", "hubcache.resolve cold (fresh process)", "cold")
        r_tf = self.row("tfhub_cold", "tensorflow_hub hub.resolve cold (fresh process)", "cold")
        if not have_pigz:
            r_pigz.skipped = "pigz not installed"
        if tf_python is None:
            r_tf.skipped = (
                f"no tensorflow_hub python at {self.args.tf_python!r} "
                "(--tf-python / HUBCACHE_TF_PYTHON)"
            )

        hc_keep: Optional[str] = None
        tf_keep: Optional[str] = None
        # Cold methods round-robin, so drift (thermal, noisy neighbours) hits all alike.
        for rep in range(reps + 1):
            warm_up = rep == 0
            tag = "warm-up" if warm_up else f"rep {rep}/{reps}"
            print(f"[{a.name}] cold {tag}", file=sys.stderr, flush=True)
            last = rep == reps
            if not r_tar.skipped:
                self.curl_tar(r_tar, archive_url, warm_up, pigz=False)
            if not r_pigz.skipped:
                self.curl_tar(r_pigz, archive_url, warm_up, pigz=True)
            if not r_hc.skipped:
                d = self.fresh_dir("hubcache")
                hc_keep = (
                    self.python_cold(
                        r_hc,
                        self.python,
                        HUBCACHE_COLD,
                        [handle, d],
                        env=child_env(),
                        warm_up=warm_up,
                        dest=d,
                        keep=last,
                    )
                    or hc_keep
                )
            if not r_tf.skipped and tf_python:
                d = self.fresh_dir("tfhub")
                env = child_env(
                    {
                        "TFHUB_CACHE_DIR": d,
                        "TFHUB_MODEL_LOAD_FORMAT": "COMPRESSED",
                        "TF_CPP_MIN_LOG_LEVEL": "2",
                    }
                )
                tf_keep = (
                    self.python_cold(
                        r_tf,
                        tf_python,
                        TFHUB_COLD,
                        [handle],
                        env=env,
                        warm_up=warm_up,
                        dest=d,
                        keep=last,
                    )
                    or tf_keep
                )

        # Warm: reuse the caches the last cold repetition filled.
        r_call = self.row("hubcache_warm_call", "hubcache.resolve warm (per call)", "call")
        r_cli = self.row("hubcache_cli_warm", "`hubcache resolve URL` warm (whole process)", "cli")
        r_tfcall = self.row("tfhub_warm_call", "tensorflow_hub hub.resolve warm (per call)", "call")
        r_imp = self.row("import", "`import hubcache` (fresh process)", "import")
        if hc_keep is None:
            for r in (r_call, r_cli):
                r.skipped = r.skipped or "no cold hubcache result to reuse"
        if tf_keep is None:
            r_tfcall.skipped = r_tfcall.skipped or r_tf.skipped or "no cold tensorflow_hub result"
        print(f"[{a.name}] warm", file=sys.stderr, flush=True)
        if hc_keep is not None:
            hc_root = self._root_of(hc_keep)
            if not r_call.skipped:
                self.python_warm(r_call, self.python, HUBCACHE_WARM, [handle, hc_root], child_env())
            if not r_cli.skipped:
                for rep in range(reps + 1):
                    self.cli_warm(r_cli, handle, hc_root, hc_keep, warm_up=rep == 0)
        if tf_keep is not None and tf_python and not r_tfcall.skipped:
            env = child_env(
                {
                    "TFHUB_CACHE_DIR": self._root_of(tf_keep),
                    "TFHUB_MODEL_LOAD_FORMAT": "COMPRESSED",
                    "TF_CPP_MIN_LOG_LEVEL": "2",
                }
            )
            self.python_warm(r_tfcall, tf_python, TFHUB_WARM, [handle], env)
        if not r_imp.skipped:
            self.import_time(r_imp, max(reps, 5))
        for keep in (hc_keep, tf_keep):
            if keep:
                rmtree(self._root_of(keep))

        if throttled_base:
            self.run_throttled(throttled_base)
        return self.rows

    def _root_of(self, resolved: str) -> str:
        """The per-rep cache root that holds ``resolved`` (a direct child of self.work)."""
        rel = os.path.relpath(resolved, self.work)
        return os.path.join(self.work, rel.split(os.sep)[0])

    def run_throttled(self, base: str) -> None:
        a = self.archive
        handle = f"{base}/bench/{a.name}"
        rate = self.args.rate_limit
        mbps = rate / MB
        timeout = 120 + a.archive_bytes / rate * 3
        r_pigz = self.row(
            "thr_curl_pigz_tar", f"curl | pigz | tar @ {mbps:g} MB/s/conn", "throttled"
        )
        r_def = self.row(
            "thr_hubcache_default", f"hubcache cold @ {mbps:g} MB/s/conn, default", "throttled"
        )
        r_one = self.row(
            "thr_hubcache_1conn",
            f"hubcache cold @ {mbps:g} MB/s/conn, HUBCACHE_CONNECTIONS=1",
            "throttled",
        )
        if shutil.which("pigz") is None:
            r_pigz.skipped = "pigz not installed"
        # The warm-up here only costs time: the file is in the page cache already.
        for rep in range(1, self.args.reps + 1):
            print(f"[{a.name}] throttled rep {rep}/{self.args.reps}", file=sys.stderr, flush=True)
            if not r_pigz.skipped:
                self.curl_tar(
                    r_pigz, f"{handle}?tf-hub-format=compressed", False, pigz=True, timeout=timeout
                )
            for row, extra in ((r_def, {}), (r_one, {"HUBCACHE_CONNECTIONS": "1"})):
                if row.skipped:
                    continue
                d = self.fresh_dir(row.key)
                self.python_cold(
                    row,
                    self.python,
                    HUBCACHE_COLD,
                    [handle, d],
                    env=child_env(extra),
                    warm_up=False,
                    dest=d,
                    keep=False,
                    timeout=timeout,
                )


# --------------------------------------------------------------------------------------
# Streamed mode: an archive generated on the fly, never stored (peak RSS vs size)
# --------------------------------------------------------------------------------------

GB = 1_000_000_000


def _gb(n: float) -> str:
    return f"{n:g} GB"


def streamed_one(gen_gb: float, level: int, work: str, python: str) -> dict[str, Any]:
    """One cold hubcache resolve, in a fresh process, of a generated ``gen_gb`` archive."""
    sys.path.insert(0, HERE)  # benchmarks/ is not a package
    import _genserver

    data_bytes = int(gen_gb * GB)
    result: dict[str, Any] = {"gb": gen_gb, "data_bytes": data_bytes}
    free = shutil.disk_usage(work).free
    if free < 2 * data_bytes:
        result["skipped"] = f"{free / GB:.1f} GB free in {work}, need {2 * gen_gb:g} GB"
        return result
    manifest = _genserver.manifest(data_bytes)
    timeout = 300 + data_bytes / (10 * MB)  # >= 10 MB/s
    cache = tempfile.mkdtemp(prefix=f"streamed-{gen_gb:g}gb-", dir=work)
    gen = _genserver.GenServerProcess(python, data_bytes, level)
    try:
        with gen:
            url = gen.handle + "?tf-hub-format=compressed"
            print(f"[streamed {_gb(gen_gb)}] {url}", file=sys.stderr, flush=True)
            # The generator alone, for scale (is the client or the generator the limit?).
            if shutil.which("curl"):
                res = run_pipeline(
                    [["curl", "-s", "-f", "--noproxy", "*", "-o", os.devnull, url]],
                    env=child_env(),
                    timeout=timeout,
                )
                if res.returncode == 0:
                    result["generator_alone_s"] = res.wall
            res = run_pipeline(
                [[python, "-c", HUBCACHE_COLD_HWM, gen.handle, cache]],
                env=child_env(),
                timeout=timeout,
            )
        result["server"] = gen.stats  # requests counts the curl run too
        result["archive_bytes"] = gen.stats.get("sent_bytes", 0)
        result["process_wall_s"] = res.wall
        result["wait4_maxrss_kb"] = res.rss_kb
        try:
            out = parse_child(res)
        except (RuntimeError, ValueError) as e:
            result["error"] = str(e)
            return result
        result.update(
            seconds=out["seconds"],
            maxrss_kb=out["maxrss_kb"],
            base_maxrss_kb=out["base_maxrss_kb"],
            vmhwm_kb=out.get("vmhwm_kb"),
            version=out.get("version"),
        )
        problem = check_tree(out["path"], manifest)
        if problem:
            result["error"] = f"bad result at {out['path']}: {problem}"
        else:
            data = os.path.join(out["path"], *_genserver.DATA_NAME.split("/"))
            result["extracted_data_bytes"] = os.path.getsize(data)
    finally:
        rmtree(cache)
    return result


def streamed_table(results: Sequence[dict[str, Any]], level: int) -> str:
    lines = [
        f"### streamed: tar.gz generated on the fly (zlib level {level}, chunked, no "
        "Content-Length), one cold `hubcache.resolve` in a fresh process",
        "",
        "| variables file | archive MB | resolve | process wall | MB/s | peak RSS MB "
        "| VmHWM MB | generator alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = _gb(r["gb"])
        if r.get("skipped"):
            lines.append(f"| {size} | skipped: {r['skipped']} | | | | | | |")
            continue
        if r.get("error"):
            first = r["error"].strip().splitlines()
            lines.append(f"| {size} | FAILED: {(first[-1] if first else '?')[:120]} | | | | | | |")
            continue
        growth = (r["maxrss_kb"] - r["base_maxrss_kb"]) / 1024
        gen = r.get("generator_alone_s")
        hwm = r.get("vmhwm_kb")
        lines.append(
            f"| {size} (exact) | {r['archive_bytes'] / MB:.0f} | {fmt_time(r['seconds'])} | "
            f"{fmt_time(r['process_wall_s'])} | {r['archive_bytes'] / MB / r['seconds']:.0f} | "
            f"{r['maxrss_kb'] / 1024:.0f} (+{growth:.0f}) | "
            f"{f'{hwm / 1024:.0f}' if hwm else '–'} | {fmt_time(gen) if gen else '–'} |"
        )
    lines += [
        "",
        "Peak RSS: the child's ru_maxrss (in brackets: growth during the resolve call); "
        "VmHWM: the same peak from /proc, which does not start at the spawning process's "
        'peak. "exact": the extracted variables file has exactly N × 10^9 bytes.',
    ]
    for r in results:
        srv = r.get("server") or {}
        if srv.get("requests", 2) != 2 or srv.get("aborted"):
            lines.append(f"- {_gb(r['gb'])}: generator saw {srv} (curl + hubcache = 2 requests)")
    return "\n".join(lines)


def run_streamed(args: argparse.Namespace, out: str) -> int:
    if args.streamed_gb <= 0:
        raise SystemExit("--streamed-gb must be positive")
    work = os.path.join(out, "work")
    rmtree(work)
    os.makedirs(work)
    sizes = sorted({1.0, float(args.streamed_gb)})
    results: list[dict[str, Any]] = []
    try:
        for gen_gb in sizes:
            results.append(streamed_one(gen_gb, args.streamed_level, work, sys.executable))
    finally:
        rmtree(work)
    report = streamed_table(results, args.streamed_level)
    print("\n" + report + "\n", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"environment": environment(), "level": args.streamed_level, "streamed": results},
                f,
                indent=1,
            )
    failed = [r for r in results if r.get("error")]
    for r in failed:
        print(f"- [{_gb(r['gb'])}] {r['error']}", file=sys.stderr)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


def ratio(row: Row, ref: Optional[Row]) -> str:
    if ref is None or row.median is None or ref.median is None or ref.median <= 0:
        return "n/a"
    if row is ref:
        return "1.00×"
    return f"{row.median / ref.median:.2f}×"


def table(rows: Mapping[str, Row], archive: Archive) -> str:
    pigz = rows.get("curl_pigz_tar")
    refs: dict[str, tuple[Optional[Row], Optional[Row]]] = {
        "cold": (pigz, rows.get("tfhub_cold")),
        "call": (None, rows.get("tfhub_warm_call")),
        "cli": (None, None),
        "import": (None, None),
        "throttled": (rows.get("thr_curl_pigz_tar"), None),
    }
    lines = [
        f"### {archive.name}: {archive.archive_bytes / MB:.1f} MB archive, "
        f"{sum(archive.manifest.values()) / MB:.1f} MB extracted, "
        f"{len(archive.manifest)} files",
        "",
        "| method | median | min | vs curl\\|pigz\\|tar | vs tensorflow_hub | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        label = row.label.replace("|", "\\|")
        if row.skipped:
            lines.append(f"| {label} | skipped: {row.skipped} | | | | |")
            continue
        if not row.samples:
            first = row.errors[0].splitlines()[0] if row.errors else "no samples"
            lines.append(f"| {label} | FAILED: {first[:90]} | | | | |")
            continue
        vs_pigz, vs_tf = refs[row.kind]
        rss = "–"
        if row.rss_kb:
            rss = f"{statistics.median(row.rss_kb) / 1024:.0f}"
            if row.base_rss_kb and row.kind != "import":
                rss += f" (+{(statistics.median(row.rss_kb) - statistics.median(row.base_rss_kb)) / 1024:.0f})"  # noqa: E501
        note = f" ({len(row.errors)} failed)" if row.errors else ""
        lines.append(
            f"| {label}{note} | {fmt_time(row.median)} | {fmt_time(row.minimum)} | "
            f"{ratio(row, vs_pigz)} | {ratio(row, vs_tf)} | {rss} |"
        )
    notes = []
    hc, tf = rows.get("hubcache_cold"), rows.get("tfhub_cold")
    for r in (hc, tf):
        if r and r.samples and r.extra.get("process_wall_s"):
            walls = r.extra["process_wall_s"][-len(r.samples) :]
            notes.append(f"{r.key}: whole-process wall median {fmt_time(statistics.median(walls))}")
    for r in (hc, pigz):
        if r and r.median:
            notes.append(f"{r.key}: {archive.archive_bytes / MB / r.median:.0f} MB/s of archive")
    imp = rows.get("import")
    if imp and imp.samples:
        it = imp.extra.get("importtime_cumulative_us")
        if it is not None:
            notes.append(f"-X importtime: hubcache cumulative {it / 1000:.1f} ms")
    d, o = rows.get("thr_hubcache_default"), rows.get("thr_hubcache_1conn")
    if d and o and d.median and o.median:
        notes.append(
            f"throttled: default / single connection = {d.median / o.median:.2f}× "
            f"(< 1 means the default is faster)"
        )
    for r in rows.values():
        if r.extra.get("calls_per_rep"):
            notes.append(f"{r.key}: {r.extra['calls_per_rep']} calls per rep")
    lines += [
        "",
        "Peak RSS: child-reported ru_maxrss (in brackets: growth during the resolve "
        "call); pipelines: sum over their processes.",
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def parse_rate(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate in bytes/s: {text!r} (e.g. 20M)")
    mult = {"": 1, "k": 1_000, "m": MB, "g": 1_000_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes wants e.g. 100,1000, got {text!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[100],
        help="archive sizes in MB, comma separated (default: 100)",
    )
    p.add_argument("--reps", type=int, default=5, help="measured repetitions (default: 5)")
    p.add_argument(
        "--warm-calls",
        type=int,
        default=20_000,
        help="in-process warm calls per repetition (capped to ~2 s per rep)",
    )
    p.add_argument(
        "--rate-limit",
        type=parse_rate,
        default=None,
        metavar="BYTES_PER_SEC",
        help="also run throttled rows against `serve --rate-limit` (e.g. 20M)",
    )
    p.add_argument(
        "--tf-python",
        default=os.environ.get("HUBCACHE_TF_PYTHON") or os.path.expanduser(DEFAULT_TF_PYTHON),
        help=f"python with tensorflow_hub (default: $HUBCACHE_TF_PYTHON or {DEFAULT_TF_PYTHON})",
    )
    p.add_argument(
        "--skip",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="row keys to skip, e.g. tfhub_cold,curl_tar",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="work directory (default: benchmarks/out)")
    p.add_argument("--json", default=None, metavar="OUT", help="write raw numbers here")
    p.add_argument("--generate-only", action="store_true", help="only build the archives")
    p.add_argument("--regenerate", action="store_true", help="rebuild cached archives")
    p.add_argument(
        "--streamed-gb",
        type=float,
        default=None,
        metavar="N",
        help="instead of the rows above: one cold hubcache resolve of an N GB archive "
        "generated on the fly (chunked, never stored), and of 1 GB; reports peak RSS",
    )
    p.add_argument(
        "--streamed-level",
        type=int,
        choices=range(10),
        default=0,
        metavar="0-9",
        help="zlib level of the generated stream (default 0: the generator stays fast)",
    )
    return p


def environment() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        if shutil.which(argv[0]) is None:
            return "not installed"
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "curl": version(["curl", "--version"]),
        "pigz": version(["pigz", "--version"]),
        "tar": version(["tar", "--version"]),
    }


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind: the finally blocks stop the servers


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.reps < 1:
        raise SystemExit("--reps must be at least 1")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.streamed_gb is not None:
        return run_streamed(args, out)
    archives = [generate_archive(out, s, force=args.regenerate) for s in args.sizes]
    if args.generate_only:
        for a in archives:
            print(f"{a.path}\t{a.archive_bytes} bytes\tsha256 {a.sha256}")
        return 0

    work = os.path.join(out, "work")
    rmtree(work)
    os.makedirs(work)
    root = os.path.join(out, "archives")
    env_info = environment()
    print("environment: " + json.dumps(env_info), file=sys.stderr)
    results: dict[str, Any] = {
        "environment": env_info,
        "args": {
            "sizes": args.sizes,
            "reps": args.reps,
            "warm_calls": args.warm_calls,
            "rate_limit": args.rate_limit,
        },
        "sizes": {},
    }
    reports: list[str] = []
    try:
        with ExitStack() as stack:
            server = stack.enter_context(
                Server(sys.executable, root, os.path.join(out, "server.log"))
            )
            throttled = None
            if args.rate_limit is not None:
                throttled = stack.enter_context(
                    Server(
                        sys.executable,
                        root,
                        os.path.join(out, "server-throttled.log"),
                        args.rate_limit,
                    )
                )
            print(
                f"server: {server.base}" + (f", throttled: {throttled.base}" if throttled else ""),
                file=sys.stderr,
                flush=True,
            )
            for archive in archives:
                bench = Bench(args, archive, work)
                rows = bench.run(server.base, throttled.base if throttled else None)
                report = table(rows, archive)
                reports.append(report)
                print("\n" + report + "\n", flush=True)
                results["sizes"][archive.name] = {
                    "archive_bytes": archive.archive_bytes,
                    "rows": {k: dataclasses.asdict(r) for k, r in rows.items()},
                }
    finally:
        rmtree(work)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=1)
    failures = [
        (name, k, r["errors"])
        for name, s in results["sizes"].items()
        for k, r in s["rows"].items()
        if r["errors"]
    ]
    if failures:
        print("\nErrors (first of each):", file=sys.stderr)
        for name, key, errs in failures:
            print(f"- [{name}] {key}: {errs[0]}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
