"""An archive factory for extraction tests, including archives no honest tool would write.

Normal members are encoded with :meth:`tarfile.TarInfo.tobuf` (the same bytes ``tar`` and
Python write); raw 512-byte headers are crafted only where tarfile refuses or where the point
is an unusual encoding: old GNU sparse members, GNU ``././@LongLink`` names, a name hidden in a
pax header behind a harmless ustar name, and sizes that lie about the data that follows.
Everything is deterministic (fixed mtime, seeded randomness) so failures reproduce.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

BLOCK = 512
MTIME = 1_600_000_000
_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "pax_path": tarfile.REGTYPE,
    "gnu_longname": tarfile.REGTYPE,
    "sparse": tarfile.GNUTYPE_SPARSE,
}


@dataclass
class M:
    """One archive member.

    ``type`` is one of file, dir, symlink, hardlink, chr, blk, fifo, or a regular file with an
    unusual encoding: ``pax_path`` (the real name only in a pax header; the ustar name field
    says ``pax-placeholder``), ``gnu_longname`` (name in a ``././@LongLink`` record, even when
    short) or ``sparse`` (old GNU 'S' member: ``data`` stored at the end of a hole).
    ``size_override`` makes the header declare that size whatever ``data`` holds; for
    ``sparse`` it is the expanded size (default 1 GiB)."""

    name: str
    data: bytes = b""
    type: str = "file"
    linkname: Optional[str] = None
    mode: Optional[int] = None  # default 0o644, directories 0o755
    size_override: Optional[int] = None
    devmajor: int = 1
    devminor: int = 3


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def _num(value: int, width: int) -> bytes:
    """A tar numeric field: octal, or GNU base-256 when it does not fit."""
    if value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    return b"\x80" + value.to_bytes(width - 1, "big")


def raw_header(
    name: bytes,
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    linkname: bytes = b"",
    gnu: bool = True,
    extra: Optional[dict[int, bytes]] = None,
) -> bytes:
    """One 512-byte header with a correct checksum; ``extra`` patches bytes at offsets."""
    buf = bytearray(BLOCK)
    buf[0:100] = name[:100].ljust(100, b"\0")
    buf[100:108] = _num(mode, 8)
    buf[108:116] = _num(0, 8)
    buf[116:124] = _num(0, 8)
    buf[124:136] = _num(size, 12)
    buf[136:148] = _num(MTIME, 12)
    buf[156:157] = typeflag
    buf[157:257] = linkname[:100].ljust(100, b"\0")
    buf[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    for offset, value in (extra or {}).items():
        buf[offset : offset + len(value)] = value
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def _member(m: M) -> bytes:
    size = len(m.data) if m.size_override is None else m.size_override
    mode = m.mode if m.mode is not None else (0o755 if m.type == "dir" else 0o644)
    name = m.name.encode("utf-8", "surrogateescape")
    if m.type == "sparse":
        real = m.size_override or 1 << 30
        sparse_map = _num(real - len(m.data), 12) + _num(len(m.data), 12)
        header = raw_header(
            name,
            typeflag=b"S",
            size=len(m.data),
            mode=mode,
            extra={386: sparse_map, 482: b"\0", 483: _num(real, 12)},
        )
        return header + _pad(m.data)
    if m.type == "gnu_longname":
        long_record = raw_header(b"././@LongLink", typeflag=b"L", size=len(name) + 1, mode=0)
        return (
            long_record + _pad(name + b"\0") + raw_header(name, size=size, mode=mode) + _pad(m.data)
        )
    info = tarfile.TarInfo("pax-placeholder" if m.type == "pax_path" else m.name)
    if m.type == "pax_path":
        info.pax_headers = {"path": m.name}
    info.type, info.mode, info.mtime, info.size = _TYPES[m.type], mode, MTIME, size
    info.linkname = m.linkname or ""
    info.devmajor, info.devminor = m.devmajor, m.devminor
    # Sizes past ustar's 8 GiB go in the header as GNU base-256 (as GNU tar writes them), so
    # even a reader that ignores pax records sees the lie.
    if size >= 8**11 and m.type != "pax_path":
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + _pad(m.data)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + _pad(m.data)


def compress(data: bytes, compression: Optional[str]) -> bytes:
    """``None``, "gz" (mtime 0, deterministic), "bz2" or "xz"."""
    if compression is None:
        return data
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    raise ValueError(f"unknown compression {compression!r}")


def make_tar(
    members: Iterable[M],
    *,
    compression: Optional[str] = None,
    end_marker: bool = True,
    dest: Union[str, os.PathLike[str], None] = None,
) -> bytes:
    """The archive's bytes (also written to ``dest`` when given). With ``end_marker`` the two
    zero blocks follow and the result is padded to 10 KiB records, as GNU tar does."""
    data = b"".join(_member(m) for m in members)
    if end_marker:
        data += b"\0" * (2 * BLOCK)
        data += b"\0" * (-len(data) % tarfile.RECORDSIZE)
    out = compress(data, compression)
    if dest is not None:
        with open(dest, "wb") as f:
            f.write(out)
    return out


def tar_dir(
    src: Union[str, os.PathLike[str]],
    dest: Union[str, os.PathLike[str]],
    *,
    compression: Optional[str] = "gz",
    prefix: str = "",
) -> None:
    """Stream a directory tree into an archive on disk (for models too big to build in
    memory); member names are ``prefix`` + the path relative to ``src``."""
    mode = "w:" + (compression or "")
    with tarfile.open(dest, mode) as tar:  # type: ignore[call-overload]
        for entry in sorted(os.listdir(src)):
            tar.add(os.path.join(src, entry), arcname=prefix + entry)


class RawHeader(NamedTuple):
    offset: int
    name: bytes  # the 100-byte name field, NUL-stripped
    typeflag: bytes
    size: int
    linkname: bytes
    raw: bytes  # the whole 512-byte block


def _parse_num(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def iter_raw_headers(tar: bytes) -> Iterator[RawHeader]:
    """Every header block, extension records (pax 'x', GNU 'L') included, without any of
    tarfile's interpretation; stops at the first zero block or the end of the data."""
    offset = 0
    while offset + BLOCK <= len(tar):
        block = tar[offset : offset + BLOCK]
        if block == b"\0" * BLOCK:
            return
        size = _parse_num(block[124:136])
        yield RawHeader(
            offset,
            block[:100].rstrip(b"\0"),
            block[156:157],
            size,
            block[157:257].rstrip(b"\0"),
            block,
        )
        offset += BLOCK + size + (-size % BLOCK)


