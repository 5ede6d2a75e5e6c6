"""``personaloom tui`` and ``personaloom watch`` on the command line: argument errors before
the screen is taken over, and a watcher that never loads the graph stack or Chroma."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from personaloom.cli import main


def test_argument_errors_come_before_the_dashboard(tmp_path: Path, make_spec, capsys) -> None:
    assert main(["watch", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["tui"]) == 2
    assert "give a spec" in capsys.readouterr().err
    spec = make_spec()
    assert main(["tui", str(spec), "--out", str(tmp_path / "a"), "--resume", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraits: {}\n")
    assert main(["tui", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


WATCH = """
import json, os, sys, threading
from pathlib import Path

seen, done = set(), threading.Event()

def watch_descriptors():  # what the process has open, every 10 ms
    while not done.is_set():
        for fd in os.listdir("/proc/self/fd"):
            try:
                seen.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        done.wait(0.01)

threading.Thread(target=watch_descriptors, daemon=True).start()
from personaloom.tui.app import PersonaloomApp

async def auto_pilot(pilot):
    app = pilot.app
    while app.view is None or app.state.status != "complete":
        await pilot.pause(0.05)
    for key in ("2", "3", "4", "1"):
        await pilot.press(key)
    app.exit(app.view.report["accepted"])

run_dir = Path(sys.argv[1])
app = PersonaloomApp(watch=run_dir)
accepted = app.run(headless=True, size=(120, 40), auto_pilot=auto_pilot)
done.set()
heavy = ["personaloom.runner", "torch", "llama_cpp", "sentence_transformers"]
print(json.dumps({
    "accepted": accepted,
    "loaded": [m for m in heavy if m in sys.modules],
    "chroma_files": sorted(p for p in seen if str(run_dir / "chroma") in p),
    "traces_open": any(p.endswith("traces.sqlite") for p in seen),
}))
"""


def test_watch_never_opens_chroma_nor_starts_a_graph(finished_run: Path) -> None:
    """Chroma is not process-safe: a watcher must not open the run's store (no file under
    ``chroma/`` is ever open in its process), nor load the runner or a local model."""
    assert any((finished_run / "chroma").iterdir())  # there is a store it could open
    result = subprocess.run(
        [sys.executable, "-c", WATCH, str(finished_run)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    report = json.loads((finished_run / "report.json").read_text())
    assert out["accepted"] == report["accepted"]
    assert out["loaded"] == [] and out["chroma_files"] == []
    assert out["traces_open"]  # the descriptor watch does see the files the watcher reads
