"""lineqa: self-hosted visual quality inspection. This package holds the version and the ``lineqa`` command."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lineqa")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
