"""``make demo``: a small TinyStories-style run, then where the data is and what it looks like.

Runs ``examples/tiny-stories/demo.yaml`` on whatever endpoint is configured, which on a fresh
machine is the embedded SmolLM2-135M (no key, no network). ``python -m personaloom.demo
[SPEC]`` runs another spec the same way.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from personaloom.progress import ProgressDisplay
from personaloom.runner import EXIT_INTERRUPTED, arun
from personaloom.store import DATASET, read_jsonl

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "examples" / "tiny-stories" / "demo.yaml"


def show_samples(console: Console, run_dir: Path, count: int = 2) -> None:
    samples = read_jsonl(run_dir / DATASET)
    for sample in samples[:count]:
        console.rule(
            f"[bold]{sample['id']}[/bold]  "
            + ", ".join(f"{k}={v}" for k, v in sample["traits"].items())
        )
        console.print(f"[dim]persona:[/dim] {sample['persona']['text']}")
        console.print(
            f"[dim]words:[/dim] {', '.join(sample['words'].values())}   "
            f"[dim]critic score:[/dim] {sample['critic']['score']}"
        )
        for name, value in sample["output"].items():
            text = value if isinstance(value, str) else json.dumps(value)
            console.print(Text.assemble((f"{name}: ", "bold"), " ".join(text.split())))
    if samples:
        console.rule()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = Path(args[0]) if args else DEFAULT_SPEC
    console = Console(stderr=True)
    out = Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    console.print(f"[bold]personaloom demo[/bold]: {spec}")
    progress = ProgressDisplay()
    try:
        result = asyncio.run(arun(spec, out=out, listeners=[progress.on_event]))
    except KeyboardInterrupt:
        progress.close()
        console.print(f"interrupted: continue with  personaloom run --resume {out}")
        return EXIT_INTERRUPTED
    progress.close()
    progress.summary(result)
    console.print(f"dataset: [bold]{result.run_dir / 'dataset.jsonl'}[/bold]")
    show_samples(console, result.run_dir)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
