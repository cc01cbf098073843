"""Measurements: each method run as its user would run it, repeated, results checked.

Cold methods take turns within each repetition (after one discarded warm-up round), so
drift from a noisy neighbour hits them alike. Every result directory is checked against
the archive's manifest before its time counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from . import inflate
from .children import HUBCACHE_COLD, HUBCACHE_WARM, TFHUB_COLD, TFHUB_WARM, blocking
from .datagen import MB, Archive
from .procs import FarLink, check_tree, child_env, parse_child, rmtree, run_pipeline


@dataclasses.dataclass
class Row:
    key: str
    label: str
    kind: str  # "limit" | "cold" | "call" | "cli" | "import" | "throttled" | "far"
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
            row.extra.setdefault("engine", out.get("engine"))
            problem = check_tree(out["path"], self.archive.manifest)
            if problem:
                self.fail(row, f"bad result at {out['path']}: {problem}")
                return None
            # VmHWM is the child's own peak; its ru_maxrss starts at this process's peak
            hwm = out.get("vmhwm_kb")
            if hwm:
                self.record(row, warm_up, out["seconds"], hwm)
            else:
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

    def run(
        self,
        base: str,
        throttled_base: Optional[str],
        *,
        warm: bool,
        far_base: Optional[str] = None,
    ) -> dict[str, Row]:
        """Every row for this archive; ``warm`` adds the warm, CLI and import rows (they
        do not depend on the data, so they run for the first archive only)."""
        a = self.archive
        handle = f"{base}/bench/{a.name}"  # a model handle: resolvers add ?tf-hub-format=
        archive_url = f"{handle}?tf-hub-format=compressed"
        reps = self.args.reps
        tf_python = (
            self.tf_python if self.tf_python and os.access(self.tf_python, os.X_OK) else None
        )
        if self.args.far_only:
            if far_base and self.args.far_link:
                self.run_far(far_base, self.args.far_link, tf_python)
            return self.rows
        self.inflate_alone(reps)
        r_tar = self.row("curl_tar", "curl | tar -xzf", "cold")
        r_pigz = self.row("curl_pigz_tar", "curl | pigz -dc | tar -xf", "cold")
        r_hc = self.row("hubcache_cold", "hubcache.resolve cold (fresh process)", "cold")
        r_hz = self.row(
            "hubcache_cold_zlib", "hubcache.resolve cold, without isal (stdlib zlib)", "cold"
        )
        r_tf = self.row("tfhub_cold", "tensorflow_hub hub.resolve cold (in-process)", "cold")
        if shutil.which("pigz") is None:
            r_pigz.skipped = "pigz not installed"
        if shutil.which("curl") is None:
            r_tar.skipped = r_pigz.skipped = "curl not installed"
        if a.size_mb > min(self.args.sizes):  # the same ratio at every size: save the time
            r_hz.skipped = r_hz.skipped or "run at the smallest size only"
        if tf_python is None:
            r_tf.skipped = (
                f"no tensorflow_hub python at {self.args.tf_python!r} "
                "(--tf-python / HUBCACHE_TF_PYTHON)"
            )
        hc_keep: Optional[str] = None
        tf_keep: Optional[str] = None
        for rep in range(reps + 1):
            warm_up = rep == 0
            tag = "warm-up" if warm_up else f"rep {rep}/{reps}"
            print(f"[{a.name}] cold {tag}", file=sys.stderr, flush=True)
            keep = rep == reps and warm
            for row, pigz in ((r_tar, False), (r_pigz, True)):
                if not row.skipped:
                    self.curl_tar(row, archive_url, warm_up, pigz=pigz)
            for row, blocked in ((r_hc, ()), (r_hz, ("isal", "zlib_ng"))):
                if row.skipped:
                    continue
                d = self.fresh_dir(row.key)
                code = blocking(blocked) + HUBCACHE_COLD
                kept = self.python_cold(
                    row,
                    self.python,
                    code,
                    [handle, d],
                    env=child_env(),
                    warm_up=warm_up,
                    dest=d,
                    keep=keep and row is r_hc,
                )
                hc_keep = kept or hc_keep
            if not r_tf.skipped and tf_python:
                d = self.fresh_dir("tfhub")
                tf_keep = (
                    self.python_cold(
                        r_tf,
                        tf_python,
                        TFHUB_COLD,
                        [handle],
                        env=self.tf_env(d),
                        warm_up=warm_up,
                        dest=d,
                        keep=keep,
                    )
                    or tf_keep
                )
        if warm:
            self.run_warm(handle, hc_keep, tf_keep, tf_python)
        if throttled_base:
            self.run_throttled(throttled_base)
        if far_base and self.args.far_link:
            self.run_far(far_base, self.args.far_link, tf_python)
        return self.rows

    def tf_env(self, cache_dir: str) -> dict[str, str]:
        return child_env(
            {
                "TFHUB_CACHE_DIR": cache_dir,
                "TFHUB_MODEL_LOAD_FORMAT": "COMPRESSED",
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
        )

    def inflate_alone(self, reps: int) -> None:
        """The limit: each decoder inflating the archive from the page cache, no disk."""
        for result in inflate.measure(self.python, self.archive.path, reps):
            name = result["decoder"]
            row = self.row(
                f"inflate_{name}", f"inflate alone, {name} (no disk: the limit)", "limit"
            )
            if result.get("skipped"):
                row.skipped = result["skipped"]
            elif result.get("error"):
                self.fail(row, result["error"])
            else:
                row.samples = list(result["samples"])

    def run_warm(
        self,
        handle: str,
        hc_keep: Optional[str],
        tf_keep: Optional[str],
        tf_python: Optional[str],
    ) -> None:
        """Warm rows on the caches the last cold repetition filled, and import time."""
        a, reps = self.archive, self.args.reps
        r_call = self.row("hubcache_warm_call", "hubcache.resolve warm (per call)", "call")
        r_cli = self.row("hubcache_cli_warm", "`hubcache resolve URL` warm (whole process)", "cli")
        r_tfcall = self.row("tfhub_warm_call", "tensorflow_hub hub.resolve warm (per call)", "call")
        r_imp = self.row("import", "`import hubcache` (fresh process)", "import")
        if hc_keep is None:
            for r in (r_call, r_cli):
                r.skipped = r.skipped or "no cold hubcache result to reuse"
        if tf_keep is None:
            r_tfcall.skipped = r_tfcall.skipped or "no cold tensorflow_hub result"
        print(f"[{a.name}] warm", file=sys.stderr, flush=True)
        if hc_keep is not None:
            hc_root = self._root_of(hc_keep)
            if not r_call.skipped:
                self.python_warm(r_call, self.python, HUBCACHE_WARM, [handle, hc_root], child_env())
            if not r_cli.skipped:
                for rep in range(reps + 1):
                    self.cli_warm(r_cli, handle, hc_root, hc_keep, warm_up=rep == 0)
        if tf_keep is not None and tf_python and not r_tfcall.skipped:
            env = self.tf_env(self._root_of(tf_keep))
            self.python_warm(r_tfcall, tf_python, TFHUB_WARM, [handle], env)
        if not r_imp.skipped:
            self.import_time(r_imp, max(reps, 5))
        for keep in (hc_keep, tf_keep):
            if keep:
                rmtree(self._root_of(keep))

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

    # -- far link ---------------------------------------------------------------------

    def download_only(self, row: Row, argv: Sequence[str], out: str, timeout: float) -> None:
        """A downloader alone (no inflate, no extraction): its whole process, wall time."""
        res = run_pipeline([argv], env=child_env(), timeout=timeout)
        try:
            if res.returncode != 0:
                self.fail(row, f"exit {res.returncode}: {res.stderr[-1500:].strip()}")
                return
            size = os.path.getsize(out) if os.path.exists(out) else -1
            if size != self.archive.archive_bytes:
                self.fail(row, f"downloaded {size} bytes, expected {self.archive.archive_bytes}")
                return
            self.record(row, False, res.wall, res.rss_kb)
        finally:
            rmtree(os.path.dirname(out))

    def run_far(self, base: str, spec: FarLink, tf_python: Optional[str]) -> None:
        """The far-link rows: hubcache and tensorflow_hub cold (resolve call, as above)
        against what the link gives a downloader alone: ``aria2c -x8`` (8 connections, the
        best a download can do here) and one ``curl`` stream. Interleaved per repetition,
        no warm-up round (the archive is in the server's page cache already)."""
        a = self.archive
        handle = f"{base}/bench/{a.name}"
        url = f"{handle}?tf-hub-format=compressed"
        timeout = 120 + a.archive_bytes / spec.per_conn * 3
        r_hc = self.row("far_hubcache", "far link: hubcache.resolve cold", "far")
        r_tf = self.row("far_tfhub", "far link: tensorflow_hub hub.resolve cold", "far")
        r_aria = self.row("far_aria2c", "far link: aria2c -x8 -s8 -k1M, download only", "far")
        r_curl = self.row("far_curl", "far link: curl, one stream, download only", "far")
        self.far = spec
        if shutil.which("aria2c") is None:
            r_aria.skipped = "aria2c not installed (apt-get install aria2)"
        if shutil.which("curl") is None:
            r_curl.skipped = "curl not installed"
        if tf_python is None:
            r_tf.skipped = "no tensorflow_hub python"
        aria = ["aria2c", "-x8", "-s8", "-k1M", "-q", "--file-allocation=none",
                "--allow-overwrite=true", "--auto-file-renaming=false", "--no-conf"]  # fmt: skip
        for rep in range(1, self.args.reps + 1):
            print(f"[{a.name}] far link rep {rep}/{self.args.reps}", file=sys.stderr, flush=True)
            if not r_aria.skipped:
                d = self.fresh_dir(r_aria.key)
                self.download_only(r_aria, [*aria, "-d", d, "-o", "a.tar.gz", url],
                                   os.path.join(d, "a.tar.gz"), timeout)  # fmt: skip
            if not r_hc.skipped:
                d = self.fresh_dir(r_hc.key)
                self.python_cold(r_hc, self.python, HUBCACHE_COLD, [handle, d], env=child_env(),
                                 warm_up=False, dest=d, keep=False, timeout=timeout)  # fmt: skip
            if not r_curl.skipped:
                d = self.fresh_dir(r_curl.key)
                out = os.path.join(d, "a.tar.gz")
                self.download_only(r_curl, ["curl", "-s", "-f", "--noproxy", "*", "-o", out, url],
                                   out, timeout)  # fmt: skip
            if not r_tf.skipped and tf_python:
                d = self.fresh_dir("far-tfhub")
                self.python_cold(r_tf, tf_python, TFHUB_COLD, [handle], env=self.tf_env(d),
                                 warm_up=False, dest=d, keep=False, timeout=timeout)  # fmt: skip
