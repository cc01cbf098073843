"""Benchmark archives: SavedModel-shaped ``.tar.gz`` files, generated once and cached.

Three data sets, each at any size (``N`` MB of model files):

* ``weights``: float32 tensors drawn from a normal distribution (what trained weights look
  like to a compressor: gzip level 6 keeps about 93 % of their size), in two variables
  shards, plus ``variables.index``, a small ``saved_model.pb``, ``fingerprint.pb`` and a
  vocabulary asset (``assets/vocab.txt``).
* ``mixed``: the same files, but the tensors are a mix of float32 (normal), zero-filled
  (untrained slots, masks), int8-quantised and float16 tensors: more compressible, with the
  long runs and skewed bytes that exercise the inflater's other paths.
* ``random``: random bytes for the variables and ~5 % compressed text (the old benchmark's
  data): deflate emits *stored* blocks, so inflating is close to a copy and the run measures
  I/O, hashing and extraction.

Archives live in ``<out>/archives/bench/<set>-<N>mb.tar.gz`` with a ``.json`` sidecar
(member sizes and sha256); a sidecar whose spec differs from the current one is rebuilt.
numpy (a benchmark-only dependency) draws the tensors; compression is the standard
library's zlib at level 6, as ``tar -czf`` and Python's ``tarfile`` write them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import random
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

GENERATOR_VERSION = 3
MB = 1_000_000  # sizes are decimal megabytes
SETS = ("weights", "mixed", "random")
MTIME = 1_700_000_000


@dataclasses.dataclass
class Archive:
    kind: str  # one of SETS
    size_mb: int
    path: str  # the .tar.gz
    name: str  # "weights-100mb"
    archive_bytes: int
    manifest: dict[str, int]  # member path -> size (regular files only)
    sha256: str

    @property
    def extracted_bytes(self) -> int:
        return sum(self.manifest.values())


class _Generated(io.RawIOBase):
    """A read-only stream of ``size`` bytes produced chunk by chunk (never all in memory)."""

    def __init__(self, size: int, chunk: Callable[[int], bytes]) -> None:
        super().__init__()
        self._left = size
        self._chunk = chunk  # at most n bytes per call
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


# -- text and protobuf-like members ------------------------------------------------------

_ZIPF26 = list(itertools.accumulate(1.0 / (r + 1) for r in range(26)))


def _words(rng: random.Random, count: int) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    return [
        "".join(rng.choices(letters, cum_weights=_ZIPF26, k=rng.randint(2, 9)))
        for _ in range(count)
    ]


def vocabulary(rng: random.Random, tokens: int) -> bytes:
    """A vocabulary file: one token per line, like BERT's vocab.txt (30k lines, ~230 KB)."""
    seen: set[str] = set()
    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    while len(lines) < tokens:
        for word in _words(rng, tokens):
            token = word if rng.random() < 0.7 else "##" + word
            if token not in seen:
                seen.add(token)
                lines.append(token)
            if len(lines) >= tokens:
                break
    return ("\n".join(lines) + "\n").encode("ascii")


def _word_pool(rng: random.Random, size: int) -> bytes:
    """Text with Zipf-distributed words (deflates ~2-3x, like merges or vocab files)."""
    vocab = _words(rng, 8_000)
    cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))
    out = io.StringIO()
    written = index = 0
    while written < size:
        words = rng.choices(vocab, cum_weights=cum, k=2_000)
        for k in range(0, len(words), 2):
            line = f"{words[k]} {words[k + 1]}\t{index}\n"
            out.write(line)
            written += len(line)
            index += 1
    return out.getvalue().encode("ascii")[:size]


