"""predictd: serve trained Python models over HTTP and keep every prediction."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("predictd")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
