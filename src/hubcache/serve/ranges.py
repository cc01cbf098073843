"""Range requests, decided once for every server in the project.

Three places answer ``Range``: the production server while an archive is still arriving
(``app``), the demo's standard-library host (``demohost``) and the test suite's misbehaving model
host. They all take their decisions here, so a resume is judged the same way everywhere:

* one ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range is honoured; several ranges, other
  units or a malformed value are ignored (answering 200 with the whole body is allowed);
* a first byte at or past the end is ``416``;
* ``If-Range`` holds a strong ETag (a weak one never matches) or the exact
  ``Last-Modified`` date; when it does not match, the range is ignored and the whole,
  current body is sent, so a client never splices two versions of a file.
"""

from __future__ import annotations

import email.utils
import re
from typing import Optional, Union

Unsatisfiable = str  # the literal "416"
_DIGITS = re.compile(r"[0-9]+")


def parse_range(value: str, size: int) -> Union[tuple[int, int], Unsatisfiable, None]:
    """One ``bytes=`` range of a body of ``size`` bytes -> (first, last) inclusive;
    ``"416"`` when it starts past the end; None when it must be ignored."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multi-range and unknown units
    first, _, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not all(_DIGITS.fullmatch(p) for p in (first, last) if p):
        return None  # RFC 9110: ASCII digits only (int() would take "1_0" and "١")
    if not first:
        if not last:
            return None
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), (int(last) if last else size - 1)
    if start < 0 or end < 0 or (start > end and first and last):
        return None
    if start >= size:
        return "416"
    return start, min(end, size - 1)


def if_range_fresh(cond: str, etag: Optional[str], last_modified: Optional[str]) -> bool:
    """Whether an ``If-Range`` value still names the body we would send."""
    cond = cond.strip()
    if cond.startswith(('"', "W/")):
        return etag is not None and cond == etag and not cond.startswith("W/")
    if last_modified is None:
        return False
    try:
        parse = email.utils.parsedate_to_datetime
        return parse(cond) == parse(last_modified)
    except (TypeError, ValueError):
        return False


def choose_range(
    range_header: Optional[str],
    if_range: Optional[str],
    size: int,
    etag: Optional[str],
    last_modified: Optional[str],
) -> Union[tuple[int, int], Unsatisfiable, None]:
    """The part of the body to send: (first, last), ``"416"``, or None for all of it."""
    if not range_header:
        return None
    if if_range is not None and not if_range_fresh(if_range, etag, last_modified):
        return None
    return parse_range(range_header, size)


def file_etag(size: int, mtime_ns: int) -> str:
    """The strong ETag of a file, in the form aiohttp's ``FileResponse`` sends it, so the
    demo host, the fill and the sendfile path all name the same bytes the same way."""
    return f'"{mtime_ns:x}-{size:x}"'
