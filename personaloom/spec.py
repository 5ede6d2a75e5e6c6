"""The spec: a user's data design, validated before any LLM call.

A spec is YAML (read with ``yaml.safe_load``) checked by the pydantic models below. Paths in
it are relative to the spec file. ``load_spec`` returns a :class:`Spec` or raises
:class:`SpecError` listing every problem with its field path, so a user can fix them all at once.
"""

from __future__ import annotations

import functools
import glob
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

ROLES = ("persona_miner", "persona_relater", "persona_checker", "writer", "critic")
CHARS_PER_WORD = 6  # English prose, spaces and punctuation included
TITLE_FIELDS = frozenset({"title", "name", "subject", "headline", "heading"})
STRUCTURED_STRATEGIES = ("auto", "json_schema", "json_object", "tools", "prompt")
_SIMPLE_TYPES: dict[str, Any] = {
    "str": str,
    "string": str,
    "int": int,
    "integer": int,
    "float": float,
    "number": float,
    "bool": bool,
    "boolean": bool,
    "list[str]": list[str],
}


class SpecError(Exception):
    """A spec that cannot be used; ``problems`` holds one ``(field path, message)`` per error."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path or '<spec>'}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LengthLimits(_Strict):
    min_words: int | None = Field(None, ge=1, description="fewest words in the text fields")
    max_words: int | None = Field(None, ge=1, description="most words in the text fields")

    @model_validator(mode="after")
    def _ordered(self) -> LengthLimits:
        if self.min_words and self.max_words and self.min_words > self.max_words:
            raise ValueError("min_words must not exceed max_words")
        return self


class Task(_Strict):
    instruction: str = Field(min_length=1)
    output: dict[str, Any] = Field(
        description="fields of one record: {name: type} with type one of "
        + ", ".join(sorted(set(_SIMPLE_TYPES)))
        + ", or a JSON schema of an object"
    )
    examples: list[dict[str, Any]] = Field(default_factory=list, description="few-shot examples")
    length: LengthLimits = Field(default_factory=LengthLimits)

    @field_validator("output")
    @classmethod
    def _output_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        fields = output_fields(value)  # raises ValueError naming the bad field
        if not fields:
            raise ValueError("needs at least one field")
        return value

    @model_validator(mode="after")
    def _examples_are_records(self) -> Task:
        """Each few-shot example is a record of the task's output: the same fields, with
        their types (the writer is shown them as what a good answer looks like)."""
        fields = output_fields(self.output)
        problems = []
        for i, example in enumerate(self.examples):
            unknown = sorted(set(example) - set(fields))
            missing = [name for name in fields if name not in example]
            if unknown:
                problems.append(f"examples[{i}]: fields {unknown} are not in task.output")
            if missing:
                problems.append(f"examples[{i}]: missing output fields {missing}")
            for name, kind in fields.items():
                if name in example and not _has_type(example[name], kind):
                    problems.append(
                        f"examples[{i}].{name}: expected {_type_name(kind)}, "
                        f"got {type(example[name]).__name__}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _has_type(value: Any, kind: Any) -> bool:
    if kind is list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    return "a list of strings" if kind is list[str] else kind.__name__


def output_fields(output: dict[str, Any]) -> dict[str, Any]:
    """Map a task's ``output`` (simple mapping or JSON schema) to ``{name: python type}``."""
    if output.get("type") == "object" and isinstance(output.get("properties"), dict):
        props = output["properties"]
        result = {}
        for name, prop in props.items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            if kind == "array" and (prop.get("items") or {}).get("type") == "string":
                kind = "list[str]"
            if kind not in _SIMPLE_TYPES:
                raise ValueError(f"property {name!r}: unsupported JSON schema type {kind!r}")
            result[name] = _SIMPLE_TYPES[kind]
        return result
    result = {}
    for name, kind in output.items():
        if not isinstance(kind, str) or kind not in _SIMPLE_TYPES:
            raise ValueError(
                f"field {name!r}: type {kind!r} is not one of {sorted(set(_SIMPLE_TYPES))}"
            )
        if not name.isidentifier():
            raise ValueError(f"field {name!r}: names must be identifiers")
        result[name] = _SIMPLE_TYPES[kind]
    return result


