"""The package's version, in one place: the build and ``hubcache --version`` read it.

Layer: the foundation (docs/architecture.md), the bottom row; it imports nothing.
"""

__version__ = "0.1.0"
