"""Check the layering (import-linter) and the types (mypy) of the installed package layout.

    python tools/layers.py imports     # the import contracts in pyproject.toml
    python tools/layers.py types       # mypy over personaloom, its graphs and its agents

The repository keeps ``agents/``, ``graphs/``, ``prompts/`` and ``tui/`` beside
``personaloom/`` and installs them as its subpackages (pyproject's ``package-dir``). Neither
import-linter nor mypy follows that mapping (the editable install is an import hook), so this
copies the sources into ``build/layout/personaloom/`` as they are installed and runs the tool
there, with site-packages but without the editable hook. Paths in mypy's messages are
mapped back to the repository's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / "build" / "layout"
SUBPACKAGES = ("agents", "graphs", "prompts", "tui")


def build() -> Path:
    """``build/layout/personaloom``: the package as installed, made afresh."""
    shutil.rmtree(LAYOUT, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = LAYOUT / "personaloom"
    shutil.copytree(ROOT / "personaloom", package, ignore=ignore)
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, package / name, ignore=ignore)
    return package


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` under this interpreter with -S (no .pth files, so no editable hook) and
    the layout first on the path, from inside the layout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(LAYOUT), sysconfig.get_paths()["purelib"]]),
    }
    return subprocess.run(
        [sys.executable, "-S", *command], cwd=LAYOUT, env=env, text=True, capture_output=True
    )


def to_repository(text: str) -> str:
    """build/layout/personaloom/agents/x.py -> agents/x.py, .../personaloom/x.py -> personaloom/x.py."""
    for name in SUBPACKAGES:
        text = text.replace(f"personaloom/{name}/", f"{name}/")
    return text


def main(argv: list[str]) -> int:
    what = argv[0] if argv else ""
    if what not in ("imports", "types"):
        print(__doc__, file=sys.stderr)
        return 2
    build()
    if what == "imports":
        done = run(
            [
                "-c",
                "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
                str(ROOT / "pyproject.toml"),
                "--no-cache",
            ]
        )
    else:
        done = run(
            ["-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "personaloom"]
        )
    sys.stdout.write(to_repository(done.stdout))
    sys.stderr.write(to_repository(done.stderr))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