def _text_chunker(rng: random.Random, pool: bytes) -> Callable[[int], bytes]:
    """Chunks cut from a pool at random offsets: deflate only sees 32 KiB back, so the
    compression ratio equals the pool's own, and generation stays cheap for GBs."""

    def chunk(n: int) -> bytes:
        n = min(n, len(pool) // 2)
        start = rng.randrange(0, len(pool) - n)
        nl = pool.find(b"\n", start, start + 200)  # start on a line boundary
        start = nl + 1 if nl >= 0 else start
        return pool[start : start + n]

    return chunk


def saved_model_pb(rng: random.Random, size: int) -> bytes:
    """Protobuf-ish bytes: op names and attributes (compressible) around constants (not)."""
    ops = [b"VarHandleOp", b"ReadVariableOp", b"MatMul", b"BiasAdd", b"Relu", b"Conv2D"]
    ops += [b"StatefulPartitionedCall", b"Identity", b"Const", b"AssignVariableOp"]
    out = bytearray()
    i = 0
    while len(out) < size:
        op = rng.choice(ops)
        name = b"model/layer_%d/%s_%d" % (i % 97, op.lower(), i)
        out += b"\n" + bytes([len(name) & 0x7F]) + name + b"\x12" + bytes([len(op)]) + op
        out += b"*\x0b\n\x05dtype\x12\x020\x01" + rng.randbytes(rng.randint(0, 24))
        i += 1
    return bytes(out[:size])


def variables_index(rng: random.Random, names: list[str]) -> bytes:
    """A small sorted-table-like index: variable names with offsets and checksums."""
    out = bytearray()
    for name in sorted(names):
        raw = name.encode() + b"/.ATTRIBUTES/VARIABLE_VALUE"
        out += bytes([0, len(raw) & 0xFF]) + raw + rng.randbytes(12)
    return bytes(out + b"\x00" * 16 + rng.randbytes(32))


# -- tensors -------------------------------------------------------------------------------

# (kind, share of the variables' bytes) per data set
_TENSOR_MIX = {
    "weights": [("float32", 1.0)],
    "mixed": [("float32", 0.55), ("zeros", 0.15), ("int8", 0.2), ("float16", 0.1)],
}
_PIECE = 4 * 1024 * 1024  # bytes drawn per numpy call


def _tensor_plan(kind: str, total: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """(variable name, tensor kind, bytes) for layers whose sizes vary like a real model's."""
    plan: list[tuple[str, str, int]] = []
    mix = _TENSOR_MIX[kind]
    layer = 0
    left = total
    while left > 0:
        size = min(left, rng.choice((256, 1024, 4096)) * rng.choice((256, 768, 1024, 3072)) * 4)
        r, acc = rng.random(), 0.0
        pick = mix[-1][0]
        for name, share in mix:
            acc += share
            if r < acc:
                pick = name
                break
        plan.append((f"layer_{layer:04d}/{'kernel' if size > 4096 else 'bias'}", pick, size))
        left -= size
        layer += 1
    return plan


def _tensor_bytes(plan: list[tuple[str, str, int]], seed: int) -> Iterator[bytes]:
    try:
        import numpy as np  # benchmark-only dependency
    except ImportError:
        raise SystemExit(
            "the benchmark data needs numpy, which is not installed: pip install -e '.[bench]'"
        ) from None

    gen = np.random.default_rng(seed)
    for _name, kind, size in plan:
        left = size
        scale = float(gen.uniform(0.02, 0.2))  # per-tensor spread, like initialised layers
        while left > 0:
            n = min(left, _PIECE)
            if kind == "zeros":
                yield bytes(n)
            elif kind == "int8":
                q = np.clip(np.rint(gen.normal(0.0, 24.0, n)), -127, 127).astype(np.int8)
                yield q.tobytes()
            elif kind == "float16":
                yield gen.normal(0.0, scale, n // 2 + 1).astype(np.float16).tobytes()[:n]
            else:
                yield gen.normal(0.0, scale, n // 4 + 1).astype(np.float32).tobytes()[:n]
            left -= n


def _stream_of(pieces: Iterator[bytes]) -> Callable[[int], bytes]:
    def chunk(_n: int) -> bytes:
        return next(pieces, b"")

    return chunk


# -- archives ------------------------------------------------------------------------------


def _members(kind: str, size_mb: int) -> list[tuple[str, int, Callable[[int], bytes]]]:
    target = size_mb * MB
    rng = random.Random(f"{kind}-{size_mb}")
    pb = saved_model_pb(rng, 200 * 1024)
    fixed: list[tuple[str, bytes]] = [("saved_model.pb", pb), ("fingerprint.pb", rng.randbytes(56))]
    if kind == "random":
        pool = _word_pool(rng, 4 * 1024 * 1024)
        ratio = len(pool) / len(zlib.compress(pool, 6))
        text_raw = int(0.05 * target * ratio)  # ~5 % of the archive is compressed text
        index = variables_index(rng, [f"layer_{i:03d}/kernel" for i in range(200)])
        data_size = max(1, target - int(0.05 * target) - len(pb) // 2 - len(index))
        return [
            *((name, len(data), lambda _n, b=data: b) for name, data in fixed),
            ("variables/variables.data-00000-of-00001", data_size, rng.randbytes),
            ("variables/variables.index", len(index), lambda _n, b=index: b),
            ("assets/vocab.txt", int(text_raw * 0.6), _text_chunker(rng, pool)),
            ("assets/merges.txt", text_raw - int(text_raw * 0.6), _text_chunker(rng, pool)),
        ]
    vocab = vocabulary(rng, 30_522)
    fixed.append(("assets/vocab.txt", vocab))
    data_total = max(2, target - sum(len(d) for _, d in fixed) - 64 * 1024)
    plan = _tensor_plan(kind, data_total, rng)
    index = variables_index(rng, [name for name, _, _ in plan])
    # Two shards, split at a tensor boundary near the middle, as large checkpoints are.
    half, acc, cut = data_total // 2, 0, len(plan)
    for i, (_, _, size) in enumerate(plan):
        acc += size
        if acc >= half:
            cut = i + 1
            break
    shards = [plan[:cut], plan[cut:]] if cut < len(plan) else [plan]
    members = [(name, len(data), lambda _n, b=data: b) for name, data in fixed]
    members.append(("variables/variables.index", len(index), lambda _n, b=index: b))
    for i, shard in enumerate(shards):
        name = f"variables/variables.data-{i:05d}-of-{len(shards):05d}"
        size = sum(s for _, _, s in shard)
        members.append((name, size, _stream_of(_tensor_bytes(shard, seed=size_mb * 10 + i))))
    return members


def generate(out_dir: str, kind: str, size_mb: int, *, force: bool = False) -> Archive:
    """Create (or reuse) ``<out_dir>/archives/bench/<kind>-<N>mb.tar.gz`` and its sidecar."""
    if kind not in SETS:
        raise ValueError(f"unknown data set {kind!r} (one of {', '.join(SETS)})")
    bench_dir = os.path.join(out_dir, "archives", "bench")
    os.makedirs(bench_dir, exist_ok=True)
    name = f"{kind}-{size_mb}mb"
    path = os.path.join(bench_dir, name + ".tar.gz")
    meta_path = path + ".json"
    spec = {"generator": GENERATOR_VERSION, "kind": kind, "size_mb": size_mb, "gzip_level": 6}
    if not force and os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("spec") == spec and meta.get("archive_bytes") == os.path.getsize(path):
            return Archive(
                kind, size_mb, path, name, meta["archive_bytes"], meta["manifest"], meta["sha256"]
            )
    print(f"generating {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    members = _members(kind, size_mb)
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for d in ("variables", "assets"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for member, size, chunk in members:
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = size, 0o644, MTIME
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
        f"  {meta['archive_bytes'] / MB:.1f} MB archive, {sum(manifest.values()) / MB:.1f} MB "
        f"of files, in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return Archive(kind, size_mb, path, name, meta["archive_bytes"], manifest, meta["sha256"])


DEMO = "demo"  # the small-model case: hubcache's own 10 kB demo SavedModel


def demo(out_dir: str) -> Archive:
    """``<out_dir>/archives/bench/demo.tar.gz``: the demo SavedModel shipped in the package
    (a few kB), packed as tensorflow_hub's hosts serve models; rebuilt on every run."""
    src = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "src", "hubcache", "_data", "sample_model",
    )  # fmt: skip
    bench_dir = os.path.join(out_dir, "archives", "bench")
    os.makedirs(bench_dir, exist_ok=True)
    path = os.path.join(bench_dir, DEMO + ".tar.gz")
    manifest: dict[str, int] = {}
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        for folder, dirs, files in sorted(os.walk(src)):
            dirs.sort()
            if folder != src:  # tensorflow_hub's extraction needs the folders as members
                info = tar.gettarinfo(folder, arcname=os.path.relpath(folder, src))
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
                tar.addfile(info)
            for name in sorted(files):
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, src).replace(os.sep, "/")
                info = tar.gettarinfo(full, arcname=rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
                with open(full, "rb") as f:
                    tar.addfile(info, f)
                manifest[rel] = info.size
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return Archive(DEMO, 0, path, DEMO, os.path.getsize(path), manifest, digest)
