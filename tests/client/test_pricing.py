from __future__ import annotations

import socket
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reload_billing.pricing import PriceRule, Quote, UnknownModelError, provider_cost


def test_gpt_4o_costs_exactly_what_openai_charges() -> None:
    cost = provider_cost(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=100)
    assert cost.total_cost == Decimal("0.0035")
    assert isinstance(cost.total_cost, Decimal)
    assert cost.input_cost == Decimal("0.0025")
    assert cost.output_cost == Decimal("0.001")
    assert (cost.model, cost.provider) == ("gpt-4o", "openai")


def test_provider_name_is_case_insensitive_and_optional() -> None:
    named = provider_cost(model="gpt-4o", provider="OpenAI", input_tokens=1000, output_tokens=100)
    guessed = provider_cost(model="gpt-4o", input_tokens=1000, output_tokens=100)
    assert named.total_cost == guessed.total_cost == Decimal("0.0035")
    assert guessed.provider == "openai"


def test_dated_model_snapshot_has_the_model_price() -> None:
    cost = provider_cost("gpt-4o-2024-08-06", "openai", input_tokens=1000, output_tokens=100)
    assert cost.total_cost == Decimal("0.0035")


def test_cached_input_tokens_are_billed_at_the_cache_rate() -> None:
    # gpt-4o: 2.50 USD per million input tokens, 1.25 per million cached.
    cost = provider_cost(
        "gpt-4o", "openai", input_tokens=1000, output_tokens=100, cached_input_tokens=500
    )
    assert cost.input_cost == Decimal("0.001875")
    assert cost.total_cost == Decimal("0.002875")


def test_anthropic_cache_writes_cost_more_than_plain_input() -> None:
    # Claude Sonnet 4: 3 in, 0.30 cache read, 3.75 cache write, 15 out (USD per million).
    cost = provider_cost(
        "claude-sonnet-4-20250514",
        "anthropic",
        input_tokens=4220,
        output_tokens=350,
        cached_input_tokens=3000,
        cache_write_input_tokens=1200,
    )
    assert cost.input_cost == Decimal("0.00546")
    assert cost.output_cost == Decimal("0.00525")


def test_unknown_model_raises_a_clear_error() -> None:
    with pytest.raises(UnknownModelError) as caught:
        provider_cost(model="gpt-does-not-exist-9", provider="openai", input_tokens=1)
    message = str(caught.value)
    assert "gpt-does-not-exist-9" in message and "openai" in message
    assert "PriceRule" in message
    assert isinstance(caught.value, LookupError)


def test_unknown_provider_raises_unknown_model_error() -> None:
    with pytest.raises(UnknownModelError):
        provider_cost(model="gpt-4o", provider="no-such-provider", input_tokens=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_tokens": -1},
        {"output_tokens": True},
        {"input_tokens": 1.5},
        {"input_tokens": 10, "cached_input_tokens": 11},
    ],
)
def test_bad_token_counts_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        provider_cost("gpt-4o", "openai", **kwargs)  # type: ignore[arg-type]


def test_provider_cost_never_uses_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert provider_cost("gpt-4o-mini", "openai", 1000, 1000).total_cost > 0


# --- PriceRule ------------------------------------------------------------------------

GPT_4O = {
    "llm_model": "gpt-4o",
    "llm_provider": "openai",
    "input_tokens": 1000,
    "output_tokens": 100,
}


def test_default_rule_is_the_provider_cost() -> None:
    quote = PriceRule().quote(GPT_4O)
    assert quote.total_cost == Decimal("0.0035")
    assert quote.provider_cost == Decimal("0.0035")


def test_markup_is_a_percentage_of_the_cost() -> None:
    quote = PriceRule(markup_percent=20).quote(GPT_4O)
    assert quote.total_cost == Decimal("0.0042")
    assert quote.breakdown["markup"] == Decimal("0.0007")


def test_fixed_fee_is_added_after_markup() -> None:
    quote = PriceRule(markup_percent=100, fixed_fee="0.01").quote(GPT_4O)
    assert quote.total_cost == Decimal("0.017")


