"""Errors and exit codes shared by the CLI and the runner (light: no heavy imports)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid spec, arguments or configuration
EXIT_BUDGET = 3  # a budget ended the run before every target was met
EXIT_STALLED = 4  # the run stopped making progress before every target was met
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A configuration that cannot work (names the setting to change)."""
