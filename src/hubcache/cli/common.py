"""What every command module of the CLI shares: the usage error (exit 2) and exit codes.

Lives apart from ``main`` so that command modules never import the module that imports them.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(Exception):
    """A command line that cannot be carried out as given: one line on stderr, exit 2."""
