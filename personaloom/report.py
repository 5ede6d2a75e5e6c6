"""``report.json``: coverage per trait value, rejection reasons, calls, tokens, cache hits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personaloom.spec import Spec, total_target
from personaloom.store import RunStore, load_run, write_json_atomic
from personaloom.traces import TraceStore


def build_report(
    spec: Spec, store: RunStore, traces: TraceStore, *, status: str, stop_reason: str | None
) -> dict[str, Any]:
    coverage: dict[str, dict[str, Any]] = {}
    unmet = []
    for trait, targets in spec.targets().items():
        coverage[trait] = {}
        for value, target in targets.items():
            accepted = store.coverage[(trait, value)]
            attempts = store.attempts[(trait, value)]
            coverage[trait][value] = {
                "target": target,
                "accepted": accepted,
                "attempts": attempts,
                "acceptance_rate": round(accepted / attempts, 3) if attempts else None,
            }
            if accepted < target:
                unmet.append(
                    {"trait": trait, "value": value, "target": target, "accepted": accepted}
                )
    usage = traces.usage()
    return {
        "name": spec.name,
        "status": status,
        "stop_reason": stop_reason,
        "accepted": store.accepted,
        "rejected": len(store.rejected.rows),
        "total_target": total_target(spec),
        "coverage": coverage,
        "unmet": unmet,
        "rejections": dict(sorted(store.reasons.items())),
        "personas": len(store.persona_by_id),
        "calls": usage.calls,
        "tokens": usage.tokens,
        "cache_hits": usage.cache_hits,
        "call_errors": usage.errors,
    }


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    path = run_dir / "report.json"
    write_json_atomic(path, report)
    return path


def regenerate(run_dir: Path) -> Path:
    """Rebuild ``report.json`` of any run directory from its files."""
    spec, meta = load_run(run_dir)
    store = RunStore(run_dir, readonly=True)
    traces = TraceStore(run_dir / "traces.sqlite", readonly=True)
    try:
        report = build_report(
            spec,
            store,
            traces,
            status=meta.get("status", "unknown"),
            stop_reason=meta.get("stop_reason"),
        )
    finally:
        traces.close()
    return write_report(run_dir, report)
