"""A push parser for tar streams: decompressed bytes in, safe files out.

Why not ``tarfile``: in stream mode it copies every block through its own buffers, it
accepts a stream cut at a member boundary, and its extraction filters were bypassed on the
Python this project runs on (docs/architecture.md). This parser reads ustar, GNU (long
names) and pax (path, size) headers, verifies every header checksum, writes file data
straight from the decompressor's buffers with ``os.write``, and hands every member to
:class:`SafeTree`, which alone decides what may be written.

Everything but regular files and directories is refused: hard and symbolic links, devices,
FIFOs, sparse and multi-volume members. The archive must end with an end-of-archive block;
only zero bytes may follow it.
"""

from __future__ import annotations

from typing import Optional

from .._errors import CorruptArchiveError, UnsafeArchiveError
from .safetree import MemberWriter, SafeTree

BLOCK = 512
_MAX_META = 1024 * 1024  # a pax or GNU long-name header larger than this is not a real one

_REFUSED = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"K": "a link (GNU long link name)",
    b"S": "a sparse file",
    b"M": "a multi-volume continuation",
    b"V": "a volume label",
    b"N": "an old GNU long-name member",
}

_HEADER, _DATA, _META, _SKIP, _END = range(5)


def _cstr(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def _number(field: bytes, what: str) -> int:
    """An octal or base-256 (GNU) numeric header field."""
    if field[:1] and field[0] & 0x80:
        if field[0] & 0x40:
            raise CorruptArchiveError(f"tar header has a negative {what}")
        value = field[0] & 0x3F
        for byte in field[1:]:
            value = (value << 8) | byte
        return value
    text = _cstr(field).strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise CorruptArchiveError(f"tar header has an invalid {what} field {text!r}") from None


def _parse_pax(data: bytes) -> dict[str, str]:
    """Records of the form ``"<len> <key>=<value>\\n"``."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise CorruptArchiveError("malformed pax header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise CorruptArchiveError("malformed pax header length") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise CorruptArchiveError("malformed pax header record")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class TarReader:
    """Feed it decompressed bytes with :meth:`feed`; call :meth:`finish` at the end."""

    def __init__(self, tree: SafeTree) -> None:
        self.tree = tree
        self.offset = 0  # bytes of tar stream fed before the current call, for messages
        self._state = _HEADER
        self._header = bytearray()
        self._remaining = 0  # data bytes left in the current member
        self._padding = 0  # bytes of block padding after it
        self._writer: Optional[MemberWriter] = None
        self._meta = bytearray()
        self._meta_kind = b""
        self._pax: dict[str, str] = {}
        self._longname: Optional[str] = None
        self._member = ""

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            state = self._state
            if state in (_DATA, _META):
                take = min(self._remaining, end - pos)
                if self._writer is not None:  # _DATA
                    self._writer.write(view[pos : pos + take])
                else:
                    self._meta += view[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._end_member()
            elif state == _SKIP:
                take = min(self._padding, end - pos)
                pos += take
                self._padding -= take
                if self._padding == 0:
                    self._state = _HEADER
            elif state == _HEADER:
                if not self._header and end - pos >= BLOCK:
                    block = view[pos : pos + BLOCK].tobytes()
                    pos += BLOCK
                else:
                    take = min(BLOCK - len(self._header), end - pos)
                    self._header += view[pos : pos + take]
                    pos += take
                    if len(self._header) < BLOCK:
                        continue
                    block = bytes(self._header)
                    self._header.clear()
                self._on_header(block, self.offset + pos - BLOCK)
                continue
            else:  # _END: only zero padding may follow the end-of-archive block
                rest = view[pos:end]
                if rest.tobytes().count(0) != len(rest):
                    raise CorruptArchiveError(
                        "the tar archive has data after its end-of-archive marker"
                    )
                pos = end
        self.offset += end

    def finish(self) -> None:
        if self._state == _END:
            return
        if self._writer is not None:
            self._writer.abort()
        if self._state in (_DATA, _META) or self._header:
            raise CorruptArchiveError(
                f"the tar archive is truncated inside member {self._member!r}"
                if self._member
                else "the tar archive is truncated inside a header"
            )
        raise CorruptArchiveError(
            "the tar archive ends without an end-of-archive marker (the stream was cut "
            "at a member boundary)"
        )

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    # -- headers -----------------------------------------------------------------------
    def _on_header(self, block: bytes, offset: int) -> None:
        if block.count(0) == BLOCK:
            if self._pax or self._longname is not None:
                raise CorruptArchiveError("the tar archive ends after an extended header")
            self._state = _END
            return
        stored = _number(block[148:156], "checksum")
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        if stored != unsigned and stored != _signed_sum(block):
            raise CorruptArchiveError(
                f"tar header checksum mismatch at offset {offset}: the archive is corrupt"
            )
        kind = block[156:157]
        size = _number(block[124:136], "size")
        if kind in (b"x", b"g", b"L"):
            if size > _MAX_META:
                raise UnsafeArchiveError(f"tar extended header of {size} bytes is too large")
            self._meta_kind = kind
            self._meta.clear()
            self._begin(size, _META)
            return
        name = self._name(block)
        self._member = name
        if "size" in self._pax:
            try:
                size = int(self._pax["size"])
            except ValueError:
                raise CorruptArchiveError(f"invalid pax size for member {name!r}") from None
        if any(key.startswith("GNU.sparse") for key in self._pax):
            kind = b"S"
        self._pax = {}
        self._longname = None
        if kind in _REFUSED:
            raise UnsafeArchiveError(
                f"archive member {name!r} is {_REFUSED[kind]}; only regular files and "
                "directories are allowed"
            )
        if kind == b"5" or (kind in (b"0", b"\x00") and name.endswith("/")):
            self.tree.add_dir(name)
            self._begin(size, _DATA, skip=True)
        elif kind in (b"0", b"\x00", b"7"):
            mode = _number(block[100:108], "mode")
            self._writer = self.tree.add_file(name, size, mode)
            self._begin(size, _DATA)
        else:
            raise UnsafeArchiveError(f"archive member {name!r} has the unsupported type {kind!r}")

    def _name(self, block: bytes) -> str:
        if "path" in self._pax:
            return self._pax["path"]
        if self._longname is not None:
            return self._longname
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\x00":  # POSIX ustar: a prefix field extends the name
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        return name.decode("utf-8", "surrogateescape")

    def _begin(self, size: int, state: int, *, skip: bool = False) -> None:
        self._padding = (-size) % BLOCK
        if skip:  # a directory with data: skip it with its padding
            self._padding += size
            size = 0
        if size == 0:
            self._remaining = 0
            self._end_member()
            return
        self._remaining = size
        self._state = state

    def _end_member(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
        elif self._meta_kind:
            kind, self._meta_kind = self._meta_kind, b""
            if kind == b"L":
                self._longname = _cstr(bytes(self._meta)).decode("utf-8", "surrogateescape")
            elif kind == b"x":
                self._pax.update(_parse_pax(bytes(self._meta)))
            # b"g": global pax headers carry defaults we do not use (no ownership, no times)
            self._meta.clear()
        self._state = _SKIP if self._padding else _HEADER


def _signed_sum(block: bytes) -> int:
    def signed(b: int) -> int:
        return b - 256 if b > 127 else b

    return sum(signed(b) for b in block[:148]) + 256 + sum(signed(b) for b in block[156:])