class CorpusSource(_Strict):
    path: str | None = Field(None, description="glob of text files, one text per file")
    jsonl: str | None = Field(None, description="JSON-lines file, one text per line")
    field: str = Field("text", description="the JSONL field holding the text")

    @model_validator(mode="after")
    def _one_kind(self) -> CorpusSource:
        if (self.path is None) == (self.jsonl is None):
            raise ValueError("give exactly one of `path` (a glob) or `jsonl` (a file)")
        return self


TABLE_FORMATS = ("jsonl", "csv", "parquet", "datasets")


def _listed(value: Any) -> Any:
    """One mapping (or path) where a list of them is expected: a list of one."""
    return [value] if isinstance(value, dict | str) else value


class PoolSource(_Strict):
    """Ready-made personas (Persona Hub's files, FinePersonas, Nemotron-Personas...): one
    persona per row of a file, read in a stream, optionally sampled, with columns that carry
    persona traits so that no LLM has to label them."""

    path: str = Field(
        min_length=1, description="a file, a glob of files, or a folder saved by `datasets`"
    )
    field: str = Field("persona", min_length=1, description="the column holding the persona")
    format: Literal["jsonl", "csv", "parquet", "datasets"] | None = Field(
        None, description="default: from the file's extension (a folder: datasets)"
    )
    sample: int | None = Field(None, ge=1, description="rows drawn at random with the seed")
    traits: dict[str, str] | list[str] = Field(
        default_factory=dict, description="persona trait -> column (a list: same names)"
    )

    def trait_columns(self) -> dict[str, str]:
        """``{trait: column}`` whichever form ``traits`` was given in."""
        if isinstance(self.traits, list):
            return {name: name for name in self.traits}
        return dict(self.traits)


class Personas(_Strict):
    pool: list[PoolSource] = Field(
        default_factory=list,
        description="files of ready-made personas, beside or instead of mining",
    )
    relations: list[str] = Field(
        default_factory=lambda: ["read", "write", "like", "dislike"], min_length=1
    )
    per_text: int = Field(2, ge=1, le=20, description="personas mined from each text")
    relate_depth: int = Field(1, ge=0, le=6, description="Persona-to-Persona rounds")
    relate_per_persona: int = Field(2, ge=1, le=10)
    max_uses: int = Field(2, ge=1, description="drafts per persona before mining new ones")
    novelty_threshold: float = Field(0.9, gt=0, le=1, description="persona dedup similarity")
    check: Literal["rules", "llm", "off"] = Field(
        "rules",
        description="the persona gate: `rules` (deterministic checks), `llm` (those, then a "
        "persona-checker call per mining step), `off` (only the near-duplicate check)",
    )

    @field_validator("pool", mode="before")
    @classmethod
    def _one_pool(cls, value: Any) -> Any:
        return _listed(value)


class Trait(_Strict):
    """A categorical trait: its values and how many accepted samples each one needs.

    ``target`` is a count (one for every value, or per value); ``share`` is a fraction of
    the spec's ``total`` (one for every value, or per value), turned into counts that add up
    with the largest-remainder rule. ``source`` says who decides a sample's value: the
    ``critic`` confirms an assigned value on the output; a ``persona`` trait is labelled when
    the persona is mined, and the planner picks personas that carry the needed value.
    """

    values: list[str] = Field(min_length=1)
    target: int | dict[str, int] | None = Field(None, description="accepted samples per value")
    share: float | dict[str, float] | None = Field(None, description="fraction of `total`")
    source: Literal["critic", "persona"] = "critic"
    description: str | None = None

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        """Values are told apart as a reader would: `formal`, `Formal` and `"formal "` are one
        value given three times (the critic and the report could not keep them apart)."""
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"duplicate values: {dupes}")
        padded = [v for v in values if v != v.strip() or not v.strip()]
        if padded:
            raise ValueError(f"values must not be empty or start or end with spaces: {padded}")
        seen: dict[str, list[str]] = {}
        for value in values:
            seen.setdefault(value.casefold(), []).append(value)
        same = [group for group in seen.values() if len(group) > 1]
        if same:
            raise ValueError(
                "values that differ only in case are one value given twice: "
                + "; ".join(" and ".join(repr(v) for v in group) for group in same)
            )
        return values

    @model_validator(mode="after")
    def _targets(self) -> Trait:
        if (self.target is None) == (self.share is None):
            raise ValueError("give exactly one of `target` (counts) or `share` (of `total`)")
        given = self.target if self.target is not None else self.share
        if isinstance(given, dict):
            unknown = sorted(set(given) - set(self.values))
            if unknown:
                raise ValueError(f"names unknown values {unknown}")
            amounts = list(given.values())
        else:
            amounts = [given or 0]
        if any(a < 0 for a in amounts):
            raise ValueError("targets and shares must be >= 0")
        if self.share is not None:
            shares = self.shares()
            if any(v > 1 for v in shares.values()) or sum(shares.values()) > 1 + 1e-9:
                raise ValueError(f"shares add up to {sum(shares.values()):g}, more than 1")
        return self

    def shares(self) -> dict[str, float]:
        if isinstance(self.share, dict):
            return {v: self.share.get(v, 0.0) for v in self.values}
        return {v: float(self.share or 0.0) for v in self.values}

    def targets(self, total: int | None = None) -> dict[str, int]:
        """Accepted samples wanted per value (shares are resolved against ``total``)."""
        if self.share is not None:
            return _apportion(self.shares(), total or 0)
        if isinstance(self.target, dict):
            return {v: self.target.get(v, 0) for v in self.values}
        return {v: int(self.target or 0) for v in self.values}