def pax_records(tar: bytes, header: RawHeader) -> dict[str, str]:
    """The key=value records of a pax 'x' header found by :func:`iter_raw_headers`."""
    body = tar[header.offset + BLOCK : header.offset + BLOCK + header.size].decode("utf-8")
    records = {}
    while body:
        length = int(body.split(" ", 1)[0])
        key, _, value = body[:length].split(" ", 1)[1].rstrip("\n").partition("=")
        records[key], body = value, body[length:]
    return records


# --- gzip mutations -------------------------------------------------------------------------


def flip_byte(data: bytes, offset: int) -> bytes:
    """Invert every bit of one byte (negative offsets count from the end)."""
    buf = bytearray(data)
    buf[offset] ^= 0xFF
    return bytes(buf)


def cut(data: bytes, n: int) -> bytes:
    """``data[:n]``: keep the first ``n`` bytes, or drop the last ``-n`` when negative."""
    return data[:n]


def strip_trailer(gz: bytes) -> bytes:
    """Remove the CRC32 and ISIZE trailer of a single-member gzip stream."""
    return gz[:-8]


def append_garbage(gz: bytes, garbage: bytes = b"this is not gzip") -> bytes:
    return gz + garbage


def concat_members(*gz: bytes) -> bytes:
    """A multi-member gzip stream (valid: decompressors must read every member)."""
    return b"".join(gz)


