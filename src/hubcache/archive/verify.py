"""Check an archive's integrity while its bytes pass by, without extracting it.

The pull-through mirror (``hubcache serve --upstream``) keeps archives as the original
bytes, so it never extracts; but it must never keep a corrupt or hostile one for others.
:class:`ArchiveVerifier` runs the same checks as a download (``extract``): the format by
magic number, the compressed stream's own integrity (gzip CRC and length, bz2/xz ends),
the tar structure and end marker, and the member names and limits of ``safetree``; files
are counted, never written. A zip's index is at its end, so a zip is checked from the
finished local file (every member's CRC).
"""

from __future__ import annotations

from typing import Optional

from .._config import Limits
from .._errors import CorruptArchiveError, NotAnArchiveError
from .decode import DecodeError, Decoder, make_decoder, sniff
from .safetree import HashedSink, MemberWriter, SafeTree
from .tarstream import TarReader


class _CountingWriter(HashedSink):
    """Counted and hashed, never written; its digest lets an identical repeat pass."""

    __slots__ = ("_tree",)

    def __init__(self, tree: SafeTree, rel: str, size: int) -> None:
        super().__init__(rel, size)
        self._tree = tree

    def close(self) -> None:
        super().close()
        self._tree.files[self.rel] = (self.size, self.sha256)


class _NameTree(SafeTree):
    """SafeTree's rules on names, duplicates and limits, with nothing written to disk."""

    def __init__(self, limits: Limits) -> None:
        super().__init__("", limits, fsync=False)

    def _mkdir(self, rel: str) -> None:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if parent not in self.dirs:
            self._check_parents(rel)
        self.dirs.add(rel)

    def _open_writer(self, rel: str, size: Optional[int], mode: int) -> MemberWriter:
        return _CountingWriter(self, rel, size or 0)  # tar members always declare a size


class ArchiveVerifier:
    """``feed`` every byte in order, then ``finish``; raises an ``ArchiveError`` subclass."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.format = ""
        self._head = b""
        self._decoder: Optional[Decoder] = None
        self._tree = _NameTree(limits)
        self._reader = TarReader(self._tree)
        self._in = 0
        self._out = 0

    def feed(self, data: bytes) -> None:
        self._in += len(data)
        if self.format:
            self._feed_all(data)
            return
        self._head += data  # until the format is known (512 bytes)
        if len(self._head) >= 512:
            self._start()
            head, self._head = self._head, b""
            self._feed_all(head)

    def _start(self) -> None:
        fmt = sniff(self._head)
        if fmt in ("empty", "html", "json", "unknown"):
            what = {"empty": "an empty body", "html": "an HTML page", "json": "a JSON document"}
            raise NotAnArchiveError(
                f"the upstream sent {what.get(fmt, 'something that is not an archive')} "
                "where a model archive was expected"
            )
        self.format = fmt
        if fmt != "zip":
            self._decoder = make_decoder(fmt)

    def _feed_all(self, data: bytes) -> None:
        if self._decoder is None:
            return  # zip: checked from the file at the end
        try:
            for out in self._decoder.feed(data):
                self._inflated(out)
        except DecodeError as exc:
            raise CorruptArchiveError(str(exc)) from None

    def _inflated(self, out: bytes) -> None:
        self._out += len(out)
        if self._out > 16 * 1024 * 1024 and self._out > self.limits.max_ratio * self._in:
            raise CorruptArchiveError(
                f"the archive expands more than {self.limits.max_ratio:g} times"
            )
        self._reader.feed(out)

    def finish(self, path: Optional[str] = None) -> None:
        """The end of the stream; ``path`` is the whole archive on disk (needed for zip)."""
        if not self.format:
            self._start()  # fewer than 512 bytes in all
            head, self._head = self._head, b""
            self._feed_all(head)
        if self._decoder is not None:
            try:
                for out in self._decoder.finish():
                    self._inflated(out)
            except DecodeError as exc:
                raise CorruptArchiveError(str(exc)) from None
            self._reader.finish()
        elif path is not None:
            _check_zip(path)
        if self._decoder is not None and not self._tree.files:
            raise CorruptArchiveError("the archive contains no files")


def _check_zip(path: str) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            empty = not archive.infolist()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:  # fmt: skip
        raise CorruptArchiveError(f"the zip archive is corrupt: {exc}") from None
    if empty:
        raise CorruptArchiveError("the zip archive contains no files")
    if bad is not None:
        raise CorruptArchiveError(f"zip member {bad!r} is corrupt (CRC mismatch)")
