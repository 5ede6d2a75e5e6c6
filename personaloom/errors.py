"""Errors and exit codes shared by the CLI and the runner (light: no heavy imports)."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid spec, arguments or configuration
EXIT_BUDGET = 3  # a budget ended the run before every target was met
EXIT_STALLED = 4  # the run stopped making progress before every target was met
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A configuration that cannot work (names the setting to change)."""


class DiskFull(OSError):
    """The device holding the run directory is full (names the directory and what to do)."""


_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full: an OSError
    (ENOSPC, EDQUOT), or SQLite's and Chroma's wording of it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(current).lower() for words in _FULL):
            return True
        current = current.__cause__ or current.__context__
    return False


class StoreUnavailable(RuntimeError):
    """A Chroma server stopped answering, or lost a collection (names the URL; resumable)."""
