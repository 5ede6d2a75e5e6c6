"""``personaloom estimate``: the calls, tokens and cost a spec's targets take, with no LLM call.

Calls come from a model of the run: every attempt at a draft is a writer and a critic call;
an attempt passes with the *acceptance rate* (an assumption, ``--acceptance-rate``); a draft
failing an attempt is revised up to ``critic.max_revisions`` times and then rejected; the
planner drafts until the targets are met. So with rate ``p`` and ``R`` revisions a draft is
accepted with ``q = 1 - (1 - p) ** (R + 1)``, ``N / q`` drafts are needed for ``N`` samples,
and they take ``N / p`` attempts on average. Personas are mined as the ``mine_personas`` node
does it (pool first, then Persona-to-Persona, then corpus texts), enough for every draft at
``personas.max_uses`` drafts each.

Tokens per call come from the prompt templates rendered with the spec's real inputs (the
instruction, trait values, words, examples, corpus texts, pool personas) and the request the
structured-output strategy adds (the JSON schema), counted as characters / 4. tiktoken is
not used: it downloads its encodings on first use, and personaloom must work offline.
Replies are sized from ``task.length`` and capped by the templates' ``max_tokens``.

Three scenarios: ``minimum`` (nothing rejected, nothing revised: ``fewest_calls``),
``expected`` (at the acceptance rate) and ``worst`` (every draft the expected run needs
takes all its revisions, and every reply is as long as ``max_tokens`` allows). Repair calls
after unparseable replies, strategy probing and near-duplicate personas are not counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from personaloom.prices import Prices
from personaloom.spec import TITLE_FIELDS, Spec, output_fields, read_words, total_target

if TYPE_CHECKING:
    from pydantic import BaseModel

    from personaloom.llm import Endpoint
    from personaloom.prompts import PromptTemplate

# The model of calls (persona_mining, the scenarios) is light: `validate` uses it through
# fewest_calls. Rendering prompts needs the agents and the LLM layer, imported there.

ASSUMED_ACCEPTANCE = 0.7  # per attempt (a writer and a critic call); see --acceptance-rate
CHARS_PER_TOKEN = 4  # English text; the usual rule of thumb for OpenAI's tokenizers
CHARS_PER_WORD = 6  # as spec.CHARS_PER_WORD: a word and the space or mark after it
PERSONA_CHARS = 160  # a mined persona: the one sentence the miner asks for
FEEDBACK_CHARS = 200  # the critic's one or two sentences
TITLE_WORDS, OTHER_WORDS, LIST_ITEMS = 6, 20, 3
UNBOUNDED_WORDS = 150  # a main text with no task.length
VARIANTS = 8  # renders averaged per prompt (trait values, words and texts vary per call)
SCENARIOS = ("minimum", "expected", "worst")

# The roles an estimate counts. The persona_checker (``personas.check: llm``, off by default)
# makes one call per mining step that admits personas: not estimated yet.
ROLES = ("persona_miner", "persona_relater", "writer", "critic")


def tokens(chars: float) -> float:
    return chars / CHARS_PER_TOKEN


@dataclass(frozen=True)
class CallSize:
    """One kind of call, in tokens: its prompt, the expected reply, the longest reply
    ``max_tokens`` allows, and the prompt when the replies it carries (a draft for the critic
    and a revision) are that long. For the writer also a revision's prompt (the previous
    draft and the critic's feedback added)."""

    input: float
    output: float
    max_output: float
    worst_input: float
    revision_input: float = 0.0
    worst_revision_input: float = 0.0


@dataclass
class Scenario:
    drafts: float
    personas: int
    calls: dict[str, float]
    input_tokens: dict[str, float]
    output_tokens: dict[str, float]
    cost: dict[str, float]


@dataclass
class Estimate:
    samples: int
    acceptance: float
    words: float
    models: dict[str, str]
    sizes: dict[str, CallSize]
    scenarios: dict[str, Scenario]
    priced: bool
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "acceptance_rate": self.acceptance,
            "main_text_words": self.words,
            "chars_per_token": CHARS_PER_TOKEN,
            "models": self.models,
            "per_call": {
                role: {k: round(v, 1) for k, v in vars(size).items()}
                for role, size in self.sizes.items()
            },
            "scenarios": {
                name: {
                    "drafts": math.ceil(s.drafts),
                    "personas": s.personas,
                    "calls": {r: math.ceil(c) for r, c in s.calls.items()},
                    "calls_total": sum(math.ceil(c) for c in s.calls.values()),
                    "input_tokens": round(sum(s.input_tokens.values())),
                    "output_tokens": round(sum(s.output_tokens.values())),
                    "cost": {r: round(c, 6) for r, c in s.cost.items()} if self.priced else None,
                    "cost_total": round(sum(s.cost.values()), 6) if self.priced else None,
                }
                for name, s in self.scenarios.items()
            },
            "notes": self.notes,
        }


