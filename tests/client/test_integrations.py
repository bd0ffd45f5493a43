from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from reload_billing.client import usage_from_anthropic, usage_from_openai
from reload_billing.client._base import usage_report_body
from reload_billing.pricing import PriceRule

Read = Callable[[str], str]


def as_object(value: Any) -> Any:
    """The shape of the providers' SDK objects: attributes all the way down."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_object(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_object(item) for item in value]
    return value


class Dumpable:
    """Like a pydantic response object: only ``model_dump()``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def model_dump(self) -> dict[str, Any]:
        return self._data


def shapes(text: str) -> list[Any]:
    data = json.loads(text)
    return [text, text.encode(), data, as_object(data), Dumpable(data)]


def test_openai_chat_completion(fixture_text: Read) -> None:
    for response in shapes(fixture_text("openai_chat_completion.json")):
        assert usage_from_openai(response) == {
            "llm_model": "gpt-4o-2024-08-06",
            "llm_provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 100,
            "total_tokens": 1100,
            "cached_input_tokens": 0,
        }


def test_openai_chat_completion_with_cached_prompt(fixture_text: Read) -> None:
    for response in shapes(fixture_text("openai_chat_completion_cached.json")):
        usage = usage_from_openai(response)
        assert usage["input_tokens"] == 2048
        assert usage["cached_input_tokens"] == 1024
        assert usage["output_tokens"] == 300
        assert usage["total_tokens"] == 2348


def test_openai_responses_api(fixture_text: Read) -> None:
    for response in shapes(fixture_text("openai_response.json")):
        assert usage_from_openai(response) == {
            "llm_model": "gpt-4.1-2025-04-14",
            "llm_provider": "openai",
            "input_tokens": 1500,
            "output_tokens": 250,
            "total_tokens": 1750,
            "cached_input_tokens": 500,
        }


def test_anthropic_message_counts_cache_reads_and_writes_as_input(fixture_text: Read) -> None:
    for response in shapes(fixture_text("anthropic_message.json")):
        assert usage_from_anthropic(response) == {
            "llm_model": "claude-sonnet-4-20250514",
            "llm_provider": "anthropic",
            "input_tokens": 4220,
            "output_tokens": 350,
            "total_tokens": 4570,
            "cached_input_tokens": 3000,
            "cache_write_input_tokens": 1200,
        }


def test_anthropic_message_without_cache(fixture_text: Read) -> None:
    usage = usage_from_anthropic(fixture_text("anthropic_message_simple.json"))
    assert usage["input_tokens"] == 12
    assert usage["output_tokens"] == 15
    assert usage["total_tokens"] == 27
    assert usage["cached_input_tokens"] == 0


def test_a_response_without_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="no usage"):
        usage_from_openai({"model": "gpt-4o", "choices": []})
    with pytest.raises(ValueError, match="no usage"):
        usage_from_anthropic({"model": "claude-3-5-haiku-latest"})


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError):
        usage_from_openai(
            {"model": "gpt-4o", "usage": {"prompt_tokens": -3, "completion_tokens": 1}}
        )


@pytest.mark.parametrize(
    ("name", "reader", "expected"),
    [
        ("openai_chat_completion.json", usage_from_openai, "0.0035"),
        ("openai_chat_completion_cached.json", usage_from_openai, "0.0004104"),
        ("openai_response.json", usage_from_openai, "0.00425"),
        ("anthropic_message.json", usage_from_anthropic, "0.01071"),
    ],
)
def test_usage_prices_at_the_provider_rate(
    fixture_text: Read, name: str, reader: Callable[[Any], Any], expected: str
) -> None:
    rule = PriceRule(round_to="0.000000001")
    assert rule.quote(reader(fixture_text(name))).total_cost == Decimal(expected)


def test_report_body_from_a_response_prices_it_and_drops_cache_counts(fixture_text: Read) -> None:
    usage = usage_from_anthropic(fixture_text("anthropic_message.json"))
    body = usage_report_body(
        "agt_1", "Answered from the policy", None, {"price": PriceRule(markup_percent=10), **usage}
    )
    # (0.00546 + 0.00525) * 1.10 = 0.011781
    assert body["totalCost"] == Decimal("0.011781")
    assert body["inputTokens"] == 4220
    assert body["llmProvider"] == "anthropic"
    assert "cachedInputTokens" not in body and "cacheWriteInputTokens" not in body
    assert not {"cached_input_tokens", "cache_write_input_tokens", "price"} & set(body)
