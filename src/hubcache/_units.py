"""Sizes and durations as people type and read them: ``20GB``, ``1.5GiB``, ``30d``, ``12h``.

Decimal units (KB, MB, GB, TB) are powers of 1000 and binary ones (KiB, MiB, GiB, TiB) powers
of 1024, as disk vendors and ``du --si`` use them; a bare number is bytes or seconds. Shown
sizes are decimal too, so ``--max-size 20GB`` and the ``ls`` total speak the same unit.

Layer: values (docs/architecture.md), beside ``_values``, under the core; it stands on
``_errors`` alone, so settings, plans and the CLI share one reading of "20GB".
"""

from __future__ import annotations

import re
import time

from ._errors import ConfigurationError

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """``"20GB"`` -> 20_000_000_000 bytes; raises ConfigurationError naming the input."""
    match = _NUMBER.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigurationError(
            f"{text!r} is not a size; use e.g. 500MB, 20GB, 1.5GiB or a number of bytes"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """``"30d"`` -> seconds. ``m`` is minutes (months are too vague to be a unit)."""
    match = _NUMBER.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ConfigurationError(f"{text!r} is not a duration; use e.g. 45s, 90m, 12h, 30d or 2w")
    return float(match.group(1)) * _DURATION_UNITS[unit]


def format_size(n: int) -> str:
    """Decimal, three significant digits: ``1.23 GB``; bytes below 1 kB."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.5 or unit == "PB":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_age(seconds: float) -> str:
    """How long ago, coarsely: ``just now``, ``5 min ago``, ``3 h ago``, ``12 days ago``."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def format_time(timestamp: float) -> str:
    """UTC, to the second, ISO 8601: what ``--json`` carries and logs show."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