# -- persona mining ------------------------------------------------------------------------


@dataclass
class Mining:
    mine: int = 0  # persona-miner calls (one per corpus text)
    relate: int = 0  # persona-relater calls
    personas: int = 0
    exhausted: bool = False


def persona_mining(spec: Spec, needed: int, pool: float, texts: float) -> Mining:
    """The calls that give ``needed`` personas, made as ``graphs.personas.mine_personas``
    makes them: asked for at most ``concurrency`` at a time (a batch's worth), the ``pool``
    personas first (no call), then Persona-to-Persona of personas above ``relate_depth``,
    then one corpus text per miner call, ``texts`` of them. Every persona found is assumed
    new (none dropped as a near-duplicate)."""
    settings = spec.personas
    result = Mining()
    depths: list[int] = []  # of every persona, in the order they joined
    relate_cursor = 0
    if pool:
        admitted = needed if math.isinf(pool) else int(pool)
        depths += [0] * admitted
    while len(depths) < needed and not result.exhausted:
        ask = min(spec.concurrency, needed - len(depths))
        added = 0
        while added < ask:
            pending = [
                i for i in range(relate_cursor, len(depths)) if depths[i] < settings.relate_depth
            ]
            if pending:
                take = pending[
                    : min(spec.concurrency, math.ceil((ask - added) / settings.relate_per_persona))
                ]
                for i in take:
                    depths += [depths[i] + 1] * settings.relate_per_persona
                result.relate += len(take)
                added += len(take) * settings.relate_per_persona
                relate_cursor = take[-1] + 1
            elif result.mine < texts:
                count = min(
                    spec.concurrency,
                    math.ceil((ask - added) / settings.per_text),
                    texts - result.mine,
                )
                count = int(count)
                depths += [0] * (count * settings.per_text)
                result.mine += count
                added += count * settings.per_text
            else:
                result.exhausted = True
                break
    result.personas = len(depths)
    return result


def fewest_mining_calls(spec: Spec, samples: int) -> int:
    """Mining calls for personas enough to write ``samples`` drafts, with a corpus as long
    as needed (none when a pool may supply them all): the lower bound ``fewest_calls``
    takes."""
    needed = math.ceil(samples / spec.personas.max_uses)
    mining = persona_mining(spec, needed, math.inf if spec.personas.pool else 0, math.inf)
    return mining.mine + mining.relate


# -- call sizes ------------------------------------------------------------------------------


def _filler(chars: float) -> str:
    """Text of about ``chars`` characters: only its length matters."""
    return ("word " * math.ceil(chars / 5))[: max(1, int(chars))].strip()


def main_words(spec: Spec, words: float | None = None) -> float:
    """Words assumed in the main text field (``--words`` wins): halfway between the task's
    length limits, one and a half times a minimum alone, half a maximum alone."""
    if words is not None:
        return words
    limits = spec.task.length
    if limits.min_words and limits.max_words:
        return (limits.min_words + limits.max_words) / 2
    if limits.min_words:
        return limits.min_words * 1.5
    if limits.max_words:
        return limits.max_words / 2
    return UNBOUNDED_WORDS


def draft_record(spec: Spec, words: float) -> dict[str, Any]:
    """A record the size the writer is expected to reply with."""
    main = spec.main_text_field()
    record: dict[str, Any] = {}
    for name, kind in output_fields(spec.task.output).items():
        if kind is str:
            size = words if name == main else TITLE_WORDS if name.lower() in TITLE_FIELDS else None
            record[name] = _filler((size or OTHER_WORDS) * CHARS_PER_WORD)
        elif kind == list[str]:
            record[name] = [_filler(OTHER_WORDS / 2 * CHARS_PER_WORD)] * LIST_ITEMS
        else:
            record[name] = 1
    return record


