"""claude-runner: run the Claude Code CLI headless, alone or as a YAML pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("claude-runner")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
