"""What the tensorflow_hub plug-in costs and gains, measured; prints figures, asserts nothing.

1. Start-up: ``python -c pass`` in a throwaway environment with and without
   ``hubcache-tfhub.pth`` (runs interleaved, median of each; noisy on a busy machine), the
   hook's own import time from ``python -X importtime``, and the time ``site.addpackage``
   takes to process the ``.pth`` in a fresh process (the cost itself, without the noise of
   starting processes).
2. ``hub.load`` through the plug-in against tensorflow_hub alone (``HUBCACHE_TFHUB_PLUGIN=0``):
   the demo SavedModel, plus one copy padded with a random asset of ``--size-mb`` MB, served
   on 127.0.0.1. In a fresh process and a fresh cache: the first ``hub.load`` (cold: download,
   extract, TensorFlow's load), a second ``hub.load`` (warm), and the warm ``hub.resolve`` per
   call (mean of 2000); in another, a cold ``hub.resolve`` alone (download and extract).

    HUBCACHE_TF_PYTHON=$(bash .ci/tf-env.sh | tail -1) python benchmarks/bench_tfhub_plugin.py
    ... python benchmarks/bench_tfhub_plugin.py --smoke    # CI: 2 MB, one repetition

The throwaway environment is made from the TF environment's python with ``--without-pip``;
a ``.pth`` of paths puts the TF environment's packages and this checkout's ``src`` on it.
Everything it creates is removed on exit.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
SAMPLE = SRC / "hubcache" / "_data" / "sample_model"

CHILD = r"""
import json, os, sys, time
import tensorflow as tf
import tensorflow_hub as hub
url = sys.argv[1]
if sys.argv[2] == "resolve":
    t = time.perf_counter(); hub.resolve(url); cold = time.perf_counter() - t
    print("RESULT " + json.dumps({"cold_resolve": cold}))
    sys.exit(0)
t = time.perf_counter(); hub.load(url); cold = time.perf_counter() - t
t = time.perf_counter(); hub.load(url); warm = time.perf_counter() - t
n = 2000
t = time.perf_counter()
for _ in range(n):
    hub.resolve(url)
per_call = (time.perf_counter() - t) / n
print("RESULT " + json.dumps({"cold": cold, "warm": warm, "resolve_us": per_call * 1e6}))
"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.path = self.path.split("?", 1)[0]
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


def env(**extra: str) -> dict[str, str]:
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TFHUB_", "HUBCACHE_"))
        and k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE"}
    }
    # Bytecode is written (and used): an installed package has its .pyc files, and timing
    # the compilation of hubcache's modules would not measure hubcache.
    out.update(TF_CPP_MIN_LOG_LEVEL="3", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    out.update(extra)
    return out


def make_venv(tf_python: str, root: Path) -> tuple[str, Path]:
    subprocess.run([tf_python, "-m", "venv", "--without-pip", str(root)], check=True)
    python = str(root / "bin" / "python")
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", where], capture_output=True, text=True, check=True)
    tf_site = subprocess.run([tf_python, "-c", where], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "00-paths.pth").write_text(f"{SRC}\n{tf_site.stdout.strip()}\n")
    subprocess.run(
        [python, "-m", "hubcache", "tfhub", "enable", "-q"],
        check=True,
        env=env(),
        stdout=subprocess.DEVNULL,
    )
    return python, Path(site.stdout.strip(), "hubcache-tfhub.pth")


def startup(python: str, pth: Path, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"with": [], "without": []}
    off = pth.with_suffix(".off")
    for _ in range(runs):
        for label in ("with", "without"):
            if label == "without":
                pth.rename(off)
            try:
                t = time.perf_counter()
                subprocess.run([python, "-c", "pass"], check=True, env=env())
                times[label].append(time.perf_counter() - t)
            finally:
                if label == "without":
                    off.rename(pth)
    hook = []
    for _ in range(runs):
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", "pass"],
            capture_output=True,
            text=True,
            env=env(),
            check=False,
        )
        match = re.search(r"import time:\s+(\d+) \|\s+\d+ \|\s+_hubcache_tfhub", proc.stderr)
        if match:
            hook.append(float(match.group(1)))
    # The .pth's own cost, in process (no process-start noise): what site does with it.
    probe = (
        "import site, sys, time; t = time.perf_counter_ns(); "
        "site.addpackage(sys.argv[1], sys.argv[2], set()); "
        "print((time.perf_counter_ns() - t) / 1e3)"
    )
    pth.rename(off)
    try:
        processed = [
            float(
                subprocess.run(
                    [python, "-c", probe, str(pth.parent), off.name],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env(),
                ).stdout
            )
            for _ in range(runs)
        ]
    finally:
        off.rename(pth)
    return {
        "pth_us": statistics.median(processed),
        "with_ms": statistics.median(times["with"]) * 1e3,
        "without_ms": statistics.median(times["without"]) * 1e3,
        "hook_import_us": statistics.median(hook) if hook else float("nan"),
    }