def _request_chars(
    template: PromptTemplate,
    variables: dict[str, Any],
    schema: type[BaseModel],
    endpoint: Endpoint,
) -> int:
    """Characters of the request the LLM layer sends: the rendered messages and what the
    structured-output strategy adds (the JSON schema, in the request or the prompt)."""
    from personaloom.llm.structured import PROBE_ORDER, request_options

    strategy = endpoint.strategy if endpoint.strategy != "auto" else PROBE_ORDER[0]
    messages, options = request_options(strategy, schema, template.render(**variables))  # type: ignore[arg-type]
    text = sum(len(m["content"]) for m in messages)
    return text + (len(json.dumps(options, ensure_ascii=False)) if options else 0)


def _max_output(template: PromptTemplate, endpoint: Endpoint) -> float:
    return float(endpoint.max_tokens or template.defaults.get("max_tokens") or 1024)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class _Inputs:
    """The spec's real inputs, varied per call as a run varies them (trait values, words,
    corpus texts and pool personas), with the templates and endpoints of every role."""

    def __init__(self, spec: Spec, endpoints: dict[str, Endpoint], pool_personas: list[str]):
        from personaloom.corpus import Corpus
        from personaloom.prompts import load_template

        self.spec = spec
        self.endpoints = endpoints
        self.templates = {
            role: load_template(
                role, spec.resolve(spec.prompts[role]) if role in spec.prompts else None
            )
            for role in ROLES
        }
        self.personas = pool_personas[:VARIANTS] or [_filler(PERSONA_CHARS)]
        self.words = [read_words(spec.resolve(path)) for path in spec.vocabulary.values()]
        corpus = Corpus(spec)
        self.texts = [corpus.text(i)[1] for i in range(min(VARIANTS, len(corpus)))] or [""]

    def persona(self, k: int) -> str:
        return self.personas[k % len(self.personas)]

    def traits(self, k: int) -> dict[str, str]:
        """The k-th call's critic-trait values (the ones the writer is told)."""
        return {
            name: trait.values[k % len(trait.values)]
            for name, trait in self.spec.traits.items()
            if trait.source == "critic"
        }

    def draft_words(self, k: int) -> list[str]:
        return [words[k % len(words)] for words in self.words if words]

    def request(self, role: str, variables: dict[str, Any], schema: type[BaseModel]) -> int:
        return _request_chars(self.templates[role], variables, schema, self.endpoints[role])

    def mean_request(self, role: str, calls: list[tuple[dict[str, Any], type[BaseModel]]]) -> float:
        return _mean([self.request(role, variables, schema) for variables, schema in calls])

    def max_output(self, role: str) -> float:
        return _max_output(self.templates[role], self.endpoints[role])


def _writer_size(inputs: _Inputs, record: dict[str, Any]) -> CallSize:
    """A first draft's request, a revision's (the previous draft and feedback added), and the
    revision of a draft as long as ``max_tokens`` allows."""
    from personaloom.agents.writer import length_hint, render_record

    spec = inputs.spec
    schema = spec.output_model()

    def variables(k: int, previous: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "persona": inputs.persona(k),
            "instruction": spec.task.instruction,
            "traits": inputs.traits(k),
            "descriptions": {n: t.description for n, t in spec.traits.items() if t.description},
            "words": inputs.draft_words(k),
            "length": length_hint(SimpleNamespace(spec=spec)),
            "examples": spec.task.examples,
            "fields": list(schema.model_fields),
            "previous": render_record(previous) if previous else None,
            "feedback": _filler(FEEDBACK_CHARS) if previous else None,
            "neighbour": None,
        }

    first = tokens(
        inputs.mean_request("writer", [(variables(k, None), schema) for k in range(VARIANTS)])
    )
    revision = tokens(
        inputs.mean_request("writer", [(variables(k, record), schema) for k in range(VARIANTS)])
    )
    limit = inputs.max_output("writer")
    reply = min(tokens(len(json.dumps(record, ensure_ascii=False))), limit)
    return CallSize(first, reply, limit, first, revision, revision + limit - reply)


