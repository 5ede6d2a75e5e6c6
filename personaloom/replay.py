"""Replay recorded LLM calls with an edited prompt, another model or temperature.

A call's template inputs are stored with it, so the prompt is re-rendered from the same inputs
(with the edited template when one is given), sent to the run's endpoint (or the one named on
the command line), parsed with the same schema, and recorded as a trace of its own
(``replay_of`` = the original call). The cache is bypassed unless asked for.
"""

from __future__ import annotations

import difflib
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from personaloom.agents.critic import Review, judge
from personaloom.agents.models import (
    DraftTask,
    PersonaList,
    RelatedPersonaList,
    critic_model,
    trait_field,
)
from personaloom.endpoints import Overrides, resolve_endpoints
from personaloom.errors import ConfigError
from personaloom.llm import LLM, Budget, CallInfo, LLMFailure
from personaloom.prompts import load_template
from personaloom.runner import embedded_model, open_cache
from personaloom.spec import Spec
from personaloom.store import TRACES, load_run
from personaloom.traces import TraceStore


@dataclass
class Replay:
    original: dict[str, Any]
    raw: str | None  # the new reply (None when the call failed)
    parsed: dict[str, Any] | None
    error: str | None

    def diff(self) -> str:
        """Unified diff of the recorded reply against the new one (JSON pretty-printed)."""
        old = _pretty(self.original["raw_reply"] or "")
        new = _pretty(self.raw or "")
        lines = difflib.unified_diff(
            old.splitlines(), new.splitlines(), "recorded", "replay", lineterm=""
        )
        return "\n".join(lines)


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text, strict=False), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return text


def schema_for(spec: Spec, agent: str, variables: dict[str, Any]) -> type[BaseModel]:
    if agent == "persona_miner":
        return PersonaList
    if agent == "persona_relater":
        return RelatedPersonaList
    if agent == "writer":
        return spec.output_model()
    if agent == "critic":
        return critic_model(list(variables.get("traits", {})))
    raise ConfigError(f"cannot replay calls of agent {agent!r}")


class Replayer:
    """Holds the endpoint (starting the embedded model if the run used it) for many replays."""

    def __init__(
        self,
        run_dir: Path,
        *,
        overrides: Overrides | None = None,
        use_cache: bool = False,
    ):
        self.run_dir = run_dir
        self.spec, _ = load_run(run_dir)
        self.traces = TraceStore(run_dir / TRACES)
        self._stack = ExitStack()
        self._stack.callback(self.traces.close)
        endpoints, needs_local = resolve_endpoints(self.spec, overrides)
        start = None
        if needs_local:
            endpoints, start = embedded_model(endpoints, run_dir, self._stack)
        cache = open_cache(self.spec, self._stack) if use_cache else None
        self.llm = LLM(
            endpoints, traces=self.traces, budget=Budget(), cache=cache, start_embedded=start
        )

    def call(self, call_id: int) -> dict[str, Any]:
        rows = self.traces.calls("id = ?", [call_id])
        if not rows:
            raise ConfigError(f"no call {call_id} in {self.run_dir}")
        row = rows[0]
        if not row.get("variables"):
            raise ConfigError(
                f"call {call_id} has no recorded template inputs; it cannot be replayed"
            )
        return row

    async def replay(
        self,
        call: dict[str, Any],
        *,
        prompt: Path | None = None,
        model: str | None = None,
        temperature: float | None = None,
        n: int = 1,
    ) -> list[Replay]:
        agent = call["agent"]
        override = prompt or (
            self.spec.resolve(self.spec.prompts[agent]) if agent in self.spec.prompts else None
        )
        template = load_template(agent, override)
        variables = json.loads(call["variables"])
        schema = schema_for(self.spec, agent, variables)
        params = json.loads(call["params"])
        changes: dict[str, Any] = {}
        if model:
            changes["model"] = model
        if temperature is not None:
            changes["temperature"] = temperature
        info = CallInfo(
            agent=agent,
            node="replay",
            sample_id=call["sample_id"],
            persona_id=call["persona_id"],
            replay_of=call["id"],
        )
        results = []
        for k in range(n):
            seed = params.get("seed", 0) + k  # the first replay uses the recorded seed
            try:
                reply = await self.llm.call(
                    agent, template, variables, schema, info, seed=seed, **changes
                )
            except LLMFailure as exc:
                results.append(Replay(call, None, None, str(exc)))
                continue
            new = self.traces.calls("replay_of = ? AND status = 'ok'", [call["id"]])
            raw = new[-1]["raw_reply"] if new else None
            results.append(Replay(call, raw, reply.model_dump(mode="json"), None))
        return results

    def verdict(self, call: dict[str, Any], parsed: dict[str, Any] | None) -> str:
        """What the critic's reply decides under the run's spec: 'pass' or the reason."""
        if parsed is None:
            return "failed"
        traits = json.loads(call["variables"]).get("traits", {})
        review = Review(
            score=min(max(int(parsed["score"]), 1), 5),
            feedback=str(parsed.get("feedback", "")),
            traits={name: bool(parsed.get(trait_field(name))) for name in traits},
        )
        task = DraftTask(
            draft_id=call["sample_id"] or "", round=0, persona_id="", traits=traits, seed=0
        )
        finding = judge(task, review, self.spec.critic.min_score)
        return "pass" if finding is None else str(finding.reason)

    async def aclose(self) -> None:
        await self.llm.aclose()
        self._stack.close()
