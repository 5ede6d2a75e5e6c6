"""The headless core imports neither the local model's stack nor Textual: users with a real
endpoint install `personaloom` without the `local` extra, and scripts stay light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "sentence_transformers", "llama_cpp", "textual"]


def test_core_modules_do_not_import_heavy_dependencies() -> None:
    code = (
        "import sys, json\n"
        "import personaloom.cli, personaloom.runner, personaloom.graphs, personaloom.agents.critic\n"
        "import personaloom.local\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_help_is_quick_to_import() -> None:
    code = (
        "import sys, personaloom.cli; print('langgraph' in sys.modules, 'chromadb' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_tui_and_watch_import_textual_only_when_run() -> None:
    """``personaloom tui --help`` (argument parsing) loads no Textual: the command imports
    it inside, so the headless commands never pay for it."""
    code = (
        "import sys\n"
        "from personaloom.cli import main\n"
        "for argv in (['tui', '--help'], ['watch', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('textual' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().splitlines()[-1] == "False"
    assert "--resume RUN_DIR" in result.stdout  # the help was printed
