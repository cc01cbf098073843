"""KerasHub's per-file calls on a small preset: one file at a time, or the whole version first?

KerasHub's ``from_preset("kaggle://...")`` calls ``kagglehub.model_download(handle, path)``
once per file. Through the kagglehub plug-in, the first call fetches the whole version (its
files in parallel, or its archive past 25 files) and the later calls are marker hits. This
times the whole sequence of calls, on the local Kaggle test server (tests/support/kaggle.py),
for a KerasHub-shaped preset of 8 files (configs, a ~230 KB vocabulary, weights of
``--weights-mb``), each way:

* ``plugin_files``: the plug-in as it is: the version's files in parallel on the first call;
* ``plugin_archive``: the plug-in, the version as one archive (the server lists one file a
  page, as for a big version, so hubcache takes the archive);
* ``hubcache_per_file``: what fetching only the asked file would cost: each call one download
  call and one signed URL, through hubcache's one download loop, one after the other (the
  listing is skipped: a lower bound);
* ``kagglehub_alone``: kagglehub without the plug-in (it fetches each file as asked).

Each on loopback, and with ``--far DELAY,PER_CONN,LINK`` (default 0.1,20M,160M) on far
storage: every answer of the API and of storage waits DELAY seconds, each storage response
is paced to PER_CONN bytes/s and all of them share LINK bytes/s, with ranges (as a far CDN
or signed bucket answers). Every run starts from empty caches and its files are checked.
Prints figures; never asserts on time.

    python benchmarks/bench_kaggle_preset.py [--weights-mb 20] [--reps 3] [--far 0.1,20M,160M]
    python benchmarks/bench_kaggle_preset.py --smoke     # CI: 1 MB, one repetition
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HANDLE = "keras/bert/keras/bench_preset/1"
# KerasHub's order for a classifier preset (backbone config first, weights last).
CALLS = (
    "config.json",
    "metadata.json",
    "task.json",
    "preprocessor.json",
    "tokenizer.json",
    "assets/tokenizer/vocabulary.txt",
    "model.weights.h5",
    "task.weights.h5",
)


def preset(weights_mb: float) -> dict[str, bytes]:
    rng = random.Random(22)
    vocab = "".join(f"tok{i:05d}\n" for i in range(23_000)).encode()  # ~230 KB, like BERT's
    files = {
        "config.json": b'{"module": "keras_hub.src.models.bert.bert_backbone", "config": {}}',
        "metadata.json": b'{"keras_version": "3.10.0", "keras_hub_version": "0.32.0"}',
        "task.json": b'{"class_name": "BertTextClassifier", "config": {"num_classes": 2}}',
        "preprocessor.json": b'{"class_name": "BertTextClassifierPreprocessor"}',
        "tokenizer.json": b'{"class_name": "BertTokenizer", "config": {"lowercase": true}}',
        "assets/tokenizer/vocabulary.txt": vocab,
        "model.weights.h5": b"\x89HDF" + rng.randbytes(int(weights_mb * 1_000_000)),
        "task.weights.h5": b"\x89HDF" + rng.randbytes(int(weights_mb * 1_000_000 / 40)),
    }
    assert set(files) == set(CALLS)
    return files


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Bench:
    def __init__(self, files: dict[str, bytes]) -> None:
        from tests.support.kaggle import KaggleModel, KaggleWorld

        self.files = files
        self.expected = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        self.world = KaggleWorld()
        owner, model, framework, variation, _version = HANDLE.split("/")
        self.world.kaggle.add(KaggleModel(owner, model, framework, variation, {1: files}))
        self.scratch = tempfile.mkdtemp(prefix="bench-kaggle-")
        self.home = os.path.join(self.scratch, "home")
        os.makedirs(self.home)

    def __enter__(self) -> Bench:
        self.world.__enter__()
        os.environ.update(self.world.env())
        os.environ.update(
            {
                "HOME": self.home,
                "HUBCACHE_PROGRESS": "0",
                "KAGGLE_CONFIG_DIR": self.home,
            }
        )
        for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
            os.environ.pop(name, None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.world.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def fresh(self) -> None:
        """Empty caches for the next run (hubcache's root and kagglehub's)."""
        run = tempfile.mkdtemp(dir=self.scratch)
        os.environ["TFHUB_CACHE_DIR"] = os.path.join(run, "hubcache")
        os.environ["KAGGLEHUB_CACHE"] = os.path.join(run, "kagglehub")

    def setting(self, far: tuple[float, int, int] | None, archive: bool) -> None:
        storage, kaggle = self.world.storage, self.world.kaggle
        if far is None:
            storage.delay, storage.per_conn, storage.ranges = 0.0, 0, False
            kaggle.delay = 0.0
        else:
            storage.far(*far)
            kaggle.delay = far[0]
        kaggle.page_cap = 1 if archive else 0

    # -- the ways -------------------------------------------------------------------------
    def kagglehub_calls(self, plugin: bool) -> tuple[float, float]:
        """KerasHub's calls through kagglehub: (first call, all calls), in seconds."""
        import kagglehub

        import hubcache.kagglehub

        if plugin:
            hubcache.kagglehub.install()
        else:
            hubcache.kagglehub.uninstall()
        try:
            began = time.perf_counter()
            first = 0.0
            for name in CALLS:
                with contextlib.redirect_stderr(io.StringIO()):  # kagglehub's progress bars
                    path = kagglehub.model_download(HANDLE, path=name)
                first = first or time.perf_counter() - began
                self.check(name, path)
            return first, time.perf_counter() - began
        finally:
            hubcache.kagglehub.uninstall()

    def hubcache_per_file(self) -> tuple[float, float]:
        """Each call fetches only its file: one download call and its signed URL, through
        the stager's one loop (what a per-file mode would cost at least)."""
        from hubcache._config import load_config
        from hubcache._resolve import parse
        from hubcache._stage import stage
        from hubcache.fetch.plan import FileSet, FileSetPlan
        from hubcache.kaggle.api import KaggleApi
        from hubcache.kaggle.download import KaggleDownload
        from hubcache.kaggle.identity import parse_slug
        from hubcache.kaggle.settings import kaggle_settings

        raw = f"kaggle:{HANDLE}"
        handle, config = parse(raw), load_config()
        model = parse_slug(HANDLE, raw)
        api = KaggleApi(kaggle_settings(), None, config, raw)
        began = time.perf_counter()
        first = 0.0
        for i, name in enumerate(CALLS):

            def one(n: str, budget: Any) -> KaggleDownload:
                return KaggleDownload(api, model, raw, config, budget, path=n)

            plan = FileSetPlan(files=(FileSet(name),), open=one, label=name, source=raw)
            staging = os.path.join(os.environ["TFHUB_CACHE_DIR"], f"file{i}")
            os.makedirs(os.path.dirname(staging), exist_ok=True)
            stage(handle, f"file{i}", staging, config, None, plan=plan)
            first = first or time.perf_counter() - began
            self.check(name, os.path.join(staging, name))
        return first, time.perf_counter() - began

    def check(self, name: str, path: str) -> None:
        if digest(path) != self.expected[name]:
            raise SystemExit(f"wrong bytes for {name} at {path}")


