"""Kaggle's settings: kagglesdk's and kagglehub's variables, names and defaults.

Read only when a Kaggle model is resolved (never on a cache hit), and parsed once per
distinct environment: a resolve that consults them at several steps (pinning the version,
the API, a redirect through a Kaggle page) gets one answer. They live here, beside the code
that uses them, rather than in ``_config``: nothing outside the Kaggle package needs them.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Optional

from .._config import expand
from .._errors import ConfigurationError

_VARIABLES = (
    "KAGGLE_API_ENVIRONMENT",
    "HOME",
    "KAGGLE_CONFIG_DIR",
    "KAGGLEHUB_CACHE",
    "KAGGLE_API_TOKEN",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "HUBCACHE_KAGGLE_API",
)
_PARSED: dict[tuple[str, ...], KaggleSettings] = {}

# kagglesdk's KAGGLE_API_ENVIRONMENT values -> (API endpoint, web endpoint). On production the
# RPC API lives on its own host; elsewhere both are one endpoint with the API under /api.
KAGGLE_ENVIRONMENTS = {
    "PROD": ("https://api.kaggle.com", "https://www.kaggle.com"),
    "LOCALHOST": ("http://localhost", "http://localhost"),
    "STAGING": ("https://staging.kaggle.com", "https://staging.kaggle.com"),
    "ADMIN": ("https://admin.kaggle.com", "https://admin.kaggle.com"),
    "QA": ("https://qa.kaggle.com", "https://qa.kaggle.com"),
    "TEST": ("http://localhost:7777", "http://localhost:7777"),
}


class KaggleSettings:
    """What the Kaggle source reads from the environment, only when a Kaggle model is
    fetched (never on a cache hit). Read-only by convention; a plain slotted class rather
    than a dataclass because ``import hubcache`` would pay ~0.5 ms to build one. Secrets
    are kept out of ``repr`` so a settings object in a traceback or log never shows them."""

    __slots__ = (
        "api_endpoint",
        "api_token",
        "config_dir",
        "environment",
        "home",
        "kagglehub_cache",
        "key",
        "mirror",
        "username",
        "web_endpoint",
    )

    def __init__(
        self,
        *,
        environment: str,  # a KAGGLE_ENVIRONMENTS key
        home: str,  # the user's home folder, where ~/.kaggle lives
        config_dir: str,  # KAGGLE_CONFIG_DIR, else ~/.kaggle (kaggle.json lives there)
        kagglehub_cache: str,  # KAGGLEHUB_CACHE, else ~/.cache/kagglehub
        api_token: str = "",  # KAGGLE_API_TOKEN (a token or a file's path)
        username: str = "",  # KAGGLE_USERNAME
        key: str = "",  # KAGGLE_KEY
        mirror: str = "",  # HUBCACHE_KAGGLE_API: a hubcache mirror answering Kaggle's API
    ) -> None:
        self.environment = environment
        self.api_endpoint, self.web_endpoint = KAGGLE_ENVIRONMENTS[environment]
        self.mirror = mirror
        if mirror:
            self.api_endpoint = mirror
        self.home = home
        self.config_dir = config_dir
        self.kagglehub_cache = kagglehub_cache
        self.api_token = api_token
        self.username = username
        self.key = key

    def __repr__(self) -> str:
        return (
            f"KaggleSettings(environment={self.environment!r}, "
            f"config_dir={self.config_dir!r}, kagglehub_cache={self.kagglehub_cache!r})"
        )

    @property
    def rpc_base(self) -> str:
        """Where ``<service>/<method>`` RPCs are posted (kagglesdk's layout; a mirror
        answers both, and is given the one-endpoint layout)."""
        if self.environment == "PROD" and not self.mirror:
            return self.api_endpoint + "/v1"
        return self.api_endpoint + "/api/v1"


def kaggle_settings(environ: Optional[Mapping[str, str]] = None) -> KaggleSettings:
    """Read the Kaggle variables (kagglesdk's and kagglehub's names and defaults), parsed
    once per distinct set of values."""
    env = os.environ if environ is None else environ
    text = tuple(env.get(name, "") for name in _VARIABLES)
    found = _PARSED.get(text)
    if found is None:
        found = _parse(env)
        if len(_PARSED) < 64:
            _PARSED[text] = found
    return found


def _parse(env: Mapping[str, str]) -> KaggleSettings:
    name = env.get("KAGGLE_API_ENVIRONMENT", "").strip() or "PROD"
    if name not in KAGGLE_ENVIRONMENTS:
        raise ConfigurationError(
            f"KAGGLE_API_ENVIRONMENT={name!r} is not one of "
            f"{', '.join(KAGGLE_ENVIRONMENTS)}; unset it to use kaggle.com"
        )
    home = env.get("HOME") or os.path.expanduser("~")
    config_dir = env.get("KAGGLE_CONFIG_DIR", "") or os.path.join(home, ".kaggle")
    cache = env.get("KAGGLEHUB_CACHE", "") or os.path.join(home, ".cache", "kagglehub")
    token = env.get("KAGGLE_API_TOKEN", "").strip()
    username = env.get("KAGGLE_USERNAME", "").strip()
    key = env.get("KAGGLE_KEY", "").strip()
    secrets = (("KAGGLE_API_TOKEN", token), ("KAGGLE_USERNAME", username), ("KAGGLE_KEY", key))
    for var, value in secrets:
        if any(c in value for c in "\r\n\x00"):
            raise ConfigurationError(f"{var} contains a line break or NUL; set it to one line")
    mirror = env.get("HUBCACHE_KAGGLE_API", "").strip().rstrip("/")
    if mirror:
        try:
            parts = urllib.parse.urlsplit(mirror)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parts = urllib.parse.urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigurationError(
                f"HUBCACHE_KAGGLE_API={mirror!r} is not an http(s) URL of a hubcache mirror "
                "(e.g. http://mirror:8000); unset it to ask Kaggle's API directly"
            )
    return KaggleSettings(
        environment=name,
        home=home,
        config_dir=expand(config_dir),
        kagglehub_cache=expand(cache),
        api_token=token,
        username=username,
        key=key,
        mirror=mirror,
    )
