"""Kaggle credentials, found in kagglehub's order, sent only to Kaggle's API hosts.

Order (the first that gives a credential wins)::

    1. KAGGLE_API_TOKEN          a token, or the path of a file holding one    -> Bearer
    2. ~/.kaggle/access_token    (or access_token.txt) a file holding a token   -> Bearer
    3. KAGGLE_USERNAME + KAGGLE_KEY                                             -> Basic
    4. $KAGGLE_CONFIG_DIR/kaggle.json (default ~/.kaggle)  {"username", "key"}  -> Basic

A :class:`Credential` knows where it came from (``source``, safe to print) and the header
value (never in ``repr``, never logged, never written anywhere). Files readable by other
users get one warning each per process, as ssh does for keys.

An empty token file is a usage error, except for code that runs under kagglehub (the
plug-in, inside :func:`kagglesdk_reading`): kagglesdk reads it as no token and goes on to
the username and key, so code that works with kagglehub alone keeps working; a warning says
so.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import logging
import os
import stat
from collections.abc import Iterator
from typing import Optional

from .._errors import ConfigurationError
from .._values import parse_json
from .settings import KaggleSettings

log = logging.getLogger(__name__)
_WARNED: set[str] = set()
# True while a call made through kagglehub runs (this thread or task): kagglesdk's reading.
_KAGGLESDK_READING = contextvars.ContextVar("hubcache_kagglesdk_reading", default=False)


@contextlib.contextmanager
def kagglesdk_reading() -> Iterator[None]:
    """Read credentials as kagglesdk does for the calls made inside (the kagglehub plug-in:
    code written against kagglehub must not fail where kagglehub alone works): an empty
    token file is no token, with a warning, instead of a usage error."""
    mark = _KAGGLESDK_READING.set(True)
    try:
        yield
    finally:
        _KAGGLESDK_READING.reset(mark)


@dataclasses.dataclass(frozen=True)
class Credential:
    source: str  # e.g. "KAGGLE_API_TOKEN", "~/.kaggle/kaggle.json": where, never what
    authorization: str = dataclasses.field(repr=False)  # the Authorization header value


def find_credential(settings: KaggleSettings) -> Optional[Credential]:
    """The first credential in kagglehub's order, or None (public models need none).
    A place that is there but unusable (a folder, an empty file) is a usage error naming
    it, never skipped: the next credential in line, or none, would be a surprise, and a
    path sent as the token would be worse. (Under kagglehub an empty token file is skipped
    as kagglesdk skips it: :func:`kagglesdk_reading`.) None when the API is a hubcache
    mirror (``HUBCACHE_KAGGLE_API``): the mirror asks Kaggle with its own credential, and a
    client's is never sent to it."""
    if settings.mirror:
        return None
    token = settings.api_token
    if token:
        if os.path.lexists(token) or _looks_like_path(token):
            value = _read_token(token, " named by KAGGLE_API_TOKEN")
            if not value:  # kagglesdk's reading: no token, and on to the username and key
                return _username_and_key(settings)
            where = f"KAGGLE_API_TOKEN (file {token})"
            return Credential(where, _bearer(value, f"the Kaggle token file {token}"))
        return Credential("KAGGLE_API_TOKEN", _bearer(token, "KAGGLE_API_TOKEN"))
    kaggle_dir = os.path.join(settings.home, ".kaggle")
    for name in ("access_token", "access_token.txt"):
        path = os.path.join(kaggle_dir, name)
        if os.path.lexists(path):
            value = _read_token(path)
            if value:
                return Credential(f"~/.kaggle/{name}", _bearer(value, path))
    return _username_and_key(settings)


def _username_and_key(settings: KaggleSettings) -> Optional[Credential]:
    """The last two places in the order: the variables, then kaggle.json."""
    if settings.username and settings.key:
        return Credential("KAGGLE_USERNAME + KAGGLE_KEY", _basic(settings.username, settings.key))
    path = os.path.join(settings.config_dir, "kaggle.json")
    if os.path.lexists(path):
        username, key = _read_kaggle_json(path)
        return Credential(path, _basic(username, key))
    return None


def _looks_like_path(value: str) -> bool:
    """A token has no slashes and no leading ``~``; a value that does meant a file."""
    return "/" in value or "\\" in value or value.startswith("~")


def _bearer(token: str, where: str) -> str:
    """The Authorization value of a token. A Kaggle token is printable ASCII; anything else
    (a '€' pasted with it) made http.client raise UnicodeEncodeError at the first request."""
    if not (token.isascii() and token.isprintable()):
        raise ConfigurationError(
            f"{where} holds a character no Kaggle token has (non-ASCII or a control "
            "character); copy the token again from kaggle.com, or unset it"
        )
    return "Bearer " + token


def _basic(username: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode("ascii")


def _read_token(path: str, origin: str = "") -> str:
    """The token in the file ``path``; ``origin`` says in errors who named the file."""
    where = f"the Kaggle token file {path}{origin}"
    if not os.path.isfile(path):
        what = (
            "a folder"
            if os.path.isdir(path)
            else "missing"
            if not os.path.exists(path)
            else "not a file"
        )
        raise ConfigurationError(
            f"{where} is {what}; it must be a file holding only the token (or unset it)"
        )
    _warn_if_loose(path)
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read {where}: {exc.__class__.__name__}; fix its permissions or remove it"
        ) from None
    if not value:
        if not _KAGGLESDK_READING.get():
            raise ConfigurationError(f"{where} is empty; put the token in it, or remove it")
        if path + "\0empty" not in _WARNED:
            _WARNED.add(path + "\0empty")
            log.warning("%s is empty: no token is sent from it (as kagglehub reads it)", where)
        return ""
    if any(c in value for c in "\r\n\x00"):
        raise ConfigurationError(f"{where} holds more than one line; it must hold only the token")
    return value


def _read_kaggle_json(path: str) -> tuple[str, str]:
    if not os.path.isfile(path):
        raise ConfigurationError(
            f"the Kaggle credentials file {path} is not a file; it must hold "
            '{"username": "...", "key": "..."} (or remove it)'
        )
    _warn_if_loose(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = parse_json(f.read())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"the Kaggle credentials file {path} is not readable JSON ({exc.__class__.__name__}); "
            'it must hold {"username": "...", "key": "..."} (download it from kaggle.com, '
            "Settings, API)"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data[k].strip() for k in ("username", "key")
    ):
        raise ConfigurationError(
            f'the Kaggle credentials file {path} lacks a "username" or a "key"; it must hold '
            '{"username": "...", "key": "..."}'
        )
    username, key = data["username"].strip(), data["key"].strip()
    if any(c in username + key for c in "\r\n\x00"):
        raise ConfigurationError(f"the Kaggle credentials file {path} has a line break in a value")
    return username, key


def _warn_if_loose(path: str) -> None:
    if path in _WARNED:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _WARNED.add(path)
        log.warning(
            "the Kaggle credentials file %s can be read by other users (mode %o); "
            "run `chmod 600 %s`",
            path,
            stat.S_IMODE(mode),
            path,
        )