def cut_at_member_boundary(tar_or_gz: bytes, keep: Optional[int] = 1) -> bytes:
    """A *valid* gzip stream (correct CRC and ISIZE) of a tar holding only the first ``keep``
    members (None: all) and no end-of-archive blocks: truncation nothing but the tar layer
    can notice."""
    tar = gzip.decompress(tar_or_gz) if tar_or_gz[:2] == b"\x1f\x8b" else tar_or_gz
    ends = [
        h.offset + BLOCK + h.size + (-h.size % BLOCK)
        for h in iter_raw_headers(tar)
        if h.typeflag not in (b"x", b"g", b"L", b"K")
    ]
    end = ends[-1] if keep is None else (ends[keep - 1] if keep else 0)
    return gzip.compress(tar[:end], mtime=0)


def gzip_trailer_ok(gz: bytes) -> bool:
    """True when a single-member gzip stream's 8-byte trailer is present, ends the data and
    matches the inflated content. Inflates raw deflate and compares by hand, so it does not
    depend on the checks under test."""
    if gz[:3] != b"\x1f\x8b\x08":
        return False
    flags, pos = gz[3], 10
    if flags & 4:  # FEXTRA
        pos += 2 + int.from_bytes(gz[pos : pos + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: NUL-terminated
        if flags & bit:
            pos = gz.index(b"\0", pos) + 1
    pos += 2 if flags & 2 else 0  # FHCRC
    inflater = zlib.decompressobj(wbits=-15)
    try:
        data = inflater.decompress(gz[pos:]) + inflater.flush()
    except zlib.error:
        return False
    trailer = inflater.unused_data
    return (
        inflater.eof
        and len(trailer) == 8
        and int.from_bytes(trailer[:4], "little") == zlib.crc32(data)
        and int.from_bytes(trailer[4:], "little") == len(data) % (1 << 32)
    )


# --- zip --------------------------------------------------------------------------------------


def make_zip(members: Iterable[M]) -> bytes:
    """A zip with names taken verbatim (``..``, absolute, duplicates); symlinks are Unix
    entries whose mode (external_attr) says S_IFLNK and whose content is the target."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of some cases
        for m in members:
            name, data = m.name, m.data
            info = zipfile.ZipInfo(name, date_time=(2020, 9, 13, 12, 26, 40))
            info.create_system = 3  # Unix, so external_attr carries st_mode
            if m.type == "dir":
                info.filename = name if name.endswith("/") else name + "/"
                info.external_attr = (stat.S_IFDIR | (m.mode or 0o755)) << 16 | 0x10
            elif m.type == "symlink":
                data = (m.linkname or "").encode()
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif m.type == "file":
                info.external_attr = (stat.S_IFREG | (m.mode or 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
            else:
                raise ValueError(f"zip has no {m.type!r} members")
            zf.writestr(info, data)
    return buf.getvalue()


# --- realistic models --------------------------------------------------------------------------


def saved_model_tree(
    directory: Union[str, os.PathLike[str]], *, variables_bytes: int = 1 << 20, seed: int = 0
) -> dict[str, str]:
    """Write a SavedModel-shaped tree without TensorFlow: saved_model.pb, variables/ (index +
    incompressible random data of ``variables_bytes``), assets/vocab.txt (compressible text).
    Returns relative path (with '/') -> sha256 hex, to check an extraction against."""
    rng = random.Random(seed)
    root = os.fspath(directory)
    digests: dict[str, str] = {}

    def write(rel: str, chunks: Iterable[bytes]) -> None:
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
        digests[rel] = digest.hexdigest()

    def random_chunks(total: int) -> Iterator[bytes]:
        while total > 0:
            n = min(total, 1 << 20)
            total -= n
            yield rng.randbytes(n)

    write("saved_model.pb", [b"\x08\x01\x12\x0e" + b"fake-meta-graph" + rng.randbytes(256)])
    write("variables/variables.index", [b"\x00\x01index" + rng.randbytes(64)])
    write("variables/variables.data-00000-of-00001", random_chunks(variables_bytes))
    words = [f"token{i:05d}\n".encode() for i in range(5000)]
    write("assets/vocab.txt", [b"".join(words)])
    return digests


# --- hostile and benign cases ------------------------------------------------------------------

_LONG = "/".join(["d" * 100] * 41) + "/f"  # 4143 bytes: over PATH_MAX, each part legal
_DEEP = "/".join(["d"] * 69 + ["f"])  # 70 components

HOSTILE_TAR_CASES: dict[str, list[M]] = {
    # hubcache strips every leading "/" (tensorflow_hub's lstrip("/")), so "//etc/x" is
    # benign (BENIGN_TAR_NAMES); only a ".." can still escape after the strip:
    "abs_dotdot": [M("/../x", b"x")],
    "dotdot": [M("../x", b"x")],
    "nested_dotdot": [M("a/../../x", b"x")],
    "dir_dotdot": [M("a/..", b"x")],
    "pax_path_dotdot": [M("../x", b"x", type="pax_path")],
    "gnu_longname_dotdot": [M("../" + "x" * 120, b"x", type="gnu_longname")],
    "symlink_outside": [M("link", type="symlink", linkname="../../outside")],
    "symlink_absolute": [M("link", type="symlink", linkname="/etc/passwd")],
    "symlink_inside": [M("a/target", b"x"), M("a/link", type="symlink", linkname="target")],
    "symlink_write_through": [
        M("link", type="symlink", linkname="/tmp"),
        M("link/hubcache-escape-test", b"pwned"),
    ],
    "symlink_write_through_relative": [
        M("link", type="symlink", linkname=".."),
        M("link/hubcache-escape-test", b"pwned"),
    ],
    "hardlink_outside": [M("h", type="hardlink", linkname="../outside")],
    "hardlink_absolute": [M("h", type="hardlink", linkname="/etc/passwd")],
    "hardlink_inside": [M("a", b"x"), M("b", type="hardlink", linkname="a")],
    "char_device": [M("dev", type="chr", devmajor=1, devminor=3)],
    "block_device": [M("dev", type="blk", devmajor=8, devminor=0)],
    "fifo": [M("pipe", type="fifo")],
    "duplicate_file": [M("a", b"first"), M("a", b"second")],
    "duplicate_file_same_size": [M("a", b"one"), M("a", b"two")],
    "duplicate_file_other_mode": [M("a", b"x", mode=0o644), M("a", b"x", mode=0o755)],
    "file_then_dir": [M("a", b"x"), M("a", type="dir")],
    "dir_then_file": [M("a", type="dir"), M("a", b"x")],
    "huge_declared_size": [M("big", b"tiny", size_override=1 << 40)],
    "sparse": [M("sparse", b"data", type="sparse", size_override=1 << 30)],
    "name_over_4096": [M(_LONG, b"x")],
    "depth_70": [M(_DEEP, b"x")],
}

# name in the archive -> where it must land, relative to the extraction directory
BENIGN_TAR_NAMES: dict[str, str] = {
    "..hidden": "..hidden",
    "a/..b/c": "a/..b/c",
    "a/b..": "a/b..",
    "...": "...",
    "./x": "x",
    "/x": "x",  # leading "/" are stripped, as tensorflow_hub does
    "/etc/x": "etc/x",
    "//etc/x": "etc/x",  # every leading "/" goes, as tensorflow_hub's lstrip("/") does
}


def hostile_tar(case: str, compression: Optional[str] = "gz") -> bytes:
    return make_tar(HOSTILE_TAR_CASES[case], compression=compression)
