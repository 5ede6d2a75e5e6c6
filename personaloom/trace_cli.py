"""``personaloom traces``: read a run's trace store for prompt debugging.

``traces RUN_DIR`` lists calls (with filters) and totals per agent; ``traces show RUN_DIR ID``
prints one call whole; ``traces lineage RUN_DIR SAMPLE_ID`` follows a sample back to its source
text; ``traces export RUN_DIR`` writes calls as JSONL or as OpenAI chat records. All read-only:
safe while a run is writing (SQLite WAL). This module is the arguments and the printing; what
it prints comes from ``personaloom.trace_views``, which the dashboard shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from personaloom.errors import ConfigError
from personaloom.store import REJECTED, read_jsonl
from personaloom.trace_views import (
    call_view,
    calls_table,
    export_rows,
    lineage_tree,
    select,
    totals_table,
)
from personaloom.traces import TraceStore


def add_parser(commands: argparse._SubParsersAction) -> None:
    traces = commands.add_parser(
        "traces",
        help="inspect a run's LLM calls: list, show, lineage, export, replay",
        description="List a run's LLM calls with totals per agent, or: "
        "traces show RUN_DIR CALL_ID | traces lineage RUN_DIR SAMPLE_ID | "
        "traces export RUN_DIR [--format jsonl|openai] [-o FILE]",
    )
    actions = traces.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="calls and totals per agent (the default)")
    _list_arguments(listing)
    show = actions.add_parser("show", help="one call whole")
    show.add_argument("run_dir", type=Path)
    show.add_argument("call_id", type=int)
    lineage = actions.add_parser("lineage", help="a sample from source text to final record")
    lineage.add_argument("run_dir", type=Path)
    lineage.add_argument("sample_id")
    replay = actions.add_parser(
        "replay",
        help="re-run a call (or every critic call of rejected drafts) with an edited prompt",
        description="Re-renders the call's prompt from its recorded inputs (with --prompt, "
        "an edited template), calls the endpoint, prints the new reply and a diff against the "
        "recorded one, and records the replay as a trace of its own.",
    )
    replay.add_argument("run_dir", type=Path)
    replay.add_argument("call_id", type=int, nargs="?", help="the call to replay")
    replay.add_argument("--prompt", type=Path, help="an edited template file (<role>.md.j2)")
    replay.add_argument("--model", help="another model name")
    replay.add_argument("--temperature", type=float, help="another temperature")
    replay.add_argument("-n", type=int, default=1, metavar="K", help="replies to ask for (1)")
    replay.add_argument("--base-url", help="another OpenAI-compatible endpoint")
    replay.add_argument("--cache", action="store_true", help="allow answers from the reply cache")
    replay.add_argument(
        "--all-rejected",
        action="store_true",
        help="replay every call of --agent (critic) made for a rejected draft; show verdict changes",
    )
    replay.add_argument("--agent", default="critic", help="with --all-rejected (default critic)")
    export = actions.add_parser("export", help="calls as JSONL or OpenAI chat records")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=["jsonl", "openai"], default="jsonl")
    export.add_argument("--agent", help="only this agent's calls")
    export.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--agent", help="persona_miner, persona_relater, writer or critic")
    parser.add_argument(
        "--status",
        choices=["ok", "error", "rejected"],
        help="ok; error (request or parse failures); rejected (calls of rejected drafts)",
    )
    parser.add_argument("--sample", help="calls made for this sample/draft id")
    parser.add_argument("--persona", help="calls made for or by this persona id")
    parser.add_argument("--since", help="ISO time, or a duration back from now: 90s, 10m, 2h, 1d")
    parser.add_argument("--slowest", type=int, metavar="N", help="the N slowest calls")
    parser.add_argument("--limit", type=int, default=50, help="most recent calls shown (50)")


def normalise(argv: list[str]) -> list[str]:
    """``traces RUN_DIR ...`` is short for ``traces list RUN_DIR ...``."""
    if (
        len(argv) >= 2
        and argv[0] == "traces"
        and argv[1] not in ("list", "show", "lineage", "export", "replay", "-h", "--help")
    ):
        return ["traces", "list", *argv[1:]]
    return argv


def main(args: argparse.Namespace) -> int:
    if args.action is None:
        raise ConfigError("give a run directory: personaloom traces RUN_DIR (see --help)")
    if args.action == "replay":
        import asyncio

        return asyncio.run(_replay(args, _console()))
    store = _open(args.run_dir)
    console = _console()
    try:
        return {"list": _list, "show": _show, "lineage": _lineage, "export": _export}[args.action](
            store, args, console
        )
    finally:
        store.close()


def _console() -> Console:
    """Full width in a terminal; wide enough not to cut ids when piped to a file."""
    return Console(width=None if sys.stdout.isatty() else 200)


def _open(run_dir: Path) -> TraceStore:
    path = run_dir / "traces.sqlite"
    if not path.exists():
        raise ConfigError(f"{run_dir} has no traces.sqlite: is it a run directory?")
    return TraceStore(path, readonly=True)


def _list(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    calls = select(store, args.run_dir, args)
    shown = calls if args.slowest else calls[-args.limit :]
    console.print(calls_table(shown, len(calls)))
    console.print(totals_table(calls, title="totals per agent", title_justify="left"))
    return 0


def _call(store: TraceStore, call_id: int) -> dict[str, Any]:
    rows = store.calls("id = ?", [call_id])
    if not rows:
        raise ConfigError(f"no call {call_id} in this run (see `personaloom traces RUN_DIR`)")
    return rows[0]


def _show(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    console.print(call_view(store, _call(store, args.call_id)))
    return 0


def _lineage(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    console.print(lineage_tree(store, args.run_dir, args.sample_id))
    return 0


def _export(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    rows = export_rows(store, args.format, args.agent)
    handle = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            handle.close()
    if args.output:
        print(f"wrote {len(rows)} records to {args.output}", file=sys.stderr)
    return 0


async def _replay(args: argparse.Namespace, console: Console) -> int:
    from personaloom.endpoints import Overrides
    from personaloom.replay import Replayer

    if args.call_id is None and not args.all_rejected:
        raise ConfigError("give a CALL_ID, or --all-rejected")
    if args.prompt is not None and not args.prompt.is_file():
        raise ConfigError(f"--prompt {args.prompt}: file not found")
    _open(args.run_dir).close()  # a clear error for a directory without traces
    replayer = Replayer(
        args.run_dir, overrides=Overrides(base_url=args.base_url), use_cache=args.cache
    )
    options = {"prompt": args.prompt, "model": args.model, "temperature": args.temperature}
    try:
        if not args.all_rejected:
            call = replayer.call(args.call_id)
            for k, result in enumerate(await replayer.replay(call, n=args.n, **options), 1):
                console.rule(f"replay {k} of call {call['id']} ({call['agent']})")
                if result.error:
                    console.print(f"[red]failed:[/red] {escape(result.error)}")
                    continue
                console.print(escape(json.dumps(result.parsed, indent=2, ensure_ascii=False)))
                console.rule("[dim]diff against the recorded reply[/dim]", align="left")
                console.print(escape(result.diff() or "(identical)"))
            return 0
        return await _replay_rejected(replayer, args, options, console)
    finally:
        await replayer.aclose()


async def _replay_rejected(
    replayer, args: argparse.Namespace, options: dict, console: Console
) -> int:
    """Replay the calls of rejected drafts; for the critic, show how verdicts change."""
    rejected = {row["id"] for row in read_jsonl(args.run_dir / REJECTED)}
    calls = [
        c
        for c in replayer.traces.calls(
            "agent = ? AND status = 'ok' AND replay_of IS NULL", [args.agent]
        )
        if c["sample_id"] in rejected and c["variables"]
    ]
    if not calls:
        console.print(f"no {args.agent} calls of rejected drafts to replay")
        return 0
    table = Table(title=f"{len(calls)} {args.agent} calls of rejected drafts", title_justify="left")
    for column in ("call", "sample", "recorded", "replay"):
        table.add_column(column)
    critic = args.agent == "critic"
    changed = passing = 0
    for call in calls:
        (result,) = await replayer.replay(call, n=1, **options)
        before = replayer.verdict(call, json.loads(call["parsed"])) if critic else "ok"
        if critic:
            after = replayer.verdict(call, result.parsed)
        else:
            after = "ok" if result.parsed is not None else "failed"
        changed += before != after
        passing += after == "pass"
        table.add_row(str(call["id"]), call["sample_id"], before, after)
    console.print(table)
    summary = f"{changed} of {len(calls)} replies changed their outcome"
    if critic:
        summary += f"; {passing} would now pass the critic"
    console.print(summary)
    return 0
