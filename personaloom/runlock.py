"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``.

Two processes appending to one run's files interleave duplicate ids and counts that no
longer match (a second ``--resume`` of a run still going, or a resume while ``run --out``
writes it). The lock is held for the whole run and released by the operating system when
the process ends, crash or SIGKILL included, so a stale lock file never blocks a resume.
Readers (``watch``, ``report``, ``traces``) do not take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from personaloom.errors import ConfigError

LOCK_FILE = ".lock"


class RunDirectoryBusy(ConfigError):
    """Another process holds the run directory."""


class RunLock:
    """The exclusive lock of one run directory; ``release`` (or process exit) frees it."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> Self:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise self.busy(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def busy(self, holder: str) -> ConfigError:
        """The error for a folder that process ``holder`` holds."""
        run_dir = self.path.parent
        return RunDirectoryBusy(
            f"{run_dir} is in use by another personaloom process (pid {holder}); "
            f"follow it with `personaloom watch {run_dir}`, or wait for it to end "
            f"(or stop it) and then `personaloom run --resume {run_dir}`"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def held(run_dir: Path) -> bool:
    """Whether a process holds ``run_dir``'s lock now (a reader's question: takes nothing)."""
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if it was granted
    return False


def effective_status(run_dir: Path, meta: dict) -> str:
    """run.json's status, except that a run marked running whose lock no process holds was
    cut short (killed, or interrupted twice while it was writing its status)."""
    status = meta.get("status", "unknown")
    if status == "running" and (run_dir / LOCK_FILE).exists() and not held(run_dir):
        return "interrupted"
    return status
