"""``personaloom traces``: read a run's trace store for prompt debugging.

``traces RUN_DIR`` lists calls (with filters) and totals per agent; ``traces show RUN_DIR ID``
prints one call whole; ``traces lineage RUN_DIR SAMPLE_ID`` follows a sample back to its source
text; ``traces export RUN_DIR`` writes calls as JSONL or as OpenAI chat records. All read-only:
safe while a run is writing (SQLite WAL).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.json import JSON
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from personaloom.errors import ConfigError
from personaloom.store import DATASET, PERSONAS, REJECTED, read_jsonl
from personaloom.traces import TraceStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


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


def _since(value: str) -> float:
    match = _DURATION.match(value)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time() - seconds
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ConfigError(f"--since {value!r}: give an ISO time or a duration like 10m") from None


def select(store: TraceStore, run_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Call rows matching the list filters, oldest first (or slowest first with --slowest)."""
    where, params = [], []
    if args.agent:
        where.append("agent = ?")
        params.append(args.agent)
    if args.sample:
        where.append("sample_id = ?")
        params.append(args.sample)
    if args.persona:
        where.append("persona_id = ?")
        params.append(args.persona)
    if args.since:
        where.append("ts >= ?")
        params.append(_since(args.since))
    if args.status == "ok":
        where.append("status = 'ok'")
    elif args.status == "error":
        where.append("status != 'ok'")
    calls = store.calls(" AND ".join(where), params)
    if args.status == "rejected":
        rejected = {row["id"] for row in read_jsonl(run_dir / REJECTED)}
        calls = [c for c in calls if c["sample_id"] in rejected]
    if args.slowest:
        calls = sorted(calls, key=lambda c: -(c["latency_ms"] or 0))[: args.slowest]
    return calls