def test_minimum_charge_raises_small_totals() -> None:
    quote = PriceRule(minimum_charge="0.01").quote(GPT_4O)
    assert quote.total_cost == Decimal("0.01")
    assert quote.breakdown["minimum_adjustment"] == Decimal("0.0065")
    assert PriceRule(minimum_charge="0.001").quote(GPT_4O).total_cost == Decimal("0.0035")


def test_own_token_prices_without_the_provider_cost() -> None:
    rule = PriceRule(input_per_million=3, output_per_million="15", use_provider_cost=False)
    quote = rule.quote({"input_tokens": 1000, "output_tokens": 100})
    assert quote.total_cost == Decimal("0.0045")
    assert quote.provider_cost == 0
    assert quote.breakdown["input"] == Decimal("0.003")
    assert quote.breakdown["output"] == Decimal("0.0015")


def test_per_second_price_uses_processing_time() -> None:
    rule = PriceRule(per_second="0.01", use_provider_cost=False)
    assert rule.quote({"processing_time_ms": 1500}).total_cost == Decimal("0.015")
    assert rule.quote({"processing_time_ms": 1.35}).total_cost == Decimal("0.000014")


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [(ROUND_HALF_EVEN, "0.12"), (ROUND_HALF_UP, "0.13"), (ROUND_CEILING, "0.13")],
)
def test_rounding_mode_and_step(rounding: str, expected: str) -> None:
    rule = PriceRule(fixed_fee="0.125", round_to="0.01", rounding=rounding, use_provider_cost=False)
    quote = rule.quote({})
    assert quote.total_cost == Decimal(expected)
    assert quote.breakdown["rounding"] == Decimal(expected) - Decimal("0.125")


def test_default_rounding_is_half_even_to_a_micro_dollar() -> None:
    rule = PriceRule(input_per_million="0.5", use_provider_cost=False)
    # 1 token at 0.5 USD per million = 0.0000005 -> half-even to 0.000000
    assert rule.quote({"input_tokens": 1}).total_cost == Decimal("0")
    # 3 tokens = 0.0000015 -> 0.000002
    assert rule.quote({"input_tokens": 3}).total_cost == Decimal("0.000002")


def test_quote_reads_objects_with_attributes() -> None:
    @dataclass
    class Usage:
        llm_model: str = "gpt-4o"
        llm_provider: str = "openai"
        input_tokens: int = 1000
        output_tokens: int = 100

    assert PriceRule().quote(Usage()).total_cost == Decimal("0.0035")


def test_float_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        PriceRule(markup_percent=0.2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        PriceRule(minimum_charge=0.01)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"markup_percent": -1}, {"round_to": 0}, {"rounding": "ROUND_SOMETIMES"}, {"fixed_fee": "x"}],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PriceRule(**kwargs)  # type: ignore[arg-type]


def test_provider_cost_needs_a_model() -> None:
    with pytest.raises(ValueError, match="llm_model"):
        PriceRule().quote({"input_tokens": 10})


def test_unknown_model_in_a_rule_raises_unknown_model_error() -> None:
    with pytest.raises(UnknownModelError):
        PriceRule().quote({"llm_model": "my-private-model", "input_tokens": 10})


amounts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)


@given(
    markup=st.decimals(min_value=0, max_value=500, places=2),
    fee=amounts,
    minimum=amounts,
    per_million=amounts,
    tokens=st.integers(min_value=0, max_value=10_000_000),
    step=st.sampled_from(["0.000001", "0.0001", "0.01", "1"]),
)
def test_breakdown_adds_up_to_the_total(
    markup: Decimal, fee: Decimal, minimum: Decimal, per_million: Decimal, tokens: int, step: str
) -> None:
    rule = PriceRule(
        markup_percent=markup,
        fixed_fee=fee,
        minimum_charge=minimum,
        input_per_million=per_million,
        round_to=step,
        use_provider_cost=False,
    )
    quote: Quote = rule.quote({"input_tokens": tokens})
    assert sum(quote.breakdown.values()) == quote.total_cost
    assert quote.total_cost >= minimum
    assert all(isinstance(part, Decimal) for part in quote.breakdown.values())
    if quote.total_cost > minimum:
        assert quote.total_cost % Decimal(step) == 0
