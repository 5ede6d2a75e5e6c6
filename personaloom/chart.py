"""The run report's coverage chart: one PNG that shows which targets are met, short or stuck.

matplotlib is imported inside ``coverage_chart`` only, so importing the report costs nothing
until a chart is drawn. The figure is a bare ``Figure`` on an Agg canvas rather than pyplot:
no display is needed, and the caller's pyplot state and backend (a notebook, the TUI) are left
alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MET = "#3a9a5b"
SHORT = "#e3a33b"
STUCK = "#d1495b"  # stagnant, or nothing accepted yet
TARGET_EDGE = "#30343b"
NO_CELL = "#eceef1"
NO_TARGET = "#9aa1ab"
_STUCK_STATUSES = {"set_aside", "given_up"}  # report.py's names for targets it stopped chasing

_BAR_INCHES = 0.32  # per value of a trait
_CELL_INCHES = (0.95, 0.42)  # width, height of a joint cell
_LABEL_CHARS = 26
_COLUMN_INCHES = 6.4
_DPI = 110


def _short(label: Any, limit: int = _LABEL_CHARS) -> str:
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(cell: Mapping[str, Any], stuck: bool) -> str:
    """The cell's colour; an explicit ``status`` of set_aside/given_up counts as stagnant."""
    target, accepted = int(cell.get("target", 0)), int(cell.get("accepted", 0))
    if target <= 0:
        return NO_TARGET
    if accepted >= target:
        return MET
    if accepted == 0 or _stuck_note(cell, stuck):
        return STUCK
    return SHORT


def _stuck_note(cell: Mapping[str, Any], listed: bool) -> str | None:
    status = cell.get("status")
    if status in _STUCK_STATUSES:
        return str(status).replace("_", " ")
    return "stagnant" if listed else None


def _has_no_target(cells: Iterable[Mapping[str, Any]]) -> bool:
    return any(int(cell.get("target", 0)) <= 0 for cell in cells)


def _stagnant_keys(report: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(str(s.get("trait")), str(s.get("value"))) for s in report.get("stagnant", [])}


