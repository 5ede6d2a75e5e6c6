"""A Chroma server as a child process: ``chroma run --path DIR --host 127.0.0.1 --port N``.

For tests (fixtures start one on a free port and stop it) and for runs that need a Chroma
server of their own (issue 12's ``--workers``: several processes sharing one store, which
Chroma's embedded ``PersistentClient`` cannot do safely). It is the ``chroma run`` command of
the installed chromadb, started through the interpreter that runs personaloom, so no ``PATH``
lookup decides which Chroma serves.

Like the embedded model's server (``personaloom.local.server``), the child binds 127.0.0.1
only, gets SIGTERM from the kernel when its parent dies (even by SIGKILL), runs in its own
process group, and is stopped at exit. ``start`` returns once ``/api/v2/heartbeat`` answers.
``kill`` is SIGKILL without the wait, for tests of a server that goes away mid-run; ``start``
again on the same path and port brings the same store back.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from personaloom.local.server import (
    HOST,
    _free_port,
    _make_pdeathsig_preexec,
    _port_is_free,
    _spawner,
    _tail,
)

HEARTBEAT = "/api/v2/heartbeat"
# chromadb's console script, run by this interpreter: `chroma run ...` exactly.
_CHROMA_CLI = "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; app()"


class ChromaServerError(RuntimeError):
    """The Chroma server did not start (the message holds the end of its log)."""


class ChromaServer:
    """One ``chroma run`` child serving the store at ``path`` on 127.0.0.1.

    Use as a context manager, or ``start()`` / ``stop()``. ``url`` is what ``novelty.store``
    and ``--chroma-url`` take. The log goes to ``log_path`` (default: ``chroma-server.log``
    beside the store's folder).
    """

    def __init__(self, path: Path, *, port: int | None = None, log_path: Path | None = None):
        self.path = Path(path)
        self._requested_port = port
        self._port: int | None = port
        self.log_path = Path(log_path) if log_path else self.path.parent / "chroma-server.log"
        self._log_offset = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Chroma server has no port until start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60) -> ChromaServer:
        """Start the server; returns once its heartbeat answers. A port we picked ourselves
        is picked again if someone takes it before the server binds it; once the server has
        started, it keeps its port (``start`` after ``stop`` or ``kill`` comes back on it)."""
        if self.running:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._requested_port is None else 1
        for attempt in range(attempts):
            self._port = self._requested_port or _free_port()
            if not self._wait_port_free(timeout):
                raise ChromaServerError(f"port {self._port} on {HOST} is already in use")
            try:
                self._spawn()
                self._wait_ready(timeout)
                self._requested_port = self._port  # a restart comes back on the same port
                return self
            except ChromaServerError as exc:
                log = _tail(self.log_path)
                self._terminate()
                if attempt + 1 < attempts and "address already in use" in log.lower():
                    continue
                raise ChromaServerError(f"{exc}\n--- log ({self.log_path}) ---\n{log}") from None
            except BaseException:  # Ctrl-C while starting: no half-started server left behind
                self._terminate()
                raise
        raise AssertionError("unreachable")

    def _wait_port_free(self, timeout: float) -> bool:
        """A port given to us may still be held by a server just killed on it: wait a little."""
        deadline = time.monotonic() + min(timeout, 10)
        while not _port_is_free(self.port):
            if self._requested_port is None or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            _CHROMA_CLI,
            "run",
            "--path",
            str(self.path),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]

    def _spawn(self) -> None:
        command, preexec = self._command(), _make_pdeathsig_preexec()
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()

            def popen() -> None:
                # On the one long-lived spawner thread: PR_SET_PDEATHSIG follows the thread
                # that forked the child (see personaloom.local.server).
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    preexec_fn=preexec,
                    close_fds=True,
                )

            _spawner.submit(popen).result()
        atexit.register(self.stop)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until *our* child answers: its log must show it listening on our port (a
        heartbeat alone could come from someone else's server that took the port)."""
        proc = self._proc
        assert proc is not None
        bound = f"{HOST}:{self.port}".encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise ChromaServerError(
                    f"the Chroma server exited with code {proc.returncode} while starting"
                )
            if bound in self._log_since_spawn():
                try:
                    with opener.open(self.url + HEARTBEAT, timeout=2) as resp:
                        if resp.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise ChromaServerError(f"the Chroma server did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def _log_since_spawn(self) -> bytes:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read()
        except OSError:
            return b""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; idempotent."""
        self._terminate(timeout)

    def kill(self) -> None:
        """SIGKILL now (a server that dies mid-run, for tests); ``start`` brings it back."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def _terminate(self, timeout: float = 10) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
