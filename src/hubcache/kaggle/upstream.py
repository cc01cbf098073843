"""What a mirror needs of Kaggle: which hosts are Kaggle's, and the credential for them.

The mirror (``serve``) uses the Kaggle package only through this module (an import-linter
contract keeps it off the internals: ``provider``, ``api``, ``credentials``...), so they
can change without touching the server.
"""

from __future__ import annotations

from typing import Optional

from .identity import KAGGLE_HOSTS


def is_kaggle_host(host: str) -> bool:
    """Whether an upstream's host name (lower case) is Kaggle's web host."""
    return host in KAGGLE_HOSTS


def upstream_credential() -> Optional[tuple[str, str]]:
    """(the Authorization header value, where it came from) of the Kaggle credential found
    in kagglehub's order, or None: what a mirror sends to Kaggle's hosts on behalf of
    clients that have none."""
    from .credentials import find_credential
    from .settings import kaggle_settings

    found = find_credential(kaggle_settings())
    return (found.authorization, found.source) if found is not None else None
