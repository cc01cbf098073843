"""Who holds a lock: the ``<host>.<pid>.<uid>`` contents every lock backend writes.

The format is tensorflow_hub's, so each client can read the other's locks. tensorflow_hub
takes the text after the last dot as the holder's task id and watches ``<key>.<uid>.tmp``
grow; our staging folders use the same name, so its stale-lock check sees our progress.
Our uid is ``<32 hex><start token>``, the token being when our process started
(``t<hex>`` on Linux, see ``_platform.start_token``): still one dot-free token for
tensorflow_hub, and for us a guard against PID reuse when judging a holder on this host.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple, Optional

from .. import _platform


class Holder(NamedTuple):
    """Who holds a lock, parsed from its contents (a named tuple, not a dataclass: this
    module is imported on every miss, and a frozen dataclass costs ~0.8 ms to make)."""

    host: str
    pid: int
    uid: str
    raw: str

    @property
    def start_token(self) -> Optional[str]:
        """When the holder's process started (``_platform.start_token``), if it said so."""
        return self.uid[32:] if len(self.uid) > 33 else None

    def is_dead_here(self) -> bool:
        """True when the holder is on this host and its process is gone (or PID reused).
        Whatever cannot be told (another platform's token, no way to ask) counts as alive:
        the lease then decides, so a live holder is never judged dead."""
        if self.host != socket.gethostname():
            return False
        alive = _platform.pid_alive(self.pid)
        if alive is None:
            return False
        if not alive:
            return True
        token = self.start_token
        return token is not None and _platform.same_start(self.pid, token) is False


def parse_holder(text: str) -> Optional[Holder]:
    parts = text.strip().rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Holder(parts[0], int(parts[1]), parts[2], text)


def new_uid() -> str:
    """This process's task id: 32 random hex digits, the shape of tensorflow_hub's
    ``uuid.uuid4().hex`` (``local.lock.is_tfhub_uid``), then our start token. Drawn from
    ``os.urandom`` directly: importing ``uuid`` (and ``platform`` with it) cost 3 ms of every
    fresh process's first miss."""
    return os.urandom(16).hex() + (_platform.start_token(os.getpid()) or "")
