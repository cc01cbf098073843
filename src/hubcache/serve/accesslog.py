"""The access log: one line per request, the one writer for aiohttp's requests and the fast
path's (``fastpath``).

Layout (``ACCESS_FORMAT``, in aiohttp's notation): the client's address, the request line,
the status, the body's length, the seconds taken, the User-Agent. Client-sent fields are
escaped (quotes, backslashes and control characters as ``\\xHH``), so no client can forge a
field.

Why not :mod:`logging`: a line through a logger cost about 28 us of CPU (a record, a
formatter, a handler's lock, a write and a flush for each line), a third of what a stored
200 KB hit costs without it, so the default (a log on stderr) made the mirror a third slower
than ``-q``. Here a line is one f-string; the lines of one turn of the event loop are joined
and written once, at the end of that turn (``loop.call_soon``): never later than the loop's
next wake-up, and a crash loses at most that turn's lines.
"""

from __future__ import annotations

import asyncio
import select
from typing import Optional, TextIO

ACCESS_FORMAT = '%a "%r" %s %{Content-Length}o %Tfs "%{User-Agent}i"'  # what the line holds
PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # bytes one write keeps whole on a pipe (POSIX)


def escaped(text: str) -> str:
    """A client-sent field as it may appear between quotes in the log (module docstring)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text  # the usual case, without a look at each character
    return "".join(
        f"\\x{ord(c):02x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c for c in text
    )


class AccessLog:
    """Where the lines go: ``stream`` (stderr), or nowhere (``-q``: no line is even made)."""

    def __init__(self, stream: Optional[TextIO]) -> None:
        self.stream = stream
        self.enabled = stream is not None
        self._lines: list[str] = []
        self._due = False  # a flush is scheduled for the end of this turn of the loop

    def __bool__(self) -> bool:  # aiohttp makes no access logger for a false one
        return self.enabled

    def line(  # noqa: PLR0917 - the line's fields, in the line's order
        self,
        remote: Optional[str],
        request_line: str,
        status: int,
        length: str,
        seconds: float,
        agent: str,
    ) -> None:
        """Note one request; written at the end of this turn of the event loop."""
        if not self.enabled:
            return
        self._lines.append(
            f'{remote or "-"} "{escaped(request_line)}" {status} {length} {seconds:.3f}s '
            f'"{escaped(agent)}"\n'
        )
        if not self._due:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self._due = True
            except RuntimeError:  # no loop (a line noted while stopping): at once
                self.flush()

    def flush(self) -> None:
        """Write the lines noted so far: joined, in writes of at most ``PIPE_BUF`` bytes,
        which the kernel keeps whole on a pipe shared by ``--workers`` (a longer write may
        be interleaved with another process's, cutting lines)."""
        self._due = False
        lines, self._lines = self._lines, []
        stream = self.stream
        if not lines or stream is None:
            return
        try:
            chunk: list[str] = []
            size = 0
            for text in lines:
                n = len(text) if text.isascii() else 4 * len(text)  # bytes, at most
                if chunk and size + n > PIPE_BUF:
                    stream.write("".join(chunk))
                    stream.flush()
                    chunk, size = [], 0
                chunk.append(text)
                size += n
            stream.write("".join(chunk))
            stream.flush()
        except (OSError, ValueError):  # stderr closed: the log is lost, not the server
            self.enabled = False