def _apportion(shares: dict[str, float], total: int) -> dict[str, int]:
    """Counts in proportion to ``shares`` of ``total`` (largest remainder: they add up to
    ``round(sum(shares) * total)``)."""
    raw = {v: s * total for v, s in shares.items()}
    counts = {v: math.floor(x + 1e-9) for v, x in raw.items()}
    spare = round(sum(raw.values())) - sum(counts.values())
    for v in sorted(raw, key=lambda v: (counts[v] - raw[v], v))[: max(0, spare)]:
        counts[v] += 1
    return counts


class JointTarget(_Strict):
    """At least ``target`` accepted samples in every cell of two traits' value grid."""

    traits: list[str] = Field(min_length=2, max_length=2, description="two trait names")
    target: int = Field(ge=1, description="accepted samples per cell")

    @field_validator("traits")
    @classmethod
    def _distinct(cls, traits: list[str]) -> list[str]:
        if traits[0] == traits[1]:
            raise ValueError("name two different traits")
        return traits


class DiversityGates(_Strict):
    """Limits the critic enforces while generating (a draft breaking one is revised)."""

    max_opening_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="most common three-word opening, as a share of the total target",
    )


class Stagnation(_Strict):
    """When a trait value or joint cell that keeps failing is set aside."""

    patience: int = Field(
        8, ge=2, description="rejected drafts in a row (no acceptance) before it is set aside"
    )


