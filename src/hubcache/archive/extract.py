"""Extract: bytes of an archive in, a verified tree in a staging folder out.

The archive is never held whole. Three stages, joined by bounded queues: a network thread
reads the socket, counts the archive's bytes and hashes them; an inflating thread
decompresses (the longest task, a C call that releases the GIL, so it gets a core to
itself); this thread parses tar headers, hashes each file and writes it as its bytes
arrive. Profiled on float32 weights (per 100 MB: inflate ~0.4 s of CPU, network and
archive hash ~0.15 s, tar, file hashes and writes ~0.15 s), the other two stages share
the second core and a cold resolve runs close to the inflater's own speed; on random data
(stored blocks, inflate is a copy) the three are about even. Zip is the exception: its
index sits at the end, so a remote zip is spooled to an unnamed temporary file first.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple, Optional

from .. import _faults
from .._config import Limits
from .._errors import CorruptArchiveError, HubcacheError, NotAnArchiveError, UnsafeArchiveError
from ..fetch.progress import Progress
from ..fetch.source import Source
from .decode import DecodeError, make_decoder, sniff
from .safetree import SafeTree
from .tarstream import TarReader

_RATIO_GRACE = 16 * 1024 * 1024  # compression-ratio checks start after this much output
# Chunks (about 1 MiB each) buffered between two stages: enough to keep both cores busy,
# small enough to keep peak memory flat (a few MiB per queue) whatever the archive.
_QUEUE_DEPTH = 4
# An archive this small is extracted in this thread alone: starting two threads and
# handing its few chunks across would cost more than the overlap gains (a 10 kB model
# resolved 0.5-1.5 ms faster this way, of ~7 ms without the syncs).
_SMALL = 1024 * 1024


class Extracted(NamedTuple):  # not a dataclass: cheaper to import on every miss
    format: str
    archive_bytes: int
    archive_sha256: str
    files: dict[str, list[Any]]
    dirs: list[str]


class _Meter:
    """Counts and hashes the archive's bytes as they pass (in the network thread, which
    has the cycles to spare: the sha256 is a C call that releases the GIL)."""

    def __init__(self, progress: Optional[Progress]) -> None:
        self.sha256 = hashlib.sha256()
        self.count = 0
        self._progress = progress

    def wrap(self, chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
        for chunk in chunks:
            self.sha256.update(chunk)
            self.count += len(chunk)
            _faults.checkpoint("mid-download")
            if self._progress is not None:
                self._progress.update(len(chunk))
            yield chunk


_END = object()
_JOIN_GRACE = 2.0


def read_ahead(
    chunks: Iterator[bytes],
    depth: int = _QUEUE_DEPTH,
    on_stop: Optional[Callable[[], None]] = None,
    name: str = "hubcache-reader",
) -> Generator[bytes, None, None]:
    """Run ``chunks`` in a thread, handing results over a bounded queue.

    Exceptions raised by the producer are re-raised in the consumer; when the consumer
    stops early (an error downstream, Ctrl-C) the producer is told to stop, ``on_stop``
    unblocks a read it may be waiting in (the source's ``cancel``), and it is joined for
    at most ``_JOIN_GRACE`` seconds: a daemon thread still stuck after that cannot hold
    the process, and nothing it does touches the staging folder.
    """
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:
            q.put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if on_stop is not None and thread.is_alive():
            on_stop()
        deadline = time.monotonic() + _JOIN_GRACE
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _describe_body(head: bytes, content_type: str) -> str:
    shown = head[:80].decode("utf-8", "backslashreplace")
    kind = f" (Content-Type {content_type})" if content_type else ""
    return f"{kind}, starting with {shown!r}"


def _not_an_archive(source: Source, fmt: str, head: bytes) -> NotAnArchiveError:
    """What a server sent instead of an archive is quoted (a proxy's login page explains
    itself); a local file's bytes never are: a token or key file named by mistake would
    end up in a terminal or a CI log."""
    what = {"empty": "an empty body", "html": "an HTML page", "json": "a JSON document"}
    if source.local_file() is not None:
        kind = {"empty": "an empty file"}.get(fmt, what.get(fmt, "a file of another kind"))
        return NotAnArchiveError(
            f"{source.display} is not a tar or zip archive ({kind}); give the model's "
            "archive (.tar, .tar.gz, .zip) or, for import, the .tar that `hubcache export` wrote"
        )
    return NotAnArchiveError(
        f"{source.display} returned {what.get(fmt, 'something that is not an archive')} "
        f"where a model archive was expected{_describe_body(head, source.content_type)}"
        + (
            "; a proxy login page or an access-denied page often looks like this"
            if fmt == "html"
            else ""
        )
    )


def extract(
    source: Source,
    staging: str,
    *,
    limits: Limits,
    fsync: bool,
    progress: Optional[Progress],
    threaded: bool = True,
) -> Extracted:
    """Stream ``source`` into ``staging`` (an empty directory that exists)."""
    meter = _Meter(progress)
    raw = meter.wrap(source.chunks())
    try:
        head = b""
        first: list[bytes] = []
        for chunk in raw:
            first.append(chunk)
            head += chunk[: 512 - len(head)]
            if len(head) >= 512:
                break
        fmt = sniff(head)
        if fmt in ("empty", "html", "json", "unknown"):
            raise _not_an_archive(source, fmt, head)
        tree = SafeTree(staging, limits, fsync=fsync)
        try:
            if fmt == "zip":
                _extract_zip(source, first, raw, tree)
            else:
                decoder = make_decoder(fmt)
                if not threaded or (source.total is not None and source.total <= _SMALL):
                    _extract_tar(_inflate(decoder, first, raw, meter, limits), tree)
                else:  # socket reads | inflate | tar, hashes and writes (this thread)
                    # both stages can unblock the source: whichever stops first cancels it
                    cancel = source.cancel
                    net = read_ahead(raw, on_stop=cancel, name="hubcache-net")
                    try:
                        inflated = _inflate(decoder, first, net, meter, limits)
                        stream = read_ahead(inflated, on_stop=cancel, name="hubcache-inflate")
                        _extract_tar(stream, tree)
                    finally:
                        if not getattr(net, "gi_running", False):  # stuck past its grace?
                            net.close()  # on an error downstream: stop and join the reader
            if source.total is not None and meter.count != source.total:
                raise CorruptArchiveError(
                    f"{source.display} sent {meter.count} bytes but announced {source.total}"
                )
            if not tree.files:
                raise CorruptArchiveError(f"the archive at {source.display} contains no files")
            tree.finalize()
        finally:
            tree.close()
    finally:
        if not getattr(raw, "gi_running", False):  # a network thread stuck in a read?
            raw.close()
    return Extracted(
        format=fmt,
        archive_bytes=meter.count,
        archive_sha256=meter.sha256.hexdigest(),
        files={rel: [size, digest] for rel, (size, digest) in tree.files.items()},
        dirs=sorted(tree.dirs),
    )


def _inflate(
    decoder: Any, first: list[bytes], rest: Iterator[bytes], meter: _Meter, limits: Limits
) -> Iterator[bytes]:
    """Decompressed output of the whole stream, bounded per chunk, with the ratio limit."""
    produced = 0
    try:
        for source_chunks in (first, rest):
            for chunk in source_chunks:
                for out in decoder.feed(chunk):
                    produced += len(out)
                    if produced > _RATIO_GRACE and produced > limits.max_ratio * meter.count:
                        raise UnsafeArchiveError(
                            f"the archive expands more than {limits.max_ratio:g} times "
                            "(a decompression bomb?)"
                        )
                    yield out
        yield from decoder.finish()
    except DecodeError as exc:
        raise CorruptArchiveError(str(exc)) from None


def _extract_tar(stream: Iterator[bytes], tree: SafeTree) -> None:
    reader = TarReader(tree)
    try:
        for out in stream:
            reader.feed(out)
        reader.finish()
    finally:
        reader.abort()
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _extract_zip(source: Source, first: list[bytes], rest: Iterator[bytes], tree: SafeTree) -> None:
    path = source.local_file()
    if path is not None:
        for _ in rest:  # the meter still counts and hashes the local file
            pass
        _read_zip(path, tree)
        return
    with tempfile.TemporaryFile(dir=os.path.dirname(tree.root)) as spool:
        for chunk in first:
            spool.write(chunk)
        for chunk in rest:
            spool.write(chunk)
        spool.seek(0)
        _read_zip(spool, tree)


def _read_zip(where: Any, tree: SafeTree) -> None:
    """Extract a seekable zip. Our own errors (a full disk while writing, an unsafe member)
    pass through; anything ``zipfile`` raises while reading means a corrupt archive: a bad
    offset in a damaged header surfaces as a bare ``OSError(EINVAL)`` from a seek."""
    import zipfile

    try:
        with zipfile.ZipFile(where) as archive:
            _zip_members(archive, tree)
    except HubcacheError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:  # fmt: skip
        raise CorruptArchiveError(f"the zip archive is corrupt: {exc}") from None


def _zip_members(archive: Any, tree: SafeTree) -> None:
    import stat
    import zipfile

    for info in archive.infolist():
        unix_mode = info.external_attr >> 16
        kind = stat.S_IFMT(unix_mode) if unix_mode else 0
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UnsafeArchiveError(f"zip member {info.filename!r} is {what}")
        if info.filename.endswith("/"):  # not is_dir(): it fails on an empty name
            tree.add_dir(info.filename)
            continue
        limit = tree.limits.max_ratio
        if info.file_size > _RATIO_GRACE and info.file_size > limit * max(info.compress_size, 1):
            raise UnsafeArchiveError(
                f"zip member {info.filename!r} expands more than {limit:g} times "
                "(a decompression bomb?)"
            )
        writer = tree.add_file(info.filename, info.file_size, unix_mode or 0o644)
        try:
            with archive.open(info) as member:
                while True:
                    data = member.read(1024 * 1024)
                    if not data:
                        break
                    writer.write(data)
        except HubcacheError:
            writer.abort()
            raise
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            writer.abort()  # RuntimeError: encrypted; NotImplementedError: unknown method
            raise CorruptArchiveError(f"zip member {info.filename!r} is corrupt: {exc}") from None
        writer.close()
