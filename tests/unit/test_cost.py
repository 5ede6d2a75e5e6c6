"""Prices and ``budget.max_cost`` in the spec: what is refused (exit 2, naming the file and the
field) and what a price costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from personaloom.cli import main
from personaloom.endpoints import check_prices, resolve_endpoints
from personaloom.llm.budget import Budget
from personaloom.prices import Prices
from personaloom.spec import load_spec

PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}


def test_validate_prints_the_prices(make_spec, capsys) -> None:
    spec = make_spec(prices=PRICES, budget={"max_cost": 2.5})
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert (
        "price: gpt-4o-mini (persona_miner, persona_relater, persona_checker, writer, critic)"
        in out
    )
    assert "0.15 in, 0.6 out per 1M tokens" in out and "max_cost: 2.5" in out


@pytest.mark.parametrize(
    ("sections", "field", "words"),
    [
        (
            {"prices": {"gpt-4o-mini": {"input": -1, "output": 0.6}}},
            "prices.gpt-4o-mini.input",
            "greater than or equal to 0",
        ),
        ({"prices": {"gpt-4o-mini": {"input": 0.15}}}, "prices.gpt-4o-mini.output", "missing"),
        (
            {"prices": {"gpt-4o-mini": {"input": 0.1, "output": 1, "cached": 0}}},
            "cached",
            "unknown",
        ),
        ({"prices": {"gpt-5-typo": {"input": 1, "output": 2}}}, "prices.gpt-5-typo", "no role"),
        ({"budget": {"max_cost": 0}}, "budget.max_cost", "greater than 0"),
        ({"budget": {"max_cost": -3}}, "budget.max_cost", "greater than 0"),
        ({"budget": {"max_cost": 1.0}}, "budget.max_cost", "add prices.gpt-4o-mini"),
    ],
)
def test_bad_prices_are_named(
    make_spec, capsys, sections: dict, field: str, words: str, tmp_path: Path
) -> None:
    spec = make_spec(**sections)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and field in err and words in err, err
    # `run` refuses it too, before it makes a run directory.
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out), "--events"]) == 2
    assert field in capsys.readouterr().err and not out.exists()


def test_a_price_for_a_model_named_in_the_spec_is_kept(make_spec, monkeypatch) -> None:
    """The environment may point a run at another model today: a price for a model the spec
    names is not an error, only one for a model nothing names."""
    spec = make_spec(
        models={"default": {"model": "big-model"}, "critic": {"model": "small-model"}},
        prices={"big-model": {"input": 1, "output": 2}, "small-model": {"input": 0, "output": 0}},
    )
    loaded = load_spec(spec)
    endpoints, _ = resolve_endpoints(loaded, env={})
    assert check_prices(loaded, endpoints) == []


def test_the_embedded_model_needs_no_price_under_max_cost(make_spec) -> None:
    spec = load_spec(make_spec(models={}, budget={"max_cost": 1.0}))
    endpoints, needs_local = resolve_endpoints(spec, env={})
    assert needs_local and check_prices(spec, endpoints) == []
    priced = load_spec(
        make_spec(models={}, prices={"smollm2-135m-instruct": PRICES["gpt-4o-mini"]})
    )
    assert check_prices(priced, resolve_endpoints(priced, env={})[0]) == []


def test_budget_counts_cost_at_the_model_price() -> None:
    budget = Budget(max_cost=0.001, prices=Prices({"m": _price(1.0, 4.0)}))
    budget.add_usage("m", {"input_tokens": 200, "output_tokens": 100, "total_tokens": 300})
    assert budget.cost == pytest.approx((200 * 1.0 + 100 * 4.0) / 1e6)
    assert budget.tokens == 300 and budget.exhausted() is None
    budget.add_usage("free", {"input_tokens": 10**6, "output_tokens": 10**6, "total_tokens": 1})
    assert budget.cost == pytest.approx(0.0006)
    budget.add_usage("m", {"input_tokens": 400, "output_tokens": 0, "total_tokens": 400})
    assert budget.exhausted() == "max_cost"
    assert budget.spent() == {"calls": 0, "tokens": 701, "cost": 0.001}


def _price(input: float, output: float):
    from personaloom.spec import Price

    return Price(input=input, output=output)
