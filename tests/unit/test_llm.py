"""The LLM layer against the scripted endpoint: retries, Retry-After, timeouts, repair,
strategy probing, the cache, and API keys that never reach disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from personaloom.agents.models import PersonaList
from personaloom.llm import LLM, Budget, BudgetExhausted, CallInfo, Endpoint, LLMFailure, ReplyCache
from personaloom.prompts import load_template
from personaloom.runner import run
from personaloom.testing.scripted import ScriptedEndpoint
from personaloom.traces import TraceStore

INFO = CallInfo(agent="persona_miner", node="test")
VARIABLES = {"text": "A bakery price list.", "relation": "read", "n": 2}


def make_llm(
    endpoint: ScriptedEndpoint,
    tmp_path: Path,
    *,
    cache: bool = False,
    budget: Budget | None = None,
    **settings,
) -> LLM:
    settings.setdefault("strategy", "json_object")
    settings.setdefault("timeout", 5)
    settings.setdefault("max_retries", 2)
    traces = TraceStore(tmp_path / "traces.sqlite")
    return LLM(
        {
            "default": Endpoint(
                model="m", base_url=endpoint.base_url, api_key=SecretStr("sk-test"), **settings
            )
        },
        traces=traces,
        budget=budget or Budget(),
        cache=ReplyCache(tmp_path / "cache") if cache else None,
    )


async def call(llm: LLM, schema: type[BaseModel] = PersonaList, seed: int = 1) -> BaseModel:
    return await llm.call(
        "persona_miner", load_template("persona_miner"), VARIABLES, schema, INFO, seed=seed
    )


async def test_rate_limit_honours_retry_after(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path)
    endpoint.inject("status", status=429, retry_after=1.0)
    started = time.monotonic()
    reply = await call(llm)
    assert time.monotonic() - started >= 1.0
    assert len(reply.personas) == 2
    attempts = llm.traces.calls()
    assert [(c["attempt"], c["status"]) for c in attempts] == [(1, "error"), (2, "ok")]
    assert "RateLimitError" in attempts[0]["error"]


async def test_timeouts_are_retried_then_fail(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path, timeout=0.3, max_retries=1)
    endpoint.inject("timeout", delay=2.0, times=2)
    with pytest.raises(LLMFailure) as failure:
        await call(llm)
    assert failure.value.reason == "llm_error"
    assert [c["status"] for c in llm.traces.calls()] == ["error", "error"]


async def test_server_errors_are_retried(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path)
    endpoint.inject("status", status=503, times=2)
    assert await call(llm)
    assert [c["attempt"] for c in llm.traces.calls()] == [1, 2, 3]


async def test_garbage_gets_one_repair(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path)
    endpoint.inject("garbage")
    assert await call(llm)
    first, second = llm.traces.calls()
    assert first["status"] == "parse_error" and "not JSON" in first["error"]
    assert "could not be used" in llm.traces.messages(second)[-1]["content"]


async def test_empty_twice_is_a_counted_failure(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path)
    endpoint.inject("empty", times=2)
    with pytest.raises(LLMFailure) as failure:
        await call(llm)
    assert failure.value.reason == "unparseable"
    assert llm.budget.calls == 2
    assert [c["status"] for c in llm.traces.calls()] == ["parse_error", "parse_error"]


async def test_auto_probes_until_a_strategy_works(responder, tmp_path: Path) -> None:
    with ScriptedEndpoint(responder, unsupported=["json_schema"]) as endpoint:
        llm = make_llm(endpoint, tmp_path, strategy="auto")
        assert await call(llm)
        assert await call(llm, seed=2)
        formats = [r["body"].get("response_format", {}).get("type") for r in endpoint.requests]
    # json_schema refused once, then json_object is remembered for this endpoint.
    assert formats == ["json_schema", "json_object", "json_object"]


async def test_bad_request_without_auto_is_an_error(responder, tmp_path: Path) -> None:
    with ScriptedEndpoint(responder, unsupported=["json_schema"]) as endpoint:
        llm = make_llm(endpoint, tmp_path, strategy="json_schema")
        with pytest.raises(LLMFailure, match="rejected"):
            await call(llm)


async def test_cache_serves_repeats_without_a_request(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path, cache=True)
    first = await call(llm)
    again = await call(llm)
    other_seed = await call(llm, seed=99)
    assert first == again and endpoint.chat_calls == 2
    assert [c["cache_hit"] for c in llm.traces.calls()] == [0, 1, 0]
    assert other_seed is not None


async def test_budget_stops_requests(endpoint, tmp_path: Path) -> None:
    llm = make_llm(endpoint, tmp_path, budget=Budget(max_calls=1))
    await call(llm)
    with pytest.raises(BudgetExhausted):
        await call(llm, seed=2)
    assert endpoint.chat_calls == 1


def test_api_key_never_reaches_disk(make_spec, tmp_path: Path, endpoint, monkeypatch) -> None:
    marker = "sk-MARKER-7f3a9c1e"
    monkeypatch.setenv("OPENAI_API_KEY", marker)
    result = run(make_spec(), out=tmp_path / "run")
    assert result.status == "complete"
    assert any(r["headers"].get("authorization") == f"Bearer {marker}" for r in endpoint.requests)
    from personaloom.cli import main

    for fmt in ("jsonl", "openai"):
        export = result.run_dir / f"export-{fmt}.jsonl"
        assert (
            main(["traces", "export", str(result.run_dir), "--format", fmt, "-o", str(export)]) == 0
        )
        assert export.stat().st_size > 0
    for root in (result.run_dir, tmp_path / "cache"):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert marker.encode() not in data, path


def test_credentials_in_a_base_url_are_not_frozen(make_spec) -> None:
    from personaloom.spec import load_spec

    spec = load_spec(make_spec())
    spec.models.writer.base_url = "https://user:pw-secret@llm.example/v1"
    spec.models.default.api_key = SecretStr("sk-in-spec")
    frozen = str(spec.frozen())
    assert "pw-secret" not in frozen and "sk-in-spec" not in frozen
    assert spec.frozen()["models"]["writer"]["base_url"] == "https://llm.example/v1"


def test_embedded_endpoint_cache_key_ignores_the_port() -> None:
    from personaloom.endpoints import with_local

    base = {"writer": Endpoint(model="local", base_url=None, embedded=True)}
    one = with_local(base, "http://127.0.0.1:40001/v1", "smol")["writer"]
    two = with_local(base, "http://127.0.0.1:40002/v1", "smol")["writer"]
    assert one.embedded and one.identity() == two.identity()
    remote = Endpoint(model="m", base_url="https://user:pw@llm.example/v1")
    assert remote.identity() == {"model": "m", "base_url": "https://llm.example/v1"}


async def test_unreachable_endpoint_is_a_clear_fatal_error(responder, tmp_path: Path) -> None:
    from personaloom.llm import EndpointError

    with ScriptedEndpoint(responder) as endpoint:
        llm = make_llm(endpoint, tmp_path, max_retries=1)
    # The endpoint is stopped: nothing listens on its port any more.
    with pytest.raises(EndpointError, match="cannot reach http://127.0.0.1"):
        await call(llm)


async def test_unknown_model_or_bad_key_is_fatal_at_once(endpoint, tmp_path: Path) -> None:
    from personaloom.llm import EndpointError

    llm = make_llm(endpoint, tmp_path)
    endpoint.inject("status", status=401)
    with pytest.raises(EndpointError, match="refused the request for model 'm'"):
        await call(llm)
    assert endpoint.chat_calls == 1


def test_cli_reports_an_unreachable_endpoint(make_spec, tmp_path: Path, capsys) -> None:
    from personaloom.cli import main

    models = {"default": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}}
    assert (
        main(["run", str(make_spec(models=models)), "--out", str(tmp_path / "run"), "--events"])
        == 1
    )
    assert "cannot reach http://127.0.0.1:9/v1" in capsys.readouterr().err
    assert '"status": "error"' in (tmp_path / "run" / "run.json").read_text()


def test_no_endpoint_means_the_embedded_model_whatever_the_model_name(make_spec) -> None:
    from personaloom.endpoints import Overrides, resolve_endpoints, with_local
    from personaloom.spec import load_spec

    spec = load_spec(make_spec(models={}))
    endpoints, needs_local = resolve_endpoints(spec, Overrides(model="gpt-4o"), env={})
    assert needs_local
    served = with_local(endpoints, None, "smollm2-135m-instruct")
    assert all(e.embedded and e.model == "smollm2-135m-instruct" for e in served.values())
    endpoints, needs_local = resolve_endpoints(
        spec, Overrides(model="gpt-4o"), env={"OPENAI_API_KEY": "k"}
    )
    assert not needs_local and endpoints["writer"].model == "gpt-4o"


async def test_langchain_callbacks_still_see_the_calls(endpoint, tmp_path: Path) -> None:
    """The ordinary LangChain callback path (what LangSmith tracing uses) keeps working."""
    from langchain_core.tracers.context import collect_runs

    llm = make_llm(endpoint, tmp_path)
    with collect_runs() as collector:
        await call(llm)
    runs = collector.traced_runs
    assert runs and runs[0].run_type == "llm" and runs[0].name == "ChatOpenAI"