def _critic_size(inputs: _Inputs, record: dict[str, Any], longer: float) -> CallSize:
    """The review of an expected draft; ``longer`` tokens more when the draft is as long as
    the writer's ``max_tokens`` allows."""
    from personaloom.agents.models import critic_model, trait_field
    from personaloom.agents.writer import render_record

    spec = inputs.spec
    judged = spec.traits_from("critic") if spec.critic.check_traits else []
    calls = []
    for k in range(VARIANTS):
        traits = {n: v for n, v in inputs.traits(k).items() if n in judged}
        variables = {
            "instruction": spec.task.instruction,
            "draft": render_record(record),
            "traits": traits,
            "field_names": {name: trait_field(name) for name in traits},
        }
        calls.append((variables, critic_model(list(traits))))
    verdict = {"score": 4, "feedback": _filler(FEEDBACK_CHARS), **dict.fromkeys(judged, True)}
    return _size(
        inputs, "critic", inputs.mean_request("critic", calls), len(json.dumps(verdict)), longer
    )


def _mining_sizes(inputs: _Inputs) -> dict[str, CallSize]:
    """A miner call per corpus text, a relater call per persona; replies of personas of
    PERSONA_CHARS, labelled with the persona traits."""
    from personaloom.agents.models import PersonaList, RelatedPersonaList, labelled_persona_model
    from personaloom.agents.persona_miner import persona_labels

    spec, settings = inputs.spec, inputs.spec.personas
    labels = persona_labels(spec)
    one = (
        {"persona": _filler(PERSONA_CHARS), **{n: v[0] for n, v in labels.items()}}
        if labels
        else _filler(PERSONA_CHARS)
    )
    mine_schema = labelled_persona_model("PersonaList", labels) if labels else PersonaList
    relate_schema = (
        labelled_persona_model("RelatedPersonaList", labels) if labels else RelatedPersonaList
    )
    relations = settings.relations
    mine = [
        (
            {
                "text": text,
                "relation": relations[k % len(relations)],
                "n": settings.per_text,
                "labels": labels,
                "wanted": {},
            },
            mine_schema,
        )
        for k, text in enumerate(inputs.texts)
    ]
    relate = [
        (
            {
                "persona": inputs.persona(k),
                "n": settings.relate_per_persona,
                "labels": labels,
                "wanted": {},
            },
            relate_schema,
        )
        for k in range(VARIANTS)
    ]
    return {
        "persona_miner": _size(
            inputs,
            "persona_miner",
            inputs.mean_request("persona_miner", mine),
            len(json.dumps({"personas": [one] * settings.per_text})),
        ),
        "persona_relater": _size(
            inputs,
            "persona_relater",
            inputs.mean_request("persona_relater", relate),
            len(json.dumps({"personas": [one] * settings.relate_per_persona})),
        ),
    }


def _size(
    inputs: _Inputs, role: str, request_chars: float, reply_chars: float, longer: float = 0.0
) -> CallSize:
    limit = inputs.max_output(role)
    prompt = tokens(request_chars)
    return CallSize(prompt, min(tokens(reply_chars), limit), limit, prompt + longer)


def call_sizes(
    spec: Spec, endpoints: dict[str, Endpoint], words: float, pool_personas: list[str]
) -> dict[str, CallSize]:
    """Tokens per call of each role, from its template rendered with the spec's inputs."""
    import personaloom.graphs  # noqa: F401 - first: agents.writer cannot be imported before it

    inputs = _Inputs(spec, endpoints, pool_personas)
    record = draft_record(spec, words)
    writer = _writer_size(inputs, record)
    longer = writer.max_output - writer.output  # a draft as long as max_tokens allows
    return {
        **_mining_sizes(inputs),
        "writer": writer,
        "critic": _critic_size(inputs, record, longer),
    }


# -- scenarios -------------------------------------------------------------------------------


def _plans(samples: int, acceptance: float, revisions: int) -> dict[str, tuple[float, float]]:
    """Drafts and attempts (writer and critic calls each) per scenario."""
    accepted = 1 - (1 - acceptance) ** (revisions + 1)  # a draft, within its revisions
    drafts = samples / accepted
    return {
        "minimum": (samples, samples),
        "expected": (drafts, samples / acceptance),
        "worst": (drafts, drafts * (revisions + 1)),
    }