def totals(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per agent: calls, tokens, mean and p95 latency of real requests, cache hits, errors."""
    result: dict[str, dict[str, Any]] = {}
    for agent in sorted({c["agent"] for c in calls}):
        rows = [c for c in calls if c["agent"] == agent]
        latencies = sorted(c["latency_ms"] for c in rows if not c["cache_hit"] and c["latency_ms"])
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        result[agent] = {
            "calls": len(rows),
            "tokens": sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in rows),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
            "p95_ms": round(p95, 1) if p95 is not None else None,
            "cache_hits": sum(c["cache_hit"] for c in rows),
            "errors": sum(c["status"] != "ok" for c in rows),
        }
    return result


def totals_table(calls: list[dict[str, Any]], **options: Any) -> Table:
    """The totals per agent as a table (``options`` go to ``rich.table.Table``)."""
    table = Table(**options)
    for column in ("agent", "calls", "tokens", "mean ms", "p95 ms", "cache hits", "errors"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent, t in totals(calls).items():
        table.add_row(
            agent,
            *(
                str(t[k]) if t[k] is not None else "-"
                for k in ("calls", "tokens", "mean_ms", "p95_ms", "cache_hits", "errors")
            ),
        )
    return table


def _list(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    calls = select(store, args.run_dir, args)
    shown = calls if args.slowest else calls[-args.limit :]
    table = Table(title=f"{len(shown)} of {len(calls)} calls", title_justify="left")
    for column in (
        "id",
        "time",
        "agent",
        "sample",
        "persona",
        "att",
        "status",
        "ms",
        "tokens",
        "cache",
    ):
        table.add_column(
            column, justify="right" if column in ("id", "att", "ms", "tokens") else "left"
        )
    for c in shown:
        tokens = (c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0)
        status = c["status"] if c["status"] == "ok" else f"[red]{c['status']}[/red]"
        table.add_row(
            str(c["id"]),
            datetime.fromtimestamp(c["ts"]).strftime("%H:%M:%S"),
            c["agent"],
            c["sample_id"] or "",
            c["persona_id"] or "",
            str(c["attempt"]),
            status,
            f"{c['latency_ms']:.0f}" if c["latency_ms"] is not None else "",
            str(tokens or ""),
            "hit" if c["cache_hit"] else "",
        )
    console.print(table)
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


def call_view(store: TraceStore, c: dict[str, Any]) -> Group:
    """One call whole: facts, params, messages, raw reply, parsed result and error (the CLI's
    ``traces show`` and the dashboard's call detail)."""
    parts: list[Any] = [Rule(f"call {c['id']}: {c['agent']} ({c['node']})")]
    facts = {
        "sample": c["sample_id"],
        "persona": c["persona_id"],
        "template": f"{c['template']} @ {c['template_hash']}",
        "schema": c["schema_name"],
        "status": c["status"],
        "attempt": c["attempt"],
        "latency": f"{c['latency_ms']:.0f} ms" if c["latency_ms"] is not None else None,
        "tokens": f"{c['prompt_tokens']} in, {c['completion_tokens']} out",
        "cache hit": bool(c["cache_hit"]),
        "time": datetime.fromtimestamp(c["ts"]).isoformat(timespec="seconds"),
    }
    for key, value in facts.items():
        if value is not None:
            parts.append(Text.from_markup(f"[bold]{key}:[/bold] {escape(str(value))}"))
    parts.append(Text.from_markup(f"[bold]params:[/bold] {escape(c['params'])}"))
    for message in store.messages(c):
        parts.append(Rule(f"[dim]{message['role']}[/dim]", align="left"))
        parts.append(Text(message["content"]))
    parts.append(Rule("[dim]raw reply[/dim]", align="left"))
    parts.append(Text(c["raw_reply"] or ""))
    if c["parsed"]:
        parts.append(Rule("[dim]parsed[/dim]", align="left"))
        parts.append(JSON(c["parsed"]))
    if c["error"]:
        parts.append(Rule("[red]error[/red]", align="left"))
        parts.append(Text(c["error"]))
    return Group(*parts)


def _lineage(store: TraceStore, args: argparse.Namespace, console: Console) -> int:
    console.print(lineage_tree(store, args.run_dir, args.sample_id))
    return 0


def lineage_tree(store: TraceStore, run_dir: Path, sample_id: str) -> Tree:
    """A sample from its source text through the persona chain, every call and verdict, to
    its outcome (the CLI's ``traces lineage`` and the dashboard's sample detail)."""
    accepted = {r["id"]: r for r in read_jsonl(run_dir / DATASET)}
    rejected = {r["id"]: r for r in read_jsonl(run_dir / REJECTED)}
    personas = {p["id"]: p for p in read_jsonl(run_dir / PERSONAS)}
    final = accepted.get(sample_id) or rejected.get(sample_id)
    if final is None:
        raise ConfigError(f"no sample or draft {sample_id!r} in {run_dir}")
    persona_id = final["persona"]["id"] if sample_id in accepted else final["persona_id"]
    chain = []
    current: str | None = persona_id
    while current in personas and current not in chain:
        chain.append(current)
        current = personas[current].get("parent_id")
    root = personas[chain[-1]] if chain else {}
    if root.get("pool"):
        pool = root["pool"]
        tree = Tree(f"[bold]pool[/bold] {escape(str(pool['file']))} row {pool['row']}")
    else:
        tree = Tree(f"[bold]source text[/bold] {escape(str(root.get('source_text_id')))}")
    node = tree
    for pid in reversed(chain):
        p = personas[pid]
        node = node.add(
            f"[bold]persona[/bold] {pid} ({escape(str(p.get('relation')))}, depth {p['depth']}): "
            f"{escape(p['persona'][:120])}"
        )
    drafts = node.add(f"[bold]draft[/bold] {sample_id}")
    steps: list[tuple[float, str]] = []
    writes = 0
    for c in store.calls("sample_id = ?", [sample_id]):
        step = c["agent"]
        if c["agent"] == "writer" and c["attempt"] == 1:
            writes += 1
        if c["agent"] == "writer":
            step = "writer: first draft" if writes == 1 else f"writer: revision {writes - 1}"
        retry = f", attempt {c['attempt']}" if c["attempt"] > 1 else ""
        replay = f" (replay of {c['replay_of']})" if c["replay_of"] else ""
        label = f"call {c['id']} {step}{retry}{replay}: {c['status']}"
        if c["agent"] == "critic" and c["parsed"]:
            verdict = json.loads(c["parsed"])
            label += f" (score {verdict.get('score')})"
        elif c["error"]:
            label += f" ({escape(c['error'][:80])})"
        steps.append((c["ts"], label))
    for event in store.events(sample_id=sample_id):
        data = event["data"]
        if event["kind"] == "verdict":
            why = f" {data['reason']}" if data.get("reason") else ""
            note = escape(str(data.get("feedback") or "")[:90])
            steps.append((event["ts"], f"[bold]verdict[/bold] {data['verdict']}{why}: {note}"))
        elif event["kind"] == "novelty":
            nearest = data.get("neighbour_id")
            flag = " [red]duplicate[/red]" if data.get("duplicate") else ""
            found = f"nearest {nearest} at {data.get('similarity')}" if nearest else None
            steps.append((event["ts"], f"novelty: {found or 'nothing accepted yet'}{flag}"))
    for _, label in sorted(steps, key=lambda step: step[0]):
        drafts.add(label)
    if sample_id in accepted:
        drafts.add(f"[green]accepted[/green]: {escape(json.dumps(final['output'])[:160])}")
    else:
        drafts.add(f"[red]rejected[/red] {final['reason']}: {escape(final['details'][:120])}")
    return tree


def export_rows(store: TraceStore, fmt: str, agent: str | None) -> list[dict[str, Any]]:
    calls = store.calls("agent = ?", [agent]) if agent else store.calls()
    rows = []
    for c in calls:
        messages = store.messages(c)
        if fmt == "openai":
            if c["status"] != "ok":
                continue  # only replies that parsed make training pairs
            rows.append({"messages": [*messages, {"role": "assistant", "content": c["raw_reply"]}]})
            continue
        row = {k: v for k, v in c.items() if k not in ("messages", "params", "parsed")}
        row.update(
            messages=messages,
            params=json.loads(c["params"]),
            parsed=json.loads(c["parsed"]) if c["parsed"] else None,
            cache_hit=bool(c["cache_hit"]),
        )
        rows.append(row)
    return rows


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
