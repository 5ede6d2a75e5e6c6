"""The progress bar of ``personaloom run`` on a terminal (rich, on stderr)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressDisplay:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("accepted {task.fields[accepted]}  rejected {task.fields[rejected]}"),
            TextColumn("calls {task.fields[calls]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("coverage", total=None, accepted=0, rejected=0, calls=0)
        self.needed: int | None = None
        self.rejected = 0
        self.progress.start()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run_started":
            self.progress.update(self.task, accepted=event["accepted"])
            self.console.print(f"run directory: {event['run_dir']}")
        elif kind == "batch":
            if self.needed is None:
                self.needed = event["remaining"]
                self.progress.update(self.task, total=self.needed, completed=0)
            self.progress.update(self.task, calls=event.get("calls", 0))
            self.progress.update(self.task, completed=self.needed - event["remaining"])
        elif kind == "sample_accepted":
            self.progress.update(self.task, accepted=event["accepted"])
            if self.needed is not None:
                self.progress.update(self.task, completed=self.needed - event["remaining"])
        elif kind == "sample_rejected":
            self.rejected += 1
            self.progress.update(self.task, rejected=self.rejected)
        elif kind == "pool_loaded":
            self.console.print(
                f"persona pool {event['path']}: {event['personas']} personas "
                f"from {event['rows']} rows"
            )
        elif kind == "personas":
            self.progress.update(self.task, description=f"coverage (personas {event['pool']})")
        elif kind == "stagnant":
            what = "given up" if event["given_up"] else "set aside"
            self.console.print(
                f"[yellow]{event['trait']}={event['value']} {what}[/yellow] after "
                f"{event['attempts']} drafts (mostly {event['reason']})"
            )

    def close(self) -> None:
        self.progress.stop()

    def summary(self, result: Any) -> None:
        report = result.report
        out = self.console
        out.print(
            f"[bold]{result.status}[/bold]"
            + (f" ({result.stop_reason})" if result.stop_reason else "")
        )
        out.print(f"run directory: {result.run_dir}")
        out.print(
            f"accepted {report['accepted']}, rejected {report['rejected']}, "
            f"calls {report['calls']}, cache hits {report['cache_hits']}, tokens {report['tokens']}"
            + (f", cost {cost['total']:.4f}" if (cost := report.get("cost")) else "")
        )
        for trait, values in report["coverage"].items():
            cells = ", ".join(f"{v} {c['accepted']}/{c['target']}" for v, c in values.items())
            out.print(f"  {trait}: {cells}")
        for grid in report.get("joint", []):
            met = sum(c["accepted"] >= c["target"] for c in grid["cells"])
            out.print(f"  {' x '.join(grid['traits'])}: {met} of {len(grid['cells'])} cells met")
        if report["rejections"]:
            out.print(
                "  rejections: " + ", ".join(f"{k} {v}" for k, v in report["rejections"].items())
            )
        if dec := report.get("decontamination"):
            out.print(
                f"  decontamination: {dec['caught']} drafts caught resembling "
                f"{dec['items_hit']} of {dec['items']} avoided items, {dec['rejected']} rejected"
            )
        if memory := report.get("memory"):
            out.print(
                f"  novelty memory {memory['name']}: {memory['rejected']} drafts rejected as "
                "copies of earlier runs' samples"
            )
        if div := report.get("diversity"):
            opening = div.get("top_opening_share")
            out.print(
                f"  diversity: distinct-2 {div.get('distinct_2')}, Vendi {div.get('vendi_score')}"
                + (f", top opening {opening:.0%}" if opening is not None else "")
            )
        out.print(f"report: {result.run_dir / 'report.md'}")