def parse_far(text: str) -> tuple[float, int, int]:
    def rate(value: str) -> int:
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1:].upper(), 1)
        return int(float(value.rstrip("KMGkmg")) * scale)

    delay, per_conn, link = text.split(",")
    return float(delay), rate(per_conn), rate(link)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-mb", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--far", default="0.1,20M,160M", help="DELAY,PER_CONN,LINK ('' for none)")
    parser.add_argument("--smoke", action="store_true", help="CI: 1 MB weights, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.weights_mb, args.reps, args.far = 1.0, 1, "0.02,20M,160M"
    try:
        import kagglehub  # noqa: F401 - the plug-in's rows need it
    except ImportError:
        print("kagglehub is not installed (pip install -e '.[test]'): nothing to measure")
        return 0
    import logging

    logging.getLogger("kagglehub").setLevel(logging.WARNING)
    files = preset(args.weights_mb)
    total = sum(len(d) for d in files.values())
    print(f"preset: {len(files)} files, {total / 1e6:.1f} MB; {len(CALLS)} calls; reps {args.reps}")
    settings: list[tuple[str, tuple[float, int, int] | None]] = [("loopback", None)]
    if args.far:
        settings.append((f"far {args.far}", parse_far(args.far)))
    with Bench(files) as bench:
        ways: dict[str, Callable[[], tuple[float, float]]] = {
            "plugin_files": lambda: bench.kagglehub_calls(plugin=True),
            "plugin_archive": lambda: bench.kagglehub_calls(plugin=True),
            "hubcache_per_file": bench.hubcache_per_file,
            "kagglehub_alone": lambda: bench.kagglehub_calls(plugin=False),
        }
        for label, far in settings:
            times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
            # one discarded warm-up round (lazy imports), then the ways take turns, so a busy
            # moment hits them alike
            for rep in range(args.reps + (0 if args.smoke else 1)):
                for way, run in ways.items():
                    bench.setting(far, archive=way == "plugin_archive")
                    bench.fresh()
                    got = run()
                    if rep or args.smoke:
                        times[way].append(got)
            print(f"\n{label}: seconds, median of {args.reps} (min)")
            print(f"{'way':<20}{'first call':>18}{'all 8 calls':>18}")
            for way, got in times.items():
                firsts, alls = [t[0] for t in got], [t[1] for t in got]
                print(
                    f"{way:<20}{statistics.median(firsts):>10.3f} ({min(firsts):.3f})"
                    f"{statistics.median(alls):>10.3f} ({min(alls):.3f})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
