"""Graph state: small and typed. Samples and personas live in the run directory, not here.

The main graph's state holds the current batch of draft assignments, their outcomes until
``commit`` writes them out, and cursors into the corpus and the persona pool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from personaloom.agents.models import DraftOutcome, DraftTask  # noqa: F401 - old checkpoints name them here

Status = Literal["running", "complete", "budget", "stalled", "stopped"]


def collect(left: list[DraftOutcome] | None, right: list[DraftOutcome] | None) -> list:
    """Outcomes from concurrent drafts add up; ``None`` empties the list after a commit."""
    if right is None:
        return []
    return [*(left or []), *right]


class GenerationState(TypedDict, total=False):
    status: Status
    stop_reason: str | None
    round: int
    batch: list[DraftTask]
    need_personas: int
    wanted: dict[str, list[str]]  # persona-trait values the next personas should carry
    outcomes: Annotated[list[DraftOutcome], collect]
    pool_cursor: int  # pool personas before this index have been admitted
    corpus_cursor: int  # texts before this index have been mined
    relate_cursor: int  # pool personas before this index have been related
    pool_exhausted: bool  # no text or relation left to mine
    idle_rounds: int  # rounds in a row that accepted nothing


class DraftInput(TypedDict):
    task: DraftTask


class DraftOutput(TypedDict):
    outcomes: Annotated[list[DraftOutcome], collect]


class DraftState(DraftInput, DraftOutput, total=False):
    record: dict[str, Any] | None
    revision: int
    feedback: str | None
    neighbour: str | None
    verdict: Literal["accept", "revise", "reject"]
    reason: str | None
    details: str
    score: int | None
    embedding: list[float] | None
    neighbour_id: str | None
    similarity: float | None
    unconfirmed: list[str]
    contamination: dict[str, Any] | None
    aborted: bool
    written: bool  # the outcome was written before a crash: nothing to do
