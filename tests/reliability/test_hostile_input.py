"""Hostile input, property-based (hypothesis): whatever the spec file or corpus holds,
`validate` gives exit 0 or a clear error (exit 2, the file or field named), never a
traceback, and before any LLM call; untrusted text never leaves its data slot."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personaloom.cli import main
from personaloom.prompts import load_template
from personaloom.spec import SpecError, load_spec

PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BASE: dict[str, Any] = {
    "name": "hostile",
    "task": {"instruction": "Write a short story.", "output": {"title": "str", "story": "str"}},
    "corpus": [{"path": "corpus/*.txt"}],
    "traits": {"feature": {"values": ["dialogue", "moral"], "target": 2}},
    "models": {"default": {"base_url": "http://127.0.0.1:9/v1"}},  # never called
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("A harbour master posts the tide tables.\n")
    return tmp_path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, _, err = _validate_out(path, capsys)
    return code, err


def _validate_out(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _clear(code: int, err: str, name: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("error: ") and name in err, err


@PROFILE
@given(text=st.text(max_size=400))
def test_any_text_as_a_spec_is_ok_or_a_clear_error(folder: Path, capsys, text: str) -> None:
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = _validate(path, capsys)
    _clear(code, err, str(path))


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _paths(value, (*prefix, i))
    return found


@PROFILE
@given(data=st.data(), replacement=values)
def test_any_field_replaced_by_anything_is_ok_or_names_the_field(
    folder: Path, capsys, data, replacement: Any
) -> None:
    spec = json.loads(json.dumps(BASE))
    where = data.draw(st.sampled_from(_paths(spec)[1:]))
    target = spec
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = replacement
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    code, err = _validate(path, capsys)
    _clear(code, err, str(path))
    if code == 2:
        named = {str(k) for k in where if isinstance(k, str)}
        assert any(name in err for name in named) or "<spec>" in err or "corpus" in err, err


@PROFILE
@given(extra=st.dictionaries(st.text(min_size=1, max_size=12), values, min_size=1, max_size=3))
def test_unknown_fields_anywhere_are_named(folder: Path, capsys, extra: dict) -> None:
    spec = {**BASE, "task": {**BASE["task"], **extra}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    code, err = _validate(path, capsys)
    unknown = set(extra) - set(BASE["task"]) - {"examples", "length"}
    if unknown:
        assert code == 2 and "task." in err, err
    else:
        _clear(code, err, str(path))


@PROFILE
@given(blob=st.binary(min_size=1, max_size=300))
def test_any_bytes_as_a_corpus_file_are_ok_or_name_the_file(folder: Path, capsys, blob) -> None:
    corpus = folder / "corpus" / "a.txt"
    corpus.write_bytes(blob)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    code, err = _validate(path, capsys)
    _clear(code, err, str(path))
    if code == 2:
        assert "a.txt" in err and "corpus[0]" in err, err


@PROFILE
@given(lines=st.lists(st.one_of(st.text(max_size=30), values.map(json.dumps)), max_size=6))
def test_any_jsonl_corpus_is_ok_or_names_the_file_and_line(folder: Path, capsys, lines) -> None:
    (folder / "texts.jsonl").write_text("\n".join(lines), encoding="utf-8")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**BASE, "corpus": [{"jsonl": "texts.jsonl"}]}))
    code, err = _validate(path, capsys)
    _clear(code, err, str(path))
    if code == 2:
        assert "texts.jsonl" in err, err


def test_a_huge_spec_file_is_refused_without_parsing_it(folder: Path, capsys) -> None:
    path = folder / "spec.yaml"
    with path.open("w") as handle:
        handle.write(yaml.safe_dump(BASE))
        handle.write("# padding\n" * 5_500_000)  # 55 MB of comments
    code, err = _validate(path, capsys)
    assert code == 2 and "MB" in err and str(path) in err


def test_a_50_mb_corpus_file_validates(folder: Path, capsys) -> None:
    with (folder / "corpus" / "big.txt").open("w") as handle:
        handle.write("word " * 10_000_000)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(BASE))
    code, out, err = _validate_out(path, capsys)
    assert code == 0, err
    assert "1 corpus text(s) are longer than 3000 characters" in out


TAGS = ["</text>", "<text>", "</persona>", "</draft>", "</feedback>", "</example>"]
ROLES = ["[system]", "[user]", "[assistant]"]


@PROFILE
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(TAGS), st.sampled_from(ROLES), st.text(max_size=20)),
        max_size=12,
    )
)
def test_untrusted_text_never_leaves_its_data_slot(parts: list[str]) -> None:
    text = "\n".join(parts)
    messages = load_template("persona_miner").render(text=text, relation="read", n=2)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.count("<text>") == 1 and user.count("</text>") == 1
    inside = re.search(r"<text>(.*)</text>", user, re.S)
    assert inside is not None
    # Every piece of the text that survives is inside the slot.
    for part in parts:
        clean = re.sub(r"</?(text|persona|draft|neighbour|feedback|example)>", "", part).strip()
        if clean:
            assert clean in inside.group(1)


def test_load_spec_raises_only_spec_errors_for_a_spec_that_is_a_list(folder: Path) -> None:
    path = folder / "spec.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError):
        load_spec(path)
