"""The shipped examples load, match their READMEs, and docs/spec.md documents every field."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from personaloom.spec import ROLES, Spec, corpus_files, load_spec, read_words, total_target

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs" / "spec.md"

# What each example's README promises: per-value targets and accepted samples needed.
EXPECTED = {
    "tiny-stories": {
        "targets": {
            "feature": {"dialogue": 3, "plot twist": 3, "bad ending": 3, "moral": 3},
            "setting": {"forest": 3, "city": 3, "sea": 3, "farm": 3},
        },
        "needed": 12,
        "vocabulary": {"noun", "verb", "adjective"},
    },
    "math-problems": {
        "targets": {
            "difficulty": {"easy": 5, "medium": 4, "hard": 3},
            "topic": {"arithmetic": 3, "geometry": 3, "probability": 3, "algebra": 3},
        },
        "needed": 12,
        "vocabulary": set(),
    },
    "user-prompts": {
        "targets": {
            "asker": {"novice": 6, "expert": 6},
            "intent": {"how-to": 3, "creative writing": 3, "analysis": 3, "coding": 3},
            "tone": {"casual": 4, "formal": 4, "urgent": 4},
        },
        "needed": 12,
        "vocabulary": set(),
    },
}


def _words(text: str) -> int:
    return len(text.split())


def _readme(name: str) -> str:
    return " ".join((EXAMPLES / name / "README.md").read_text(encoding="utf-8").split())


def test_every_example_folder_is_tested():
    folders = {p.name for p in EXAMPLES.iterdir() if (p / "spec.yaml").is_file()}
    assert folders == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads_with_its_files(name):
    spec = load_spec(EXAMPLES / name / "spec.yaml")  # raises SpecError on any problem
    assert spec.name == name
    assert spec.base_dir == (EXAMPLES / name).resolve()
    assert set(spec.vocabulary) == EXPECTED[name]["vocabulary"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_targets_match_readme(name):
    spec = load_spec(EXAMPLES / name / "spec.yaml")
    expected = EXPECTED[name]
    assert spec.targets() == expected["targets"]
    assert total_target(spec) == expected["needed"]

    readme = _readme(name)
    assert f"**{expected['needed']} accepted" in readme
    for trait, per_value in expected["targets"].items():
        counts = set(per_value.values())
        if isinstance(spec.traits[trait].target, int) and spec.traits[trait].share is None:
            assert f"`{trait}` {counts.pop()} per value" in readme
        else:
            listed = ", ".join(f"{value} {n}" for value, n in per_value.items())
            assert f"`{trait}` {listed}" in readme
        for value in per_value:
            assert value in readme, f"{name}/README.md does not name {trait} value {value!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_small_and_runs_on_the_default_endpoint(name):
    spec = load_spec(EXAMPLES / name / "spec.yaml")
    assert spec.concurrency == 2
    assert spec.seed == 0
    assert spec.novelty.threshold == 0.9
    assert (spec.critic.min_score, spec.critic.max_revisions) == (3, 1)
    assert spec.budget.max_calls is not None and spec.budget.max_calls <= 500
    assert (spec.personas.per_text, spec.personas.relate_depth) == (2, 1)
    assert spec.personas.relate_per_persona == 2
    # The defaults pick the endpoint: no example names a model, an endpoint or a key.
    for role in ("default", *ROLES):
        config = getattr(spec.models, role)
        assert config.model is None and config.base_url is None and config.api_key is None
    assert "api_key" not in json.dumps(spec.frozen())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_corpus_texts_are_short_nonempty_text(name):
    spec = load_spec(EXAMPLES / name / "spec.yaml")
    texts: list[str] = []
    for index, source in enumerate(spec.corpus):
        for file in corpus_files(spec, index):
            raw = file.read_text(encoding="utf-8")
            assert raw.strip(), f"{file} is empty"
            if source.jsonl is None:
                texts.append(raw)
            else:
                rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
                texts += [row[source.field] for row in rows]
    assert 12 <= len(texts) <= 20
    for text in texts:
        assert 60 <= _words(text) <= 250, text[:60]
    assert len(set(texts)) == len(texts), "duplicate corpus texts"


def test_tiny_stories_vocabulary_lists():
    spec = load_spec(EXAMPLES / "tiny-stories" / "spec.yaml")
    for part, rel in spec.vocabulary.items():
        words = read_words(spec.resolve(rel))
        assert 60 <= len(words) <= 100, (part, len(words))
        assert all(w.isalpha() and w.islower() for w in words), part


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _documented_fields() -> dict[str, set[str]]:
    """Every field a user can write: top level, and inside each nested model."""
    fields = {"<top>": set(Spec.model_fields) - {"base_dir"}}
    todo = [m for info in Spec.model_fields.values() for m in _models_in(info.annotation)]
    done: set[type] = set()
    while todo:
        model = todo.pop()
        if model in done:
            continue
        done.add(model)
        fields[model.__name__] = set(model.model_fields)
        for info in model.model_fields.values():
            todo += _models_in(info.annotation)
    return fields


def test_docs_mention_every_top_level_field():
    docs = DOCS.read_text(encoding="utf-8")
    for field in set(Spec.model_fields) - {"base_dir"}:
        assert f"`{field}`" in docs, f"docs/spec.md does not document top-level `{field}`"
        assert re.search(rf"^### `{field}`$", docs, re.MULTILINE), f"no section for `{field}`"


def test_docs_mention_every_nested_field():
    docs = DOCS.read_text(encoding="utf-8")
    missing = [
        f"{model}.{field}"
        for model, names in _documented_fields().items()
        for field in sorted(names)
        if f"`{field}`" not in docs
    ]
    assert not missing, f"docs/spec.md does not document {missing}"
    for role in ROLES:
        assert f"`{role}`" in docs


def test_docs_example_is_the_tiny_stories_spec():
    docs = DOCS.read_text(encoding="utf-8")
    section = docs.split("## A complete example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "no yaml block in the example section"
    shipped = (EXAMPLES / "tiny-stories" / "spec.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(block.group(1)) == yaml.safe_load(shipped)


def test_docs_error_example_matches_the_real_format(tmp_path):
    from personaloom.spec import SpecError

    bad = tmp_path / "spec.yaml"
    bad.write_text(
        "name: s\ntask: {instruction: w, output: {a: str}}\ncorpus: [{path: x/*.txt}]\n"
        "traits: {setting: {values: [a], target: lots}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{bad}: 2 problem(s)"
    assert "  traits.setting.target: Input should be a valid dictionary (got 'lots')" in lines
    docs = DOCS.read_text(encoding="utf-8")
    for line in lines[1:]:
        assert line in docs, f"docs/spec.md does not show the real error line {line!r}"