def scenario(
    spec: Spec,
    name: str,
    drafts: float,
    attempts: float,
    sizes: dict[str, CallSize],
    models: dict[str, str],
    prices: Prices,
    pool: float,  # math.inf: a persona pool that may supply every persona
    texts: int,
) -> tuple[Scenario, Mining]:
    worst = name == "worst"
    needed = math.ceil(drafts / spec.personas.max_uses)
    mining = persona_mining(spec, needed, pool, texts)
    calls = {
        "persona_miner": float(mining.mine),
        "persona_relater": float(mining.relate),
        "writer": attempts,
        "critic": attempts,
    }
    inputs: dict[str, float] = {}
    outputs: dict[str, float] = {}
    for role, count in calls.items():
        size = sizes[role]
        inputs[role] = count * (size.worst_input if worst else size.input)
        outputs[role] = count * (size.max_output if worst else size.output)
    writer = sizes["writer"]
    inputs["writer"] = drafts * writer.input + (attempts - drafts) * (
        writer.worst_revision_input if worst else writer.revision_input
    )
    cost = {r: prices.cost(models[r], inputs[r], outputs[r]) for r in calls}  # type: ignore[arg-type]
    return Scenario(drafts, mining.personas, calls, inputs, outputs, cost), mining


def estimate(
    spec: Spec,
    endpoints: dict[str, Endpoint],
    *,
    acceptance: float = ASSUMED_ACCEPTANCE,
    words: float | None = None,
    pool_personas: list[str] | None = None,
) -> Estimate:
    """Every scenario for ``spec`` with the roles' ``endpoints``. ``pool_personas`` are the
    texts of the spec's persona pool as read (None: not read, so a pool is assumed to supply
    every persona, at PERSONA_CHARS each)."""
    from personaloom.endpoints import model_name

    if not 0 < acceptance <= 1:
        raise ValueError("the acceptance rate is a share of attempts: above 0, at most 1")
    models = {role: model_name(endpoints[role]) for role in ROLES}
    prices = Prices.of(spec)
    assumed_words = main_words(spec, words)
    sizes = call_sizes(spec, endpoints, assumed_words, pool_personas or [])
    if pool_personas is None:
        pool = math.inf if spec.personas.pool else 0
    else:
        pool = len(pool_personas)
    from personaloom.corpus import Corpus

    texts = len(Corpus(spec))
    samples = total_target(spec)
    result = Estimate(samples, acceptance, assumed_words, models, sizes, {}, bool(prices))
    for name, (drafts, attempts) in _plans(samples, acceptance, spec.critic.max_revisions).items():
        made, mining = scenario(
            spec,
            name,
            drafts,
            attempts,
            sizes,
            models,
            prices,
            pool,
            texts,
        )
        result.scenarios[name] = made
        if mining.exhausted and not any("personas" in n for n in result.notes):
            result.notes.append(
                f"the {name} run needs {math.ceil(drafts / spec.personas.max_uses)} personas "
                f"(max_uses {spec.personas.max_uses}); the pool and corpus give about "
                f"{mining.personas}, so personas will write more drafts each"
            )
    if spec.traits_from("persona"):
        result.notes.append(
            "persona traits: mining until every persona-trait value is carried can take "
            "more miner calls than counted here"
        )
    if unpriced := sorted({m for m in models.values() if m not in prices}) if prices else []:
        result.notes.append(f"no price for {', '.join(unpriced)}: counted as free")
    return result


# -- the table -------------------------------------------------------------------------------


def _table(rows: list[tuple[str, list[str]]]) -> list[str]:
    """Rows of a label and one cell per scenario, the label column as wide as its longest."""
    width = max(len(label) for label, _ in rows) + 2
    cell = max([12, *(len(c) + 2 for _, cells in rows for c in cells)])
    return [f"{label:<{width}}" + "".join(f"{c:>{cell}}" for c in cells) for label, cells in rows]


def _decimals(largest: float) -> int:
    """Decimals for a column of costs: enough for a run of cents, few for one of hundreds."""
    return 6 if largest < 1 else 4 if largest < 100 else 2


def _budget_lines(spec: Spec, data: dict[str, Any]) -> list[str]:
    """Which scenarios fit each budget the spec sets."""
    limits = [
        ("max_calls", spec.budget.max_calls, "calls_total"),
        ("max_tokens", spec.budget.max_tokens, None),
        ("max_cost", spec.budget.max_cost, "cost_total"),
    ]
    lines = []
    for name, limit, key in limits:
        if limit is None:
            continue
        verdicts = []
        for scenario_name, s in data["scenarios"].items():
            used = s["input_tokens"] + s["output_tokens"] if key is None else s[key]
            verdicts.append(f"{scenario_name} {'fits' if used <= limit else 'exceeds it'}")
        lines.append(f"budget.{name} {limit:g}: " + ", ".join(verdicts))
    return lines