class AvoidSource(_Strict):
    """Items (an eval or test set) that accepted samples must not resemble."""

    path: str = Field(
        min_length=1, description="a file, a glob of files, or a folder saved by `datasets`"
    )
    field: str | list[str] | None = Field(
        None, description="the column(s) of an item; default `text`; not for plain text"
    )
    format: Literal["jsonl", "csv", "parquet", "datasets", "text"] | None = Field(
        None, description="default: from the file's extension (.txt: one item per line)"
    )

    @model_validator(mode="before")
    @classmethod
    def _path_only(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    def fields(self) -> list[str]:
        if self.field is None:
            return ["text"]
        return [self.field] if isinstance(self.field, str) else list(self.field)


# A novelty memory's name: it names a folder and a Chroma collection (memory-NAME).
MEMORY_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$"


class Novelty(_Strict):
    threshold: float = Field(0.9, gt=0, le=1, description="cosine similarity that rejects")
    avoid: list[AvoidSource] = Field(
        default_factory=list, description="eval or test items samples must not resemble"
    )
    ngram: int | None = Field(
        13, ge=3, le=50, description="words in a row shared with an avoided item that reject"
    )
    store: str | None = Field(
        None, description="a Chroma server URL, http://HOST:PORT (default: the run's chroma/)"
    )
    memory: str | None = Field(
        None,
        pattern=MEMORY_NAME,
        description="novelty memory: accepted samples of every run naming it are rejected "
        "as seen_before",
    )

    @field_validator("avoid", mode="before")
    @classmethod
    def _one_avoid(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("store")
    @classmethod
    def _server_url(cls, url: str | None) -> str | None:
        return None if url is None else server_url(url)


def server_url(url: str) -> str:
    """A Chroma server URL as ``novelty.store`` and ``--chroma-url`` take it: ``http(s)://HOST
    [:PORT]``, no path; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a Chroma server URL such as http://127.0.0.1:8000")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("the URL's port is not a number") from None
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("give the server's address only, http://HOST:PORT, without a path")
    return url.rstrip("/")


class Critic(_Strict):
    min_score: int = Field(3, ge=1, le=5)
    max_revisions: int = Field(1, ge=0, le=5)
    check_traits: bool = Field(True, description="ask the critic to confirm assigned traits")
    diversity: DiversityGates = Field(default_factory=DiversityGates)


class Budget(_Strict):
    max_calls: int | None = Field(500, ge=1, description="endpoint calls (cache hits are free)")
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="money spent, at the spec's `prices`"
    )
    max_seconds: float | None = Field(None, gt=0)


class Price(_Strict):
    """What a model costs, per million tokens, in whatever currency the user bills in."""

    input: float = Field(ge=0, allow_inf_nan=False, description="per 1M prompt tokens")
    output: float = Field(ge=0, allow_inf_nan=False, description="per 1M completion tokens")


class ModelConfig(_Strict):
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(None, description="prefer api_key_env or OPENAI_API_KEY")
    api_key_env: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds per request")
    max_retries: int | None = Field(None, ge=0, le=10)
    structured_output: Literal["auto", "json_schema", "json_object", "tools", "prompt"] | None = (
        None
    )

    def merged_over(self, base: ModelConfig) -> ModelConfig:
        data = base.model_dump(exclude_none=True)
        data.update(self.model_dump(exclude_none=True))
        return ModelConfig(**data)


class Models(_Strict):
    default: ModelConfig = Field(default_factory=ModelConfig)
    persona_miner: ModelConfig = Field(default_factory=ModelConfig)
    persona_relater: ModelConfig = Field(default_factory=ModelConfig)
    persona_checker: ModelConfig = Field(default_factory=ModelConfig)
    writer: ModelConfig = Field(default_factory=ModelConfig)
    critic: ModelConfig = Field(default_factory=ModelConfig)

    @model_validator(mode="before")
    @classmethod
    def _hyphens(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(k).replace("-", "_"): v for k, v in data.items()}
        return data

    def for_role(self, role: str) -> ModelConfig:
        return getattr(self, role).merged_over(self.default)


class Embeddings(_Strict):
    provider: Literal["local", "openai"] | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None


class CacheConfig(_Strict):
    enabled: bool = True
    dir: str | None = Field(
        None,
        description="default: $PERSONALOOM_CACHE_DIR, else $XDG_CACHE_HOME/personaloom, "
        "else ~/.cache/personaloom",
    )
    size_limit_mb: int = Field(512, ge=1)


class Spec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: Task
    corpus: list[CorpusSource] = Field(default_factory=list)
    personas: Personas = Field(default_factory=Personas)
    traits: dict[str, Trait] = Field(default_factory=dict)
    joint: list[JointTarget] = Field(default_factory=list, description="targets over trait pairs")
    stagnation: Stagnation = Field(default_factory=Stagnation)
    vocabulary: dict[str, str] = Field(default_factory=dict, description="part -> word file")
    novelty: Novelty = Field(default_factory=Novelty)
    critic: Critic = Field(default_factory=Critic)
    budget: Budget = Field(default_factory=Budget)
    prices: dict[str, Price] = Field(
        default_factory=dict, description="model name -> price per 1M input and output tokens"
    )
    models: Models = Field(default_factory=Models)
    embeddings: Embeddings = Field(default_factory=Embeddings)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    prompts: dict[str, str] = Field(default_factory=dict, description="role -> template file")
    total: int | None = Field(None, ge=1, description="accepted samples wanted in all")
    concurrency: int = Field(4, ge=1, le=256)
    engine: Literal["stream", "batch"] = Field(
        "stream",
        description="stream: a new draft starts as soon as one ends; batch: drafts go in "
        "batches of `concurrency`, the next when the slowest of a batch is done",
    )
    seed: int = 0

    # Set by load_spec: the folder relative paths are resolved against. Not part of the YAML.
    base_dir: Path = Field(default=Path("."), exclude=True)
    # Set by parse_spec: the file errors found after loading (prices against the models the
    # endpoints resolve to) are named with.
    _source: str = PrivateAttr("<spec>")

    @field_validator("traits")
    @classmethod
    def _trait_names(cls, traits: dict[str, Trait]) -> dict[str, Trait]:
        for name in traits:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"trait name {name!r} must be letters, digits, - or _")
        return traits

    @model_validator(mode="after")
    def _has_personas(self) -> Spec:
        """Personas come from a corpus (mined), a pool (read), or both; pool columns name
        persona traits of this spec."""
        if not self.corpus and not self.personas.pool:
            raise ValueError("give a `corpus` to mine personas from, or a `personas.pool`")
        from_pool: set[str] = set()
        for i, pool in enumerate(self.personas.pool):
            for trait in pool.trait_columns():
                where = f"personas.pool[{i}].traits.{trait}"
                if trait not in self.traits:
                    raise ValueError(f"{where}: no trait {trait!r} in `traits`")
                if self.traits[trait].source != "persona":
                    raise ValueError(f"{where}: set traits.{trait}.source to `persona`")
                from_pool.add(trait)
        if not self.corpus:
            unlabelled = [t for t in self.traits_from("persona") if t not in from_pool]
            if unlabelled:
                raise ValueError(
                    f"persona traits {unlabelled} come from no pool column, and there is no "
                    "`corpus` to mine labelled personas from: map them in personas.pool[].traits"
                )
        return self

    @model_validator(mode="after")
    def _has_target(self) -> Spec:
        shared = [name for name, t in self.traits.items() if t.share is not None]
        if shared and self.total is None:
            raise ValueError(f"traits {shared} give a `share`: set `total` too")
        for i, joint in enumerate(self.joint):
            unknown = [t for t in joint.traits if t not in self.traits]
            if unknown:
                raise ValueError(f"joint[{i}].traits: unknown traits {unknown}")
        if (
            self.total is None
            and not self.joint
            and not any(sum(t.targets().values()) for t in self.traits.values())
        ):
            raise ValueError("set `total` or give at least one trait a target above 0")
        return self

    @field_validator("prices")
    @classmethod
    def _price_names(cls, prices: dict[str, Price]) -> dict[str, Price]:
        blank = [name for name in prices if not name.strip()]
        if blank:
            raise ValueError("a model name must not be empty")
        return prices

    @field_validator("prompts")
    @classmethod
    def _prompt_roles(cls, prompts: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(prompts) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; roles are {list(ROLES)}")
        return prompts

    @property
    def source(self) -> str:
        """The spec's file (``<spec>`` when it was not read from one)."""
        return self._source

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def output_model(self) -> type[BaseModel]:
        """The pydantic model of one generated record.

        Length hints go into the JSON schema only (``minLength`` on the main text field,
        ``maxLength`` on title-like fields): endpoints that constrain decoding to the schema,
        such as llama.cpp, then write full-length texts, while a short reply from another
        endpoint still parses and gets the critic's ``length`` verdict and a revision.
        """
        return _record_model(
            tuple(output_fields(self.task.output).items()),
            self.main_text_field(),
            self.task.length.min_words,
        )

    def main_text_field(self) -> str | None:
        """The last string field that is not a title: where the length hint goes."""
        candidates = [
            n
            for n, k in output_fields(self.task.output).items()
            if k is str and n.lower() not in TITLE_FIELDS
        ]
        return candidates[-1] if candidates else None

    def text_fields(self) -> list[str]:
        return [n for n, k in output_fields(self.task.output).items() if k in (str, list[str])]

    def targets(self) -> dict[str, dict[str, int]]:
        """Per trait, accepted samples wanted per value."""
        return {name: trait.targets(self.total) for name, trait in self.traits.items()}

    def joint_targets(self) -> dict[tuple[str, str], dict[tuple[str, str], int]]:
        """Per trait pair, accepted samples wanted per cell (the largest when pairs repeat)."""
        result: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        for joint in self.joint:
            a, b = joint.traits
            cells = result.setdefault((a, b), {})
            for va in self.traits[a].values:
                for vb in self.traits[b].values:
                    cells[(va, vb)] = max(cells.get((va, vb), 0), joint.target)
        return result

    def traits_from(self, source: str) -> list[str]:
        """The traits a ``critic`` confirms or a ``persona`` carries."""
        return [name for name, trait in self.traits.items() if trait.source == source]

    def frozen(self) -> dict[str, Any]:
        """The spec as plain data for the run directory: no secret ever included."""
        from personaloom.llm.cache import public_url

        data = self.model_dump(mode="json", exclude_none=True)
        for role in data.get("models", {}).values():
            role.pop("api_key", None)
            if role.get("base_url"):
                role["base_url"] = public_url(role["base_url"])
        if data.get("embeddings", {}).get("base_url"):
            data["embeddings"]["base_url"] = public_url(data["embeddings"]["base_url"])
        if data.get("novelty", {}).get("store"):
            data["novelty"]["store"] = public_url(data["novelty"]["store"])
        return data


def _format_loc(loc: tuple[Any, ...], *, user_key_last: bool = False) -> str:
    """A field path from pydantic's ``loc``, without its own steps (validator and union
    tags such as ``list[str]``); with ``user_key_last`` the last item is the user's key (an
    unknown field), kept whatever it holds."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif (item in ("function-after", "function-before") or "[" in str(item)) and not (
            user_key_last and i == len(loc) - 1
        ):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _format_error(err: Mapping[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see docs/spec.md)"
    if err["type"] == "missing":
        return "required field is missing"
    given = err.get("input")
    if given is not None and not isinstance(given, dict | list) and err["type"] != "missing":
        msg += f" (got {given!r})"
    return msg


def parse_spec(data: Any, *, source: str = "<spec>", base_dir: Path | None = None) -> Spec:
    """Validate already-loaded data; raises SpecError with every problem."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", f"expected a mapping at the top, got {type(data).__name__}")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_format_loc(e["loc"], user_key_last=e["type"] == "extra_forbidden"), _format_error(e))
            for e in exc.errors()
        ]
        raise SpecError(source, problems) from None
    spec.base_dir = base_dir or Path(".")
    spec._source = source
    return spec