def _trait_panel(
    ax: Any, trait: str, values: Mapping[str, Any], stuck: set[tuple[str, str]]
) -> None:
    from matplotlib.ticker import MaxNLocator

    names = list(values)
    cells = [values[name] for name in names]
    accepted = [int(c.get("accepted", 0)) for c in cells]
    targets = [int(c.get("target", 0)) for c in cells]
    colours = [_status(c, (trait, str(n)) in stuck) for n, c in zip(names, cells, strict=True)]
    rows = range(len(names))
    ax.barh(rows, targets, height=0.62, color=colours, alpha=0.2, zorder=1)  # status at 0 too
    ax.barh(rows, accepted, height=0.62, color=colours, zorder=2)
    ax.barh(rows, targets, height=0.62, fill=False, edgecolor=TARGET_EDGE, linewidth=1.1, zorder=3)
    top = max([*accepted, *targets, 1])
    for row, name, cell, got, target in zip(rows, names, cells, accepted, targets, strict=True):
        rate = cell.get("acceptance_rate")
        label = (f"{got}/{target}" if target > 0 else f"{got}, no target") + (
            f"  {rate:.0%}" if rate is not None else ""
        )
        if got < target and (note := _stuck_note(cell, (trait, str(name)) in stuck)):
            label += f"  {note}"
        ax.text(max(got, target) + top * 0.02, row, label, va="center", fontsize=8, zorder=4)
    ax.set_yticks(list(rows), [_short(n) for n in names], fontsize=8.5)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first value on top, as in the spec
    ax.set_xlim(0, top * 1.3)
    ax.tick_params(axis="x", labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", color="#dde1e6", linewidth=0.7, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    met, targeted = colours.count(MET), len(colours) - colours.count(NO_TARGET)
    ax.set_title(f"{trait}  ·  {met} of {targeted} met", loc="left", fontsize=10)


def _ordered(first_seen: Iterable[str], preferred: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(first_seen))
    known = [v for v in preferred if v in seen]
    return known + [v for v in seen if v not in known]


def _joint_panel(
    ax: Any, joint: Mapping[str, Any], coverage: Mapping[str, Any], stuck: set[tuple[str, str]]
) -> None:
    from matplotlib.patches import Rectangle

    a, b = (str(t) for t in joint["traits"])
    cells = {(str(c["values"][0]), str(c["values"][1])): c for c in joint.get("cells", [])}
    rows = _ordered((va for va, _ in cells), coverage.get(a, {}))
    cols = _ordered((vb for _, vb in cells), coverage.get(b, {}))
    for i, va in enumerate(rows):
        for j, vb in enumerate(cols):
            cell = cells.get((va, vb))
            if cell is None:
                colour, label = NO_CELL, "–"
            else:
                colour = _status(cell, (f"{a}×{b}", f"{va}×{vb}") in stuck)
                label = f"{int(cell.get('accepted', 0))}/{int(cell.get('target', 0))}"
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=colour, edgecolor="white"))
            text_colour = "#30343b" if colour in (NO_CELL, SHORT) else "white"
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color=text_colour)
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xticks(range(len(cols)), [_short(v, 16) for v in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), [_short(v) for v in rows], fontsize=8.5)
    if max(map(len, cols), default=0) > 6:
        for label in ax.get_xticklabels():
            label.set(rotation=30, ha="right", rotation_mode="anchor")
    ax.tick_params(length=0)
    ax.set_xlabel(b, fontsize=9)
    ax.set_ylabel(a, fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    statuses = [
        _status(cell, (f"{a}×{b}", f"{va}×{vb}") in stuck) for (va, vb), cell in cells.items()
    ]
    met, targeted = statuses.count(MET), len(statuses) - statuses.count(NO_TARGET)
    ax.set_title(f"{a} × {b}  ·  {met} of {targeted} met", loc="left", fontsize=10)


def _trait_inches(values: Mapping[str, Any]) -> float:
    return 0.95 + _BAR_INCHES * len(values)


def _joint_shape(joint: Mapping[str, Any]) -> tuple[float, float]:
    rows = {str(c["values"][0]) for c in joint["cells"]}
    cols = {str(c["values"][1]) for c in joint["cells"]}
    return 2.2 + _CELL_INCHES[0] * len(cols), 1.4 + _CELL_INCHES[1] * len(rows)


def _columns(traits: list[tuple[str, Any]], count: int) -> list[list[tuple[str, Any]]]:
    """Traits in spec order, split where the columns come out closest to level."""
    if count == 1:
        return [traits]
    heights = [_trait_inches(values) for _, values in traits]
    split = min(range(1, len(traits)), key=lambda k: max(sum(heights[:k]), sum(heights[k:])))
    return [traits[:split], traits[split:]]


def coverage_chart(report: Mapping[str, Any], path: Path) -> Path:
    """Write the coverage chart of ``report`` (the report.json dict) to ``path`` as a PNG.

    One bar panel per trait (accepted as bars, target as an outline, "accepted/target rate"
    beside them), then one grid per joint target with "accepted/target" in each cell.
    Green: target met; amber: short; red: short and stagnant (listed in ``stagnant`` or with
    status set_aside/given_up), or nothing accepted; grey: no target. The file
    is written atomically (a viewer never sees half a PNG) and is byte-identical for the same
    report. The figure is never registered with pyplot, so there is nothing to close.
    """
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    coverage = report.get("coverage", {}) or {}
    joints = [j for j in report.get("joint", []) or [] if j.get("cells")]
    stuck = _stagnant_keys(report)
    traits = [item for item in coverage.items() if item[1]]
    columns = _columns(traits, 2 if len(traits) > 2 else 1) if traits else []
    trait_height = max((sum(_trait_inches(v) for _, v in col) for col in columns), default=0.0)
    joint_shapes = [_joint_shape(joint) for joint in joints]
    width = max([_COLUMN_INCHES * max(len(columns), 1)] + [w for w, _ in joint_shapes])
    heights = ([trait_height] if traits else []) + [h for _, h in joint_shapes]
    title = f"{report.get('name', 'run')} — coverage"

    with style.context("default"):
        fig = Figure(figsize=(width, 0.8 + sum(heights) if heights else 1.4), layout="constrained")
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=12, fontweight="bold", x=0.01, ha="left")
        if not heights:
            fig.text(0.5, 0.4, "no coverage targets", ha="center", va="center", color="#666b73")
        else:
            outer = fig.add_gridspec(len(heights), 1, height_ratios=heights)
            sections = iter(outer)
            if traits:
                area = next(sections).subgridspec(1, len(columns))
                for c, column in enumerate(columns):
                    ratios = [_trait_inches(v) for _, v in column]
                    if trait_height - sum(ratios) > 0.01:  # bars as thick as the other column's
                        ratios.append(trait_height - sum(ratios))
                    stack = area[0, c].subgridspec(len(ratios), 1, height_ratios=ratios)
                    for r, (trait, values) in enumerate(column):
                        _trait_panel(fig.add_subplot(stack[r, 0]), trait, values, stuck)
            for joint, (joint_width, _) in zip(joints, joint_shapes, strict=True):
                row = next(sections).subgridspec(
                    1, 2, width_ratios=[joint_width, max(width - joint_width, 0.01)]
                )
                _joint_panel(fig.add_subplot(row[0, 0]), joint, coverage, stuck)
            legend = [
                Patch(facecolor=MET, label="met"),
                Patch(facecolor=SHORT, label="short"),
                Patch(facecolor=STUCK, label="stagnant or none"),
                Patch(facecolor="none", edgecolor=TARGET_EDGE, label="target"),
            ]
            if any(_has_no_target(values.values()) for _, values in traits) or any(
                _has_no_target(joint["cells"]) for joint in joints
            ):
                legend.insert(3, Patch(facecolor=NO_TARGET, label="no target"))
            fig.legend(
                handles=legend,
                loc="outside lower center",
                ncols=len(legend),
                fontsize=8,
                title="labels: accepted/target, acceptance rate",
                title_fontsize=8,
                frameon=False,
            )
        tmp = path.with_name(path.name + ".tmp")
        # No "Software" text chunk: the bytes depend on the report, not on matplotlib's version.
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
    os.replace(tmp, path)
    return path
