"""How the text of a setting becomes a value: one parser per kind, shared by every setting.

A yes/no setting accepts only yes or no words; a number must be a finite decimal in its
range; a count must be whole. Each refusal is a ``ConfigurationError`` naming the variable,
the value and what to do, so every setting fails the same way (exit 2 in the CLI).

Layer: values (docs/architecture.md), beside ``_units``, under ``_config``; it stands on
``_errors`` alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Optional, TypeVar, Union

from ._errors import ConfigurationError

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
NO_WORDS = frozenset(_FALSE)


def flag(environ: Mapping[str, str], name: str) -> Optional[bool]:
    """The one parser of yes/no settings: None when unset or empty, else True or False.

    Anything that is neither a yes nor a no word is an error: guessing would turn a typo
    such as ``HUBCACHE_OFFLINE=maybe`` into the opposite of what was meant."""
    raw = environ.get(name, "")
    value = raw.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"{name}={raw!r} is neither yes nor no; use one of "
        f"{', '.join(sorted(_TRUE))} or {', '.join(sorted(_FALSE))}, or unset it"
    )


def number(
    environ: Mapping[str, str],
    name: str,
    default: T,
    *,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
) -> Union[T, float]:
    """The one parser of numeric settings: a finite decimal number in [low, high] (or
    (low, high] with ``low_open``). nan and inf are refused: ``nan`` compares false with
    everything, so a nan lease or timeout would silently never expire."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    value = _finite(name, raw)
    if value < low or (low_open and value == low) or value > high:
        raise ConfigurationError(f"{name}={raw!r} {_range_text(low, high, low_open)}")
    return value


def integer(
    environ: Mapping[str, str], name: str, default: T, *, low: int = 0, high: float = math.inf
) -> Union[T, int]:
    """Like :func:`number`, for settings that count things: a whole number in [low, high]."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    value = _finite(name, raw)
    if not value.is_integer():
        raise ConfigurationError(f"{name}={raw!r} must be a whole number; fix or unset it")
    if value < low or value > high:
        raise ConfigurationError(f"{name}={raw!r} {_range_text(low, high, False)}")
    return int(value)


_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _finite(name: str, raw: str) -> float:
    text = raw.strip()
    value = float(text) if _DECIMAL.match(text) else math.nan
    if not math.isfinite(value):
        raise ConfigurationError(f"{name}={raw!r} is not a finite decimal number; fix or unset it")
    return value


def _range_text(low: float, high: float, low_open: bool) -> str:
    if high == math.inf:
        return f"must be {'greater than' if low_open else 'at least'} {low:g}; fix or unset it"
    if low_open:
        return f"must be greater than {low:g} and at most {high:.16g}; fix or unset it"
    return f"must be between {low:g} and {high:.16g}; fix or unset it"


def parse_json(text: Union[str, bytes]) -> Any:
    """``json.loads`` whose every refusal is a ``ValueError``. JSON nested deeper than the
    interpreter's recursion limit (``[[[[...`` a few thousand deep: a hostile server's
    answer, an imported manifest, a variable) raises ``RecursionError`` instead, which
    the callers' ``except ValueError`` let through as a traceback."""
    import json  # here: the warm resolve path imports this module, not the JSON parser

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
