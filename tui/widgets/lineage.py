"""A sample's lineage as a Textual tree: source text, persona chain, every call and verdict.

The tree itself is built by ``personaloom.trace_views.lineage_tree`` (what ``personaloom
traces lineage`` prints), so the CLI and the dashboard cannot disagree; this widget only
copies that Rich tree into a navigable, collapsible one.
"""

from __future__ import annotations

from rich.tree import Tree as RichTree
from textual.reactive import reactive
from textual.widgets import Tree
from textual.widgets.tree import TreeNode


class LineageTree(Tree[str]):
    """Shows ``source`` (a Rich tree); every node starts expanded."""

    DEFAULT_CSS = "LineageTree { height: auto; max-height: 100%; }"

    source: reactive[RichTree | None] = reactive(None, always_update=True)
    """The lineage as ``lineage_tree`` returns it."""

    def __init__(self, **kwargs) -> None:
        super().__init__("lineage", **kwargs)
        self.show_root = True
        self.guide_depth = 3

    def watch_source(self, source: RichTree | None) -> None:
        self.clear()
        if source is None:
            self.root.set_label("loading lineage…")
            return
        self.root.set_label(source.label)  # type: ignore[arg-type]
        self._copy(self.root, source)
        self.root.expand_all()

    def _copy(self, node: TreeNode[str], source: RichTree) -> None:
        for child in source.children:
            if child.children:
                self._copy(node.add(child.label, expand=True), child)  # type: ignore[arg-type]
            else:
                node.add_leaf(child.label)  # type: ignore[arg-type]
