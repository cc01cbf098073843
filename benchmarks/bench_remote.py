"""Time resolving a 50 MB model into remote cache roots (gs:// on fake-gcs-server, s3:// on
moto), cold and warm, next to a local root. Prints figures; never asserts on time.

    python benchmarks/bench_remote.py [--mb 50] [--reps 3]
    python benchmarks/bench_remote.py --smoke     # CI: 2 MB, one repetition

Both emulators run on 127.0.0.1 in subprocesses and are stopped on exit. The emulators keep
objects in memory on the same 2 cores as the client, so the figures bound the client's
overhead from above rather than measure a real bucket.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def make_archive(mb: int) -> bytes:
    """A SavedModel-shaped .tar.gz: nearly incompressible variables, a graph, some text."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("saved_model.pb", os.urandom(100_000)),
            ("variables/variables.index", os.urandom(10_000)),
            ("variables/variables.data-00000-of-00001", os.urandom(mb * 1_000_000)),
            ("assets/vocab.txt", b"word\n" * 20_000),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="CI check: 2 MB, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.mb, args.reps = 2, 1

    import fsspec.config
    from tests.support.emulators import start_gcs, start_s3
    from tests.support.httpserver import ModelServer

    import hubcache

    archive = make_archive(args.mb)
    emulators = [start_gcs(), start_s3()]
    try:
        for emulator in emulators:
            os.environ.update(emulator.env())
        fsspec.config.conf.setdefault("gs", {})["token"] = "anon"  # noqa: S105 - no credentials
        with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
            print(f"archive: {len(archive) / 1e6:.1f} MB; GCS emulator: {emulators[0].name}")
            for label, emulator in (("local", None), *((e.scheme, e) for e in emulators)):
                cold, warm = [], []
                for rep in range(args.reps):
                    path = f"/bench/{label}{rep}"
                    server.add(path, archive)
                    url = server.url(path)
                    if emulator is None:
                        root = os.path.join(tmp, f"local{rep}")
                    else:
                        root = f"{emulator.scheme}://{emulator.new_bucket()}/cache"
                    start = time.perf_counter()
                    hubcache.resolve(url, cache_dir=root)
                    cold.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    hubcache.resolve(url, cache_dir=root)
                    warm.append(time.perf_counter() - start)
                rate = len(archive) / 1e6 / statistics.median(cold)
                print(
                    f"{label:>6}: cold median {statistics.median(cold):6.2f} s "
                    f"(min {min(cold):.2f}, {rate:5.1f} MB/s)"
                    f"  warm median {statistics.median(warm) * 1000:7.1f} ms"
                )
    finally:
        for emulator in emulators:
            emulator.stop()


if __name__ == "__main__":
    main()