def pack(src: Path, archive: Path, pad_mb: int) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp, "m")
        shutil.copytree(src, model)
        if pad_mb:
            with open(model / "assets" / "padding.bin", "wb") as f:
                for _ in range(pad_mb):
                    f.write(os.urandom(1 << 20))
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for path in sorted(model.rglob("*")):
                tar.add(path, arcname=path.relative_to(model).as_posix(), recursive=False)


def load_times(python: str, url: str, plugin: bool, reps: int, work: Path) -> dict[str, float]:
    rows: list[dict[str, float]] = []
    for rep in range(2 * (reps + 1)):  # the first of each kind is a warm-up, discarded
        kind = "resolve" if rep % 2 else "load"
        cache = work / f"cache-{plugin}-{rep}"
        extra = {"TFHUB_CACHE_DIR": str(cache)}
        if not plugin:
            extra["HUBCACHE_TFHUB_PLUGIN"] = "0"
        proc = subprocess.run(
            [python, "-c", CHILD, url, kind],
            capture_output=True,
            text=True,
            env=env(**extra),
            check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
        shutil.rmtree(cache, ignore_errors=True)
        if rep >= 2:
            rows.append(json.loads(lines[-1][7:]))
    keys = {k for r in rows for k in r}
    return {k: statistics.median(r[k] for r in rows if k in r) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tf-python", default=os.environ.get("HUBCACHE_TF_PYTHON", ""))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=40)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--startup-only", action="store_true", help="skip the hub.load rows")
    parser.add_argument("--smoke", action="store_true", help="CI check: 2 MB, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.reps, args.startup_runs, args.size_mb = 1, 2, 2
        if not args.tf_python:  # no TF environment: nothing of this benchmark can run
            print("smoke run skipped: no tensorflow_hub environment (HUBCACHE_TF_PYTHON)")
            return 0
    if not args.tf_python:
        parser.error("set HUBCACHE_TF_PYTHON or --tf-python (bash .ci/tf-env.sh | tail -1)")
    work = Path(tempfile.mkdtemp(prefix="bench-tfhub-"))
    # TensorFlow leaves autograph's generated modules in the temp folder: give the children
    # one inside the work folder, which goes at the end (env() passes TMPDIR on).
    (work / "tmp").mkdir()
    os.environ["TMPDIR"] = str(work / "tmp")
    httpd = None
    try:
        python, pth = make_venv(args.tf_python, work / "venv")
        s = startup(python, pth, args.startup_runs)
        print(f"start-up, python -c pass, median of {args.startup_runs}:")
        print(f"  with the .pth     {s['with_ms']:8.2f} ms")
        print(f"  without           {s['without_ms']:8.2f} ms")
        print(f"  difference        {s['with_ms'] - s['without_ms']:8.2f} ms")
        print(f"  hook import (-X importtime, self) {s['hook_import_us']:.0f} us")
        print(f"  the .pth processed by site.addpackage, in process: {s['pth_us']:.0f} us")
        if args.startup_only:
            return 0
        www = work / "www"
        pack(SAMPLE, www / "tiny" / "1", 0)
        pack(SAMPLE, www / "big" / "1", args.size_mb)
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(www))
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        print(f"\nhub.load, median of {args.reps} fresh processes (cold = empty cache):")
        print(
            f"  {'model':<14}{'who':<22}{'cold resolve':>13}{'cold load':>11}{'warm load':>11}"
            f"{'warm resolve':>14}"
        )
        for name, label in (("tiny", "demo"), ("big", f"demo+{args.size_mb}MB")):
            for plugin in (True, False):
                r = load_times(python, base + f"{name}/1", plugin, args.reps, work)
                who = "hubcache plug-in" if plugin else "tensorflow_hub alone"
                print(
                    f"  {label:<14}{who:<22}{r['cold_resolve'] * 1e3:10.0f} ms"
                    f"{r['cold'] * 1e3:8.0f} ms{r['warm'] * 1e3:8.0f} ms"
                    f"{r['resolve_us']:10.1f} us"
                )
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
