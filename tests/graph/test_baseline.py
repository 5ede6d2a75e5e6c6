"""``personaloom report RUN --baseline N`` from a user's side: a run on the scripted endpoint,
then N writer calls with the task instruction alone, measured beside the run in report.json
and report.md; cached, so asking again (or a plain ``report``) makes no call."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from personaloom import baseline
from personaloom.cli import main
from personaloom.runner import run
from personaloom.store import load_run
from personaloom.testing.scripted import GARBAGE, ChatRequest, PersonaloomResponder

TRAIT_VALUES = ("dialogue", "moral", "forest", "sea")


class SomeGarbage:
    """The default responder, except that writer requests whose seed is in ``garbage`` get a
    reply that is not JSON, the repair request included."""

    def __init__(self) -> None:
        self.inner = PersonaloomResponder()
        self.garbage: set[int] = set()

    def __call__(self, request: ChatRequest) -> dict[str, Any] | str:
        if request.title == "Record" and request.seed in self.garbage:
            return GARBAGE
        return self.inner(request)


@pytest.fixture
def responder() -> SomeGarbage:
    return SomeGarbage()


def _run(make_spec, tmp_path: Path) -> Path:
    result = run(make_spec(), out=tmp_path / "run")
    assert result.status == "complete" and result.report["accepted"] >= 4
    return result.run_dir


def _chats(endpoint) -> list[dict[str, Any]]:
    return [r["body"] for r in endpoint.requests if r["path"].endswith("/chat/completions")]


def _text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


def _sampling(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        body.get(k) for k in ("temperature", "top_p", "max_tokens", "max_completion_tokens")
    )


def _report(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "report.json").read_text())


def _leaks(text: str, personas: list[str]) -> list[str]:
    """Persona descriptions, trait values and writer constraints found in a prompt."""
    found = [p for p in personas if p in text]
    found += [v for v in TRAIT_VALUES if re.search(rf"\b{v}\b", text, re.IGNORECASE)]
    found += [s for s in ("You are", "It must use the words", "Its feature") if s in text]
    return found


def test_baseline_beside_the_run_then_from_the_cache(make_spec, endpoint, tmp_path, capsys):
    run_dir = _run(make_spec, tmp_path)
    personas = [json.loads(line)["persona"] for line in (run_dir / "personas.jsonl").open()]
    writer = [b for b in _chats(endpoint) if "Record" in json.dumps(b.get("response_format"))]
    assert writer and all(_leaks(_text(b), personas) for b in writer)  # the check can see them
    assert _sampling(writer[0])[0] == 0.8  # the writer template's temperature
    own = _report(run_dir)
    capsys.readouterr()

    endpoint.reset_counts()
    assert main(["report", str(run_dir), "--baseline", "6"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(run_dir / "report.json")
    assert "baseline: 6/6 samples" in err and "run vs baseline at" in err
    requests = _chats(endpoint)
    assert len(requests) == 6
    # The task instruction alone: no persona, trait value or required word in any request,
    # sampled as the run's writer was (temperature, max_tokens), each with its own seed.
    for body in requests:
        assert _leaks(_text(body), personas) == []
        assert "Write a short story." in _text(body)
        assert _sampling(body) == _sampling(writer[0])
    assert len({body["seed"] for body in requests}) == 6

    report = _report(run_dir)
    # The run's own figures stay the run's: its calls are not the baseline's.
    assert {k: report[k] for k in ("calls", "tokens", "cache_hits", "diversity")} == {
        k: own[k] for k in ("calls", "tokens", "cache_hits", "diversity")
    }
    section = report["baseline"]
    assert section["requested"] == 6 and section["usable"] == 6 and section["unusable"] == {}
    assert section["calls"] == 6 and section["tokens"] > 0 and section["cache_hits"] == 0
    assert section["models"] == ["gpt-4o-mini"]
    assert section["embedder"] == "openai:scripted-embed"
    measured = section["diversity"]
    assert measured["samples"] == 6 and measured["embeddings"] == 6
    assert measured["distinct_2"] > 0 and measured["vendi_score"] > 1
    size = min(report["accepted"], 6)
    compared = section["compared"]
    assert compared["samples"] == size and compared["run_samples"] == report["accepted"]
    assert compared["run"]["samples"] == size and compared["baseline"]["samples"] == size
    assert compared["run"]["embeddings"] == size  # the run's vectors, from its Chroma store
    assert compared["run"]["words"] > 0 and compared["baseline"]["words"] > 0
    if size == report["accepted"]:  # the whole run: the same figures as its own section
        for key in ("distinct_2", "compression_ratio", "vendi_score"):
            assert compared["run"][key] == report["diversity"][key]
    rows = [json.loads(line) for line in (run_dir / "baseline.jsonl").open()]
    assert [r["index"] for r in rows] == list(range(6))
    assert len({json.dumps(r["output"], sort_keys=True) for r in rows}) == 6
    assert all(len(r["embedding"]) == 384 for r in rows)
    markdown = (run_dir / "report.md").read_text()
    assert "## Against a baseline" in markdown
    assert "| measure | run | baseline | more diverse | meaning |" in markdown
    assert re.search(
        r"^\| Vendi score \| [\d.]+ \| [\d.]+ \| (run|baseline|same) \|", markdown, re.M
    )
    assert "**6** usable of 6 samples" in markdown
    assert f"| words | {compared['run']['words']} | {compared['baseline']['words']} |" in markdown

    # Asked again: every reply and embedding from the cache, the same figures.
    endpoint.reset_counts()
    assert main(["report", str(run_dir), "--baseline", "6"]) == 0
    assert endpoint.chat_calls == 0 and endpoint.embedding_calls == 0
    again = _report(run_dir)["baseline"]
    assert again["diversity"] == measured and again["compared"] == compared
    assert again["calls"] == 6 and again["cache_hits"] == 6  # counted over every baseline
    assert "0 endpoint calls and 0 tokens this time, 6 replies from the cache" in (
        capsys.readouterr().err
    )

    # A plain report keeps the section, from baseline.jsonl, without any call.
    endpoint.reset_counts()
    assert main(["report", str(run_dir)]) == 0
    assert endpoint.chat_calls == 0 and endpoint.embedding_calls == 0
    assert _report(run_dir)["baseline"] == again
    assert "## Against a baseline" in (run_dir / "report.md").read_text()

    # So does the report a resumed session writes at its end.
    resumed = run(resume=run_dir)
    assert resumed.report["baseline"]["compared"] == compared


def test_a_garbage_reply_is_counted_and_skipped(make_spec, endpoint, responder, tmp_path):
    run_dir = _run(make_spec, tmp_path)
    spec, _ = load_run(run_dir)
    responder.garbage = {baseline.sample_seed(spec, 2)}
    endpoint.reset_counts()
    assert main(["report", str(run_dir), "--baseline", "6"]) == 0
    assert endpoint.chat_calls == 7  # the garbage reply got its one repair request
    section = _report(run_dir)["baseline"]
    assert section["requested"] == 6 and section["usable"] == 5
    assert section["unusable"] == {"unparseable": 1} and section["call_errors"] == 2
    assert section["diversity"]["samples"] == 5 and section["diversity"]["embeddings"] == 5
    rows = [json.loads(line) for line in (run_dir / "baseline.jsonl").open()]
    assert [r["status"] for r in rows] == ["ok", "ok", "unparseable", "ok", "ok", "ok"]
    assert "output" not in rows[2] and rows[2]["error"]
    assert "1 unparseable, skipped" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--baseline", "1"], "at least 2 (got 1)"),
        (["--baseline", "0"], "at least 2 (got 0)"),
        (["--baseline", "-3"], "at least 2 (got -3)"),
        (["--model", "other"], "use them with --baseline N"),
    ],
)
def test_bad_baseline_arguments_exit_2(make_spec, endpoint, tmp_path, capsys, flags, message):
    run_dir = _run(make_spec, tmp_path)
    before = (run_dir / "report.json").read_text()
    endpoint.reset_counts()
    capsys.readouterr()
    assert main(["report", str(run_dir), *flags]) == 2
    assert message in capsys.readouterr().err
    assert endpoint.chat_calls == 0 and not (run_dir / "baseline.jsonl").exists()
    assert (run_dir / "report.json").read_text() == before


def test_baseline_n_must_be_a_number(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path), "--baseline", "six"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_not_a_run_directory_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--baseline", "4"]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("inherited", ["python", "a library's"])
def test_an_interrupted_baseline_loses_no_fetched_reply(
    make_spec, endpoint, tmp_path, monkeypatch, capsys, request, inherited
):
    run_dir = _run(make_spec, tmp_path)
    if inherited != "python":  # a host program or library left its own Ctrl-C handler behind
        previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
        request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    before = (run_dir / "report.json").read_text()

    class CtrlC(baseline.Progress):
        def __call__(self, done: int) -> None:
            super().__call__(done)
            if done == 3:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C

    endpoint.reset_counts()
    with monkeypatch.context() as patch:
        patch.setattr(baseline, "Progress", CtrlC)
        assert main(["report", str(run_dir), "--baseline", "6"]) == 130
    assert "interrupted" in capsys.readouterr().err
    fetched = endpoint.chat_calls
    assert fetched >= 3
    assert not (run_dir / "baseline.jsonl").exists()
    assert (run_dir / "report.json").read_text() == before

    endpoint.reset_counts()
    assert main(["report", str(run_dir), "--baseline", "6"]) == 0
    # Every reply the client had received came from the cache (a request cut off in flight
    # may have reached the endpoint uncounted by the client).
    assert endpoint.chat_calls <= 3
    assert _report(run_dir)["baseline"]["usable"] == 6


def test_another_model_is_named(make_spec, endpoint, tmp_path, capsys):
    run_dir = _run(make_spec, tmp_path)
    capsys.readouterr()
    assert main(["report", str(run_dir), "--baseline", "2", "--model", "other-model"]) == 0
    assert "the run's writer called gpt-4o-mini; the baseline calls other-model" in (
        capsys.readouterr().err
    )
    assert {b["model"] for b in _chats(endpoint)[-2:]} == {"other-model"}
    assert _report(run_dir)["baseline"]["models"] == ["other-model"]
