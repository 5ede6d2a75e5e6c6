"""What ``personaloom traces`` shows, for the CLI and the dashboard alike.

The queries (``select``, ``totals``, ``export_rows``) and the Rich views (``calls_table``,
``totals_table``, ``call_view``, ``lineage_tree``) over a run's trace store, without argparse
or printing: ``personaloom.trace_cli`` prints them, and the dashboard's traces, call and sample
screens render the same ones, so the two cannot disagree. All read-only: safe while a run is
writing (SQLite WAL).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Group
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
    """Call rows matching the list filters, oldest first (or slowest first with --slowest).

    ``args`` holds agent, status, sample, persona, since and slowest: the CLI's parsed
    arguments, or the dashboard's filters in the same shape."""
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


def calls_table(shown: list[dict[str, Any]], total: int) -> Table:
    """The listed calls, one row each (``traces list``); ``total`` is how many matched."""
    table = Table(title=f"{len(shown)} of {total} calls", title_justify="left")
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
    return table


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
