"""The dataset card (``README.md``) of an export, in the Hugging Face Hub's format.

A YAML header the Hub reads (license, task categories, size category, tags, and ``configs``
naming the data files, so ``datasets.load_dataset`` on the folder or the Hub repo finds the
split), then a body written from the run: what the spec asked for in words, the models, the
columns, the run report (coverage, rejections, diversity: ``report.render_markdown``, reused
whole), the limits that follow from how the data was made, and how to load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from personaloom.spec import Spec, output_fields

if TYPE_CHECKING:
    from personaloom.export import Run

# The Hub's size categories, by upper bound.
_SIZES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]
_TYPE_NAMES = {str: "string", int: "int64", float: "float64", bool: "bool"}
_FORMAT_WORDS = {
    "parquet": "Parquet shards in `data/`",
    "hf": "a `datasets` folder (`save_to_disk`) with a `train` split",
    "jsonl": "JSON Lines in `data/train.jsonl`",
    "chat": "chat fine-tuning JSON Lines (`messages`) in `data/train.jsonl`",
}
_SOURCES = [
    "Ge et al. 2024, *Scaling Synthetic Data Creation with 1,000,000,000 Personas* "
    "(Persona Hub), arXiv:2406.20094: Text-to-Persona and Persona-to-Persona",
    "Eldan and Li 2023, *TinyStories*, arXiv:2305.07759: sampled words and features",
]


def size_category(rows: int) -> str:
    for bound, name in _SIZES:
        if rows < bound:
            return name
    return "n>100M"


def header(
    run: Run, *, data_files: str, license: str, task_categories: list[str], chat: bool
) -> dict[str, Any]:
    tags = ["synthetic", "personaloom", "persona"]
    if chat:
        tags.append("conversational")
    return {
        "license": license,
        "task_categories": task_categories,
        "size_categories": [size_category(len(run.samples))],
        "tags": tags,
        "pretty_name": run.spec.name,
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": data_files}],
            }
        ],
    }


def render_card(
    run: Run,
    *,
    fmt: str,
    data_files: str,
    columns: dict[str, str] | None,
    chat: list[tuple[str, str]] | None,
    system: str | None,
    chart: bool,
    license: str,
    task_categories: list[str],
) -> str:
    meta = header(
        run,
        data_files=data_files,
        license=license,
        task_categories=task_categories,
        chat=chat is not None,
    )
    body = [
        f"# {run.spec.name}",
        "",
        f"{len(run.samples)} synthetic samples, {_FORMAT_WORDS[fmt]}, made by personaloom "
        f"(run `{run.run_dir.name}`, status **{run.status}**). Each one was written by a "
        "language model from the perspective of a persona, under assigned trait values and "
        "words, and accepted by a critic and a near-duplicate check; no person wrote them.",
        "",
        "## How it was made",
        "",
        *_spec_lines(run),
        "",
        "## Models",
        "",
        *_model_lines(run),
        "",
        *(_chat_lines(chat, system) if chat is not None else _column_lines(run.spec, columns)),
        "",
        "## Coverage, rejections and diversity",
        "",
        *_report_lines(run.report, chart),
        "",
        "## Limits",
        "",
        *[f"- {limit}" for limit in limits(run, license)],
        "",
        "## Loading",
        "",
        *_loading_lines(fmt),
        "",
        "## Methods",
        "",
        *[f"- {source}" for source in _SOURCES],
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body).rstrip() + "\n"


def _spec_lines(run: Run) -> list[str]:
    """The spec in words: task, personas, traits, words, critic, novelty, seed."""
    spec, report = run.spec, run.report
    fields = ", ".join(
        f"`{n}` ({_TYPE_NAMES.get(k, 'list of strings')})"
        for n, k in output_fields(spec.task.output).items()
    )
    length = spec.task.length
    bounds = [
        f"at least {length.min_words} words" if length.min_words else "",
        f"at most {length.max_words} words" if length.max_words else "",
    ]
    lines = [
        f"- **Task**: {_quote(spec.task.instruction)} Each record has the fields {fields}"
        + (f"; its text {' and '.join(b for b in bounds if b)}" if any(bounds) else "")
        + "."
    ]
    if spec.task.examples:
        lines.append(f"- **Few-shot examples**: {len(spec.task.examples)} shown to the writer.")
    corpus = ", ".join(f"`{c.path or c.jsonl}`" for c in spec.corpus)
    p = spec.personas
    used = (report.get("diversity") or {}).get("personas_used")
    lines.append(
        f"- **Personas**: mined from the texts of {corpus} by asking who would "
        f"{' / '.join(p.relations)} each text ({p.per_text} per text), then "
        f"{p.relate_depth} round(s) of asking who is close to each persona; personas at cosine "
        f"similarity {p.novelty_threshold} or more to one already in the pool were dropped. "
        f"{report.get('personas', 0)} personas in the pool"
        + (f", {used} of them wrote accepted samples" if used is not None else "")
        + f"; each wrote at most {p.max_uses} draft(s)."
    )
    targets = spec.targets()
    for name, trait in spec.traits.items():
        decided = (
            "carried by the persona"
            if trait.source == "persona"
            else "assigned by the planner"
            + (", confirmed by the critic" if spec.critic.check_traits else "")
        )
        wanted = ", ".join(f"{v} ({n})" for v, n in targets[name].items())
        about = f" ({trait.description})" if trait.description else ""
        lines.append(f"- **Trait `{name}`**{about}: {decided}; target per value: {wanted}.")
    for joint in spec.joint:
        a, b = joint.traits
        lines.append(f"- **Joint target**: at least {joint.target} per cell of `{a}` × `{b}`.")
    if spec.vocabulary:
        sizes = (report.get("diversity") or {}).get("vocabulary_coverage") or {}
        parts = ", ".join(
            f"{part}" + (f" (of {sizes[part]['size']})" if part in sizes else "")
            for part in spec.vocabulary
        )
        lines.append(f"- **Words**: each sample had to use one sampled word of each list: {parts}.")
    critic = spec.critic
    judged = (
        f"then a model's score of at least {critic.min_score} of 5"
        if critic.min_score > 1
        else "then a model's review, whose score did not gate acceptance (bar 1 of 5)"
    )
    lines.append(
        "- **Critic**: deterministic checks (schema, required words, length, repetition), "
        f"{judged}; up to {critic.max_revisions} revision(s) with its feedback."
    )
    lines.append(
        f"- **Novelty**: a draft at cosine similarity {spec.novelty.threshold} or more to an "
        f"accepted sample was rejected; embeddings: {_embeddings(spec)}."
    )
    lines.append(f"- **Seed**: {spec.seed}; stop: {run.status}" + _stop(run) + ".")
    return lines


def _quote(text: str) -> str:
    return "“" + " ".join(text.split()) + "”"


def _stop(run: Run) -> str:
    reason = run.meta.get("stop_reason")
    return f" ({reason})" if reason and reason != run.status else ""


def _embeddings(spec: Spec) -> str:
    e = spec.embeddings
    if e.provider == "local":
        return "local all-MiniLM-L6-v2"
    if e.provider == "openai":
        where = f" at {e.base_url}" if e.base_url else ""
        return f"`{e.model or 'text-embedding-3-small'}`{where}"
    return (
        "local all-MiniLM-L6-v2, the default where personaloom's `local` extra is installed "
        "(the spec names no provider)"
    )


def _model_lines(run: Run) -> list[str]:
    roles = [r for r in ("persona_miner", "persona_relater", "writer", "critic") if r in run.models]
    if not roles:
        return ["Not recorded (the run's traces.sqlite is missing)."]
    from personaloom.local.server import MODEL_ALIAS

    def named(model: str) -> str:
        embedded = model.startswith(MODEL_ALIAS)
        return model + (" (personaloom's embedded SmolLM2-135M-Instruct)" if embedded else "")

    lines = ["| role | model |", "|---|---|"]
    lines += [f"| {role} | {'; '.join(map(named, run.models[role]))} |" for role in roles]
    return lines


def _column_lines(spec: Spec, names: dict[str, str] | None) -> list[str]:
    from personaloom.export import META_COLUMNS

    fields = output_fields(spec.task.output)
    lines = ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    for key, column in (names or {}).items():
        if key.startswith("meta:"):
            lines.append(f"| `{column}` | {_meta_type(spec, key[5:])} | {META_COLUMNS[key[5:]]} |")
        else:
            kind = _TYPE_NAMES.get(fields[key], "list of strings")
            lines.append(f"| `{column}` | {kind} | output field of the task |")
    return lines


def _meta_type(spec: Spec, name: str) -> str:
    keys = {
        "traits": list(spec.traits),
        "words": list(spec.vocabulary),
        "critic": ["score", "feedback"],
        "novelty": ["neighbour_id", "similarity"],
        "lineage": ["persona_ids", "source_text_id", "relation", "revisions", "round"],
    }
    return f"struct of {', '.join(keys[name])}" if name in keys else "string"


def _chat_lines(chat: list[tuple[str, str]], system: str | None) -> list[str]:
    lines = ["## Messages", "", 'Each line is `{"messages": [...]}`:', ""]
    if system:
        lines.append(f"- `system`: {_quote(system)} (the same in every record)")
    lines += [f"- `{role}`: the output field `{field}`" for role, field in chat]
    lines += [
        "",
        "Persona, traits and lineage are not in this format; export the run as `parquet`, "
        "`hf` or `jsonl` to keep them.",
    ]
    return lines


def _report_lines(report: dict[str, Any], chart: bool) -> list[str]:
    """The run report of ``personaloom report`` (report.md), its headings one level down."""
    from personaloom.report import render_markdown

    lines = render_markdown(report).splitlines()[2:]  # without its title
    result = []
    for line in lines:
        if line.startswith("![coverage]") and not chart:
            continue
        result.append("#" + line if line.startswith("#") else line)
    return result


def limits(run: Run, license: str) -> list[str]:
    """What a user of the data must know, from how this run was made."""
    from personaloom.local.server import MODEL_ALIAS

    spec, report = run.spec, run.report
    found = []
    if any(name.startswith(MODEL_ALIAS) for names in run.models.values() for name in names):
        found.append(
            "Made with personaloom's embedded model, SmolLM2-135M-Instruct: a 135M-parameter "
            "model for demos and tests. Its personas, samples and critic verdicts are weak; do "
            "not train on this data, regenerate it with a real model."
        )
    if spec.traits and not spec.critic.check_traits and spec.traits_from("critic"):
        found.append(
            "The critic did not confirm the assigned traits (`critic.check_traits: false`): a "
            "trait column says what the writer was asked for, not what a judge saw."
        )
    if spec.critic.min_score <= 1:
        found.append(
            "The critic's score did not gate acceptance (`critic.min_score: 1`): only the "
            "deterministic checks and the near-duplicate check did."
        )
    if report.get("unmet"):
        short = ", ".join(
            f"{u['trait']}={u['value']} {u['accepted']}/{u['target']}" for u in report["unmet"]
        )
        found.append(
            f"The run ended `{run.status}`{_stop(run)} before every target was met: {short}. "
            "Coverage is uneven."
        )
    found.append(
        f"Near-duplicates were removed by embedding similarity at {spec.novelty.threshold}; "
        "paraphrases below it and repeated ideas in other words remain."
    )
    found.append(
        "Personas and texts are written by a model: fictional, and carrying its biases and "
        "errors. Training on synthetic data alone leads to model collapse; mix it with real "
        "data (`personaloom mix`)."
    )
    if license in ("unknown", "other"):
        found.append(
            f"No licence was chosen at export (`license: {license}`); the terms of the models "
            "used may restrict what their outputs may train."
        )
    return found


def _loading_lines(fmt: str) -> list[str]:
    if fmt == "hf":
        code = [
            "from datasets import load_from_disk",
            "",
            'train = load_from_disk("path/to/this/folder")["train"]',
        ]
    else:
        code = [
            "from datasets import load_dataset",
            "",
            'train = load_dataset("path/to/this/folder", split="train")  # or "user/name"',
        ]
    return ["```python", *code, "```"]


__all__ = ["header", "limits", "render_card", "size_category"]
