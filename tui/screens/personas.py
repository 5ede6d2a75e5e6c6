"""Personas: the pool, its relation tree (source text or pool file -> mined or pool persona ->
related ones), the source text a persona came from (or its pool file and row), and the
personas the gate turned away, with their reasons.

Persona Hub's point is that a persona's detail comes from its text; seeing the text next to
the persona (and the relatives it spawned) is how a person judges the pool, and seeing what
was kept out of it (copies of the prompt's example, fragments) is how they judge the gate.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static, Tree

from personaloom.tui.screens.base import RunScreen
from personaloom.tui.view import RunView, source_text


def relation_forest(personas: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Children per parent id; mined personas (no parent) under their source text id, pool
    personas under their pool file."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for persona in personas:
        if persona.get("parent_id"):
            parent = persona["parent_id"]
        elif persona.get("pool"):
            parent = f"pool:{persona['pool']['file']}"
        else:
            parent = f"text:{persona.get('source_text_id')}"
        children[parent].append(persona)
    return children


class PersonasScreen(RunScreen):
    """The table and the tree select the same persona; its details and text show below."""

    AUTO_FOCUS = "#pool"

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[int, int, int] | None = None
        self._selected: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="persona-tables"):
                with Vertical(id="pool-panel", classes="panel"):
                    yield DataTable(id="pool", cursor_type="row")
                with Vertical(id="rejected-personas-panel", classes="panel"):
                    yield DataTable(id="rejected-personas", cursor_type="row")
            with Vertical(id="persona-side"):
                with Vertical(id="tree-panel", classes="panel"):
                    yield Tree("personas", id="relations")
                with VerticalScroll(id="persona-detail-panel", classes="panel"):
                    yield Static("select a persona", id="persona-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pool-panel").border_title = "Persona pool"
        self.query_one("#tree-panel").border_title = "Relations"
        self.query_one("#persona-detail-panel").border_title = "Persona and source text"
        self.query_one("#rejected-personas-panel").border_title = "Turned away"
        table = self.query_one("#pool", DataTable)
        for label in ("id", "depth", "relation", "drafts", "accepted", "persona"):
            table.add_column(label, key=label)
        rejected = self.query_one("#rejected-personas", DataTable)
        for label in ("id", "depth", "reason", "persona"):
            rejected.add_column(label, key=label)
        tree = self.query_one("#relations", Tree)
        tree.show_root = False

    def show_view(self, view: RunView) -> None:
        store = view.store
        shown = (
            len(store.personas.rows),
            sum(store.persona_uses.values()),
            len(store.rejected_personas.rows),
        )
        if shown == self._shown:
            return
        self._shown = shown
        accepted: dict[str, int] = defaultdict(int)
        for sample in store.dataset.rows:
            accepted[sample["persona"]["id"]] += 1
        table = self.query_one("#pool", DataTable)
        cursor = table.cursor_row
        table.clear()
        for p in store.personas.rows:
            table.add_row(
                p["id"],
                Text(str(p.get("depth", 0)), justify="right"),
                p.get("relation") or "",
                Text(str(store.persona_uses[p["id"]]), justify="right"),
                Text(str(accepted[p["id"]]), justify="right"),
                p["persona"].replace("\n", " "),
                key=p["id"],
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1), animate=False)
        self._fill_tree(store.personas.rows)
        table.border_subtitle = f"{len(store.personas.rows)} personas"
        self._fill_rejected(store.rejected_personas.rows)
        if self._selected:
            self._show_persona(self._selected)

    def _fill_tree(self, personas: list[dict[str, Any]]) -> None:
        tree = self.query_one("#relations", Tree)
        tree.clear()
        children = relation_forest(personas)

        def add(node, persona: dict[str, Any]) -> None:
            label = Text.assemble(
                (persona["id"], "bold"),
                (f" {persona.get('relation')}: ", "dim"),
                persona["persona"][:80],
            )
            kids = children.get(persona["id"], [])
            child = node.add(label, data=persona["id"], expand=True, allow_expand=bool(kids))
            for kid in kids:
                add(child, kid)

        roots = [key for key in children if key.startswith(("text:", "pool:"))]
        for key in roots:
            kind, _, name = key.partition(":")
            label = "source " if kind == "text" else "pool "
            text_node = tree.root.add(Text.assemble((label, "dim"), name), data=None, expand=True)
            for persona in children[key]:
                add(text_node, persona)
        tree.root.expand()

    def _fill_rejected(self, rows: list[dict[str, Any]]) -> None:
        """The personas turned away, newest first, and their count per reason."""
        table = self.query_one("#rejected-personas", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in reversed(rows):
            table.add_row(
                row["id"],
                Text(str(row.get("depth", 0)), justify="right"),
                row["reason"],
                row["persona"].replace("\n", " "),
                key=row["id"],
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1), animate=False)
        reasons = Counter(row["reason"] for row in rows)
        panel = self.query_one("#rejected-personas-panel")
        panel.border_subtitle = ", ".join(f"{r} {n}" for r, n in reasons.most_common()) or "none"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not event.row_key.value:
            return
        if event.data_table.id == "rejected-personas":
            self._show_rejected(event.row_key.value)
        else:
            self._show_persona(event.row_key.value)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data:
            table = self.query_one("#pool", DataTable)
            table.move_cursor(row=table.get_row_index(event.node.data))
            self._show_persona(event.node.data)

    def _show_persona(self, persona_id: str) -> None:
        view = self.loom.view
        if view is None or persona_id not in view.store.persona_by_id:
            return
        self._selected = persona_id
        store = view.store
        persona = store.persona_by_id[persona_id]
        chain = store.lineage(persona_id)
        text = Text()
        text.append(f"{persona_id}", style="bold")
        text.append(f"  depth {persona.get('depth')}, {persona.get('relation')}\n", style="dim")
        text.append(persona["persona"] + "\n\n")
        if len(chain) > 1:
            text.append("related through: ", style="bold")
            text.append(" <- ".join(chain) + "\n\n")
        root = store.persona_by_id[chain[-1]] if chain else persona
        if root.get("pool"):
            text.append(f"from pool {root['pool']['file']}, row {root['pool']['row']}\n", "bold")
        else:
            self._append_source(text, view, root.get("source_text_id"))
        self.query_one("#persona-detail", Static).update(text)

    def _show_rejected(self, persona_id: str) -> None:
        """A turned-away persona: why, and what it was compared with."""
        view = self.loom.view
        if view is None:
            return
        row = next((r for r in view.store.rejected_personas.rows if r["id"] == persona_id), None)
        if row is None:
            return
        self._selected = None
        text = Text()
        text.append(persona_id, style="bold")
        text.append(f"  turned away: {row['reason']}\n", style="bold red")
        text.append(row["persona"] + "\n\n")
        text.append(row.get("details", "") + "\n\n", style="dim")
        if row.get("parent_id"):
            text.append("related to: ", style="bold")
            text.append(row["parent_id"] + "\n\n")
        if row.get("pool"):
            text.append(f"from pool {row['pool']['file']}, row {row['pool']['row']}\n", "bold")
        else:
            self._append_source(text, view, row.get("source_text_id"))
        self.query_one("#persona-detail", Static).update(text)

    @staticmethod
    def _append_source(text: Text, view: RunView, text_id: str | None) -> None:
        text.append(f"source text {text_id}\n", style="bold")
        body = source_text(view.spec, text_id)
        text.append(body if body is not None else "(not found: the corpus changed or moved)")
