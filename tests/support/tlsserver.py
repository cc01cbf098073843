"""HTTPS variants of the model host, with certificates from a throwaway trustme CA.

Certificate tests need both sides of the trust question: a server whose CA the client was
told about (``ca_bundle``) and one it was not (any other ``trustme.CA``).
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Union

from .httpserver import ModelServer


def https_server(ca: Any) -> ModelServer:
    """An unstarted HTTPS :class:`ModelServer` whose certificate ``ca`` (a trustme.CA) issued
    for 127.0.0.1 and localhost; use it as a context manager."""
    return ModelServer(tls=ca.issue_cert("127.0.0.1", "localhost"))


def ca_bundle(ca: Any, directory: Union[str, os.PathLike[str]]) -> str:
    """Write ``ca``'s certificate as a PEM bundle into ``directory``; return its path
    (for ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` or an explicit ``ca_certs=``)."""
    path = os.path.join(os.fspath(directory), "test-ca.pem")
    ca.cert_pem.write_to_path(path)
    return path


def client_context(ca: Any) -> ssl.SSLContext:
    """A client SSLContext trusting only ``ca``."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
