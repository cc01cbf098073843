"""Who holds a lock: the ``<host>.<pid>.<uid>`` contents every lock backend writes.

The format is tensorflow_hub's, so each client can read the other's locks. tensorflow_hub
takes the text after the last dot as the holder's task id and watches ``<key>.<uid>.tmp``
grow; our staging folders use the same name, so its stale-lock check sees our progress.
Our uid is ``<32 hex>t<process start time in hex>``: still one dot-free token for
tensorflow_hub, and for us a guard against PID reuse when judging a holder on this host.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Optional


def _start_time(pid: int) -> Optional[int]:
    """The start time of ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, parsed from its contents."""

    host: str
    pid: int
    uid: str
    raw: str

    @property
    def start_time(self) -> Optional[int]:
        if len(self.uid) > 33 and self.uid[32] == "t":
            try:
                return int(self.uid[33:], 16)
            except ValueError:
                return None
        return None

    def is_dead_here(self) -> bool:
        """True when the holder is on this host and its process is gone (or PID reused)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, owned by another user
        except OSError:
            return False
        expected = self.start_time
        return expected is not None and _start_time(self.pid) not in (None, expected)


def parse_holder(text: str) -> Optional[Holder]:
    parts = text.strip().rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Holder(parts[0], int(parts[1]), parts[2], text)


def new_uid() -> str:
    start = _start_time(os.getpid())
    return uuid.uuid4().hex + (f"t{start:x}" if start is not None else "")
