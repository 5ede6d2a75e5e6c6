"""Smoke test of the real commands in a real terminal (tmux): ``personaloom tui`` with keys
sent to it, then ``personaloom watch`` following a headless run in another process."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.parametrize("latency", [0.2]),
]

REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """One tmux server of our own (its own socket), so the test sees its environment."""

    def __init__(self, name: str):
        self.socket = f"personaloom-test-{os.getpid()}-{name}"

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def start(self, command: str) -> None:
        self("new-session", "-d", "-s", "main", "-x", "160", "-y", "50", command)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "main")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen shows:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "main", *keys)

    def kill(self) -> None:
        self("kill-server")


def _command(args: list[str], env: dict[str, str], done: Path) -> str:
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    line = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "personaloom.cli", *args])
    # Textual sizes itself with shutil.get_terminal_size, which believes COLUMNS and LINES
    # first; the pane's shell may export them from before tmux resized the pane to -x/-y.
    return (
        f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES {variables} {line};"
        f" echo $? > {shlex.quote(str(done))}"
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline}")
    return found


def _wait_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was never written")
        time.sleep(0.1)
    return path.read_text().strip()


def test_tui_and_watch_in_a_real_terminal(make_spec, tmp_path: Path) -> None:
    env = {
        "PERSONALOOM_CACHE_DIR": str(tmp_path / "cache"),
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }
    big = {
        "feature": {"values": ["dialogue", "moral", "twist"], "target": 8},
        "setting": {"values": ["forest", "sea", "city"], "target": 8},
    }
    spec = make_spec(traits=big, budget={"max_calls": 1000}, personas={"max_uses": 4})
    run_dir = tmp_path / "supervised"
    done = tmp_path / "tui.exit"
    tmux = Tmux("tui")
    try:
        tmux.start(_command(["tui", str(spec), "--out", str(run_dir)], env, done))
        tmux.wait_for("Coverage per trait value")
        shown = tmux.wait_for("✓ accepted")  # the feed fills while the graph runs
        assert "running" in shown and "p Pause/Resume" in shown
        tmux.keys("p")
        tmux.wait_for("paused: no new batch starts")
        tmux.keys("p")
        tmux.wait_for("running")
        tmux.keys("2")
        tmux.wait_for("Persona pool")
        tmux.keys("1")
        tmux.wait_for("Agents now")
        tmux.keys("q")  # quit mid-run: cut short, resumable
        assert _wait_file(done) == "130"
    finally:
        tmux.kill()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert _processes_mentioning(str(run_dir)) == []  # nothing left behind

    watched = tmp_path / "headless"
    small = make_spec(name="small", personas={"max_uses": 3})
    headless = subprocess.Popen(
        [sys.executable, "-m", "personaloom.cli", "run", str(small), "--out", str(watched)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = tmp_path / "watch.exit"
    tmux = Tmux("watch")
    try:
        deadline = time.monotonic() + 30
        while not (watched / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        tmux.start(_command(["watch", str(watched)], env, done))
        tmux.wait_for("(read-only)")
        assert headless.wait(timeout=60) == 0
        shown = tmux.wait_for("complete")
        accepted = json.loads((watched / "report.json").read_text())["accepted"]
        assert f"{accepted} of" in shown
        assert "p Pause/Resume" not in shown  # read-only: no controls
        tmux.keys("q")
        assert _wait_file(done) == "0"
    finally:
        tmux.kill()
        if headless.poll() is None:
            headless.kill()
    assert _processes_mentioning(str(watched)) == []