MAX_YAML_NODES = 100_000  # values a spec may hold once its aliases are expanded


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load``, refusing aliases that expand past MAX_YAML_NODES values.

    PyYAML builds an alias as a shared reference, cheaply; everything after it (validation,
    the frozen spec, prompts) copies it out, so nine nested aliases of ten made a 5.8 GB
    process. The expanded size is counted on the composed node graph, before anything is
    built from it.
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already: inside the try
        node = loader.get_single_node()
        if node is not None:
            expanded = _expanded_size(node, {})
            if expanded > MAX_YAML_NODES:
                raise SpecError(
                    source,
                    [
                        (
                            "",
                            f"YAML aliases (*name) expand to more than {MAX_YAML_NODES:,} "
                            "values: write the values out, or use fewer aliases",
                        )
                    ],
                )
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = f"invalid YAML: {where}{getattr(exc, 'problem', exc)}"
        raise SpecError(source, [("", problem)]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded (each node counted once, memoised;
    a recursive alias counts as unbounded). Iterative: a deep spec cannot hit the stack."""
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    visiting: set[int] = set()
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if key in sizes:
            continue
        if isinstance(current, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = (
            [n for pair in current.value for n in pair]
            if isinstance(current, yaml.MappingNode)
            else list(current.value)
        )
        if children_done:
            visiting.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), 10 * MAX_YAML_NODES)
            continue
        if key in visiting:
            return 10 * MAX_YAML_NODES  # a recursive alias: endless once expanded
        visiting.add(key)
        stack.append((current, True))
        for child in children:
            if id(child) in visiting:
                return 10 * MAX_YAML_NODES
            stack.append((child, False))
    return sizes[id(node)]


MAX_SPEC_BYTES = 2**20


def load_spec(path: str | Path, *, check_files: bool = True) -> Spec:
    """Read, validate and (by default) check the files a spec names."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                source,
                [
                    (
                        "",
                        f"the file is {size / 2**20:.1f} MB; a spec is a small YAML file "
                        f"(at most {MAX_SPEC_BYTES // 2**20} MB): is this a data file?",
                    )
                ],
            )
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, [("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, [("", f"cannot read: {exc}")]) from None
    data = load_yaml(raw, source)
    spec = parse_spec(data, source=source, base_dir=path.resolve().parent)
    if check_files:
        problems = check_spec_files(spec)
        if problems:
            raise SpecError(source, problems)
    return spec


def _text_problem(path: Path) -> str | None:
    """Why a file is not readable UTF-8 text, or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if b"\0" in head:
        return f"{path} is binary, expected UTF-8 text"
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
    return None


def corpus_files(spec: Spec, index: int) -> list[Path]:
    source = spec.corpus[index]
    if source.path is not None:
        pattern = str(spec.resolve(source.path))
        return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return [spec.resolve(source.jsonl or "")]


def matching_paths(spec: Spec, pattern: str) -> list[Path]:
    """Files and folders a spec path names (a glob, relative to the spec), sorted."""
    return sorted(Path(p) for p in glob.glob(str(spec.resolve(pattern)), recursive=True))


def relative_name(path: Path, base: Path) -> str:
    """``path`` as lineage names it: relative to the spec's folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def check_spec_files(spec: Spec) -> list[tuple[str, str]]:
    """Problems with the corpus, vocabulary and prompt files a spec names."""
    problems: list[tuple[str, str]] = []
    for i, source in enumerate(spec.corpus):
        where = f"corpus[{i}]." + ("path" if source.path is not None else "jsonl")
        files = corpus_files(spec, i)
        if not files:
            problems.append((where, f"no file matches {source.path!r} (relative to the spec)"))
            continue
        for file in files:
            if not file.exists():
                problems.append((where, f"file not found: {file}"))
            elif problem := _text_problem(file):
                problems.append((where, problem))
            elif source.jsonl is not None:
                problems += _check_jsonl(file, source.field, where)
    for part, rel in spec.vocabulary.items():
        file = spec.resolve(rel)
        where = f"vocabulary.{part}"
        if not file.is_file():
            problems.append((where, f"file not found: {file}"))
        elif problem := _text_problem(file):
            problems.append((where, problem))
        elif not read_words(file):
            problems.append((where, f"{file} holds no words (one word per line expected)"))
    for role, rel in spec.prompts.items():
        file = spec.resolve(rel)
        if not file.is_file():
            problems.append((f"prompts.{role}", f"file not found: {file}"))
        elif problem := _text_problem(file):
            problems.append((f"prompts.{role}", problem))
        else:
            from personaloom.prompts import load_template

            try:
                load_template(role, file)
            except ValueError as exc:
                problems.append((f"prompts.{role}", str(exc)))
    from personaloom.avoid import check_avoid
    from personaloom.pool import check_pool

    return problems + check_pool(spec) + check_avoid(spec)


def _check_jsonl(file: Path, field: str, where: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((where, f"{file}:{number}: invalid JSON ({exc.msg})"))
            else:
                if not isinstance(row, dict) or not isinstance(row.get(field), str):
                    problems.append((where, f"{file}:{number}: no string field {field!r}"))
            if len(problems) >= 5:
                problems.append((where, f"{file}: stopping after 5 problems"))
                break
    return problems


def read_words(path: Path) -> list[str]:
    """One word (or short phrase) per line; blank lines and # comments ignored."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            words.append(word)
    return list(dict.fromkeys(words))


def total_target(spec: Spec) -> int:
    """The fewest accepted samples that can meet every per-value and per-cell target."""
    per_trait = [sum(values.values()) for values in spec.targets().values()]
    per_joint = [sum(cells.values()) for cells in spec.joint_targets().values()]
    return max([spec.total or 0, *per_trait, *per_joint])


@functools.lru_cache(maxsize=64)
def _record_model(
    kinds: tuple[tuple[str, Any], ...], main: str | None, min_words: int | None
) -> type[BaseModel]:
    """``Spec.output_model``, built once per output shape (the writer asks on every call, and
    the LLM layer caches JSON schemas by model class)."""
    fields: dict[str, Any] = {}
    for name, kind in kinds:
        hints: dict[str, Any] = {}
        if kind is str and name.lower() in TITLE_FIELDS:
            hints["maxLength"] = 100
        elif name == main and min_words:
            hints["minLength"] = min_words * CHARS_PER_WORD
        fields[name] = (kind, Field(..., json_schema_extra=hints or None))
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)