def render(spec: Spec, result: Estimate) -> str:
    """The plain-text table ``personaloom estimate`` prints."""
    data = result.as_dict()
    scenarios = data["scenarios"]
    names = list(scenarios)
    revisions = spec.critic.max_revisions
    rows: list[tuple[str, list[str]]] = [
        ("", names),
        ("drafts", [str(scenarios[n]["drafts"]) for n in names]),
        ("personas", [str(scenarios[n]["personas"]) for n in names]),
        ("calls", [str(scenarios[n]["calls_total"]) for n in names]),
    ]
    for role in ROLES:
        label = f"  {role} ({result.models[role]})"
        rows.append((label, [str(scenarios[n]["calls"][role]) for n in names]))
    rows.append(("input tokens", [f"{scenarios[n]['input_tokens']:,}" for n in names]))
    rows.append(("output tokens", [f"{scenarios[n]['output_tokens']:,}" for n in names]))
    if result.priced:
        places = _decimals(max(scenarios[n]["cost_total"] for n in names))
        rows.append(("cost", [f"{scenarios[n]['cost_total']:.{places}f}" for n in names]))
        for role in ROLES:
            cells = [f"{scenarios[n]['cost'][role]:.{places}f}" for n in names]
            rows.append((f"  {role}", cells))
    else:
        rows.append(("cost (no prices in the spec)", ["-"] * len(names)))
    lines = [
        f"{data['samples']} accepted samples meet the targets of {spec.source}",
        "",
        *_table(rows),
    ]
    lines += ["", *_budget_lines(spec, data), ""]
    lines += [
        "per call (tokens, expected in / out):  "
        + ", ".join(
            f"{role} {size.input:,.0f} / {size.output:,.0f}" for role, size in result.sizes.items()
        ),
        "",
        "assumptions:",
        f"- an attempt (a writer and a critic call) passes at {result.acceptance:g} "
        f"(--acceptance-rate); a failed one is revised up to {revisions} time(s) "
        "(critic.max_revisions), then the draft is rejected and another planned",
        "- minimum: nothing rejected or revised; worst: every draft takes all its revisions "
        "and every reply is as long as max_tokens allows",
        f"- tokens = characters / {CHARS_PER_TOKEN} of the rendered prompts (the spec's inputs "
        f"and the JSON schema); the main text {result.words:g} words (--words); a mined "
        f"persona {PERSONA_CHARS} characters",
        "- not counted: repair calls after unparseable replies, structured-output probing, "
        "personas dropped as near-duplicates, embedding calls",
    ]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def fewest_calls(spec: Spec) -> int:
    """A lower bound on the endpoint calls meeting every target takes: a writer and a critic
    call per accepted sample, and the mining calls for personas enough to write them, made as
    the mining node makes them (none when a persona pool may supply them all; this is the
    ``minimum`` scenario's count for a long enough corpus)."""
    samples = total_target(spec)
    return 2 * samples + fewest_mining_calls(spec, samples)


def budget_warning(spec: Spec, endpoints: dict[str, Any] | None = None) -> str | None:
    """Why the targets cannot fit ``budget.max_calls`` (or, given the roles' ``endpoints``,
    ``budget.max_cost``) even when nothing is rejected, or None."""
    fewest, limit = fewest_calls(spec), spec.budget.max_calls
    if limit is not None and fewest > limit:
        return (
            f"the targets need {total_target(spec)} accepted samples, at least {fewest} calls "
            f"(a writer and a critic call each, and persona mining) with no rejection at all, "
            f"but budget.max_calls is {limit}: the run will end on its budget first"
        )
    if endpoints is None or spec.budget.max_cost is None or not spec.prices:
        return None
    minimum = estimate(spec, endpoints, acceptance=1.0).as_dict()["scenarios"]["minimum"]
    if minimum["cost_total"] <= spec.budget.max_cost:
        return None
    return (
        f"the targets need {total_target(spec)} accepted samples, about "
        f"{minimum['cost_total']:.4g} with no rejection at all ({minimum['calls_total']} calls; "
        f"personaloom estimate {spec.source} shows how that is counted), but budget.max_cost "
        f"is {spec.budget.max_cost:g}: the run will end on its budget first"
    )
