from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reload_billing.client import _base, _json
from reload_billing.pricing import PriceRule


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0.000185"), "0.000185"),
        (Decimal("1.85E-4"), "0.000185"),
        (Decimal("5.50"), "5.50"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.000000001"), "0.000000001"),
        (Decimal("1000000"), "1000000"),
        (Decimal("-0"), "0"),
    ],
)
def test_decimal_is_written_as_an_exact_json_number(amount: Decimal, text: str) -> None:
    assert _json.dumps({"totalCost": amount}) == '{"totalCost":' + text + "}"


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_cannot_be_written(amount: Decimal) -> None:
    with pytest.raises(ValueError):
        _json.dumps(amount)


def test_nested_values_and_strings_are_valid_json() -> None:
    value = {
        "metadata": {"note": 'quote " and ünïcode \n'},
        "list": [1, Decimal("2.5"), None, True, False],
        "modelParameters": {"temperature": 0.7},
        "at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    }
    text = _json.dumps(value)
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["metadata"]["note"] == 'quote " and ünïcode \n'
    assert parsed["list"] == [1, Decimal("2.5"), None, True, False]
    assert parsed["at"] == "2025-03-01T12:00:00Z"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        _json.dumps(datetime(2025, 3, 1, 12, 0))


def test_aware_timestamps_are_written_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert _json.dumps(datetime(2025, 3, 1, 13, 0, tzinfo=paris)) == '"2025-03-01T12:00:00Z"'


@given(
    st.decimals(min_value=0, max_value=1_000_000, places=9, allow_nan=False, allow_infinity=False)
)
def test_any_amount_round_trips_exactly(amount: Decimal) -> None:
    text = _json.dumps({"totalCost": amount})
    assert "e" not in text.lower().replace("totalcost", "")
    assert _json.loads(text)["totalCost"] == amount


def test_answers_are_parsed_with_decimals() -> None:
    parsed = _json.loads(b'{"amount": 0.1, "n": 3, "tiny": 1.85e-4}')
    assert parsed == {"amount": Decimal("0.1"), "n": 3, "tiny": Decimal("0.000185")}
    assert isinstance(parsed["amount"], Decimal)


# --- money inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [Decimal("0.5"), 2, "0.000185", " 3.10 "])
def test_money_accepts_decimal_int_and_str(value: object) -> None:
    assert isinstance(_json.to_money(value, "amount"), Decimal)


def test_float_money_is_a_type_error_with_a_hint() -> None:
    with pytest.raises(TypeError, match=r"totalCost|float") as caught:
        _json.to_money(0.1, "total_cost")
    assert "Decimal('0.1')" in str(caught.value)


@pytest.mark.parametrize("value", [True, None, [1], "abc", "NaN", "inf"])
def test_other_money_inputs_are_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _json.to_money(value, "amount")


def body(**fields: Any) -> dict[str, Any]:
    cost = fields.pop("total_cost", Decimal("0.000185"))
    return _base.usage_report_body("agt_1", "Answered a question", cost, fields)


def test_report_fields_are_sent_in_camel_case_and_none_is_omitted() -> None:
    report = body(
        usage_type="token_usage",
        short_description="",
        cost_before_tax="0.0001",
        tax_rate=Decimal("85"),
        tax_amount=Decimal("0.000085"),
        llm_model="gpt-4o",
        llm_provider="openai",
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        processing_time_ms=120,
        model_parameters={"temperature": 0.2},
        internal_tokens_or_credits=3,
        charge_user=True,
        metadata={"ticket": "T-1"},
        usage_date=datetime(2025, 1, 2, tzinfo=UTC),
        idempotency_key="order-42",
    )
    assert report == {
        "aiAgentId": "agt_1",
        "description": "Answered a question",
        "totalCost": Decimal("0.000185"),
        "usageType": "token_usage",
        "shortDescription": "",
        "costBeforeTax": Decimal("0.0001"),
        "taxRate": Decimal("85"),
        "taxAmount": Decimal("0.000085"),
        "llmModel": "gpt-4o",
        "llmProvider": "openai",
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 15,
        "processingTimeMs": 120,
        "modelParameters": {"temperature": 0.2},
        "internalTokensOrCredits": Decimal("3"),
        "chargeUser": True,
        "metadata": {"ticket": "T-1"},
        "usageDate": datetime(2025, 1, 2, tzinfo=UTC),
        "idempotencyKey": "order-42",
    }
    text = _json.dumps(report)
    assert '"totalCost":0.000185' in text
    assert '"usageDate":"2025-01-02T00:00:00Z"' in text
    assert body(llm_model=None, charge_user=None).keys() == {
        "aiAgentId",
        "description",
        "totalCost",
        "idempotencyKey",
    }


def test_a_new_uuid4_idempotency_key_is_made_when_none_is_given() -> None:
    first, second = body()["idempotencyKey"], body()["idempotencyKey"]
    assert isinstance(first, str) and uuid.UUID(first).version == 4
    assert first != second


@pytest.mark.parametrize("name", ["total_cost", "cost_before_tax", "tax_amount", "tax_rate"])
def test_float_money_in_a_report_is_a_type_error(name: str) -> None:
    with pytest.raises(TypeError, match="float"):
        body(**{name: 0.5})


def test_a_misspelt_field_is_refused_before_sending() -> None:
    with pytest.raises(TypeError, match="chargeuser"):
        body(chargeuser=True)


def test_price_computes_the_total_cost() -> None:
    report = _base.usage_report_body(
        "agt_1",
        "Answered",
        None,
        {
            "price": PriceRule(markup_percent=20),
            "llm_model": "gpt-4o",
            "llm_provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 100,
        },
    )
    assert report["totalCost"] == Decimal("0.004200")
    assert '"totalCost":0.004200' in _json.dumps(report)


def test_price_and_total_cost_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        body(total_cost="1", price=PriceRule())


def test_a_report_needs_a_cost() -> None:
    with pytest.raises(TypeError, match="total_cost"):
        _base.usage_report_body("agt_1", "x", None, {})


def test_cached_token_counts_price_but_are_not_sent() -> None:
    fields = {
        "price": PriceRule(),
        "llm_model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cached_input_tokens": 500,
    }
    report = _base.usage_report_body("agt_1", "x", None, fields)
    assert report["totalCost"] == Decimal("0.002875")
    assert "cachedInputTokens" not in report


def test_preview_and_refund_refuse_float_amounts() -> None:
    with pytest.raises(TypeError):
        _base.preview_charge("agt_1", 0.5, "x", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _base.refund("usg_1", 0.5, None, None)  # type: ignore[arg-type]


def test_refund_sends_its_key_in_the_header_and_amount_exactly() -> None:
    call = _base.refund("usg_1", "0.10", "duplicate", None)
    assert call.path == "/v1/tp/usage-reports/usg_1/refund"
    assert uuid.UUID(call.headers["Idempotency-Key"]).version == 4
    assert call.body == b'{"amount":0.10,"reason":"duplicate"}'
    assert _base.refund("usg_1", None, None, "mine").headers["Idempotency-Key"] == "mine"


def test_ids_are_escaped_in_paths() -> None:
    assert _base.usage_report("a/b c").path == "/v1/tp/usage-reports/a%2Fb%20c"


def test_filters_become_camel_case_query_parameters() -> None:
    params = _base.filter_params(
        {
            "user_email": "a@example.com",
            "has_charges": True,
            "min_amount": Decimal("1E-3"),
            "start_date": datetime(2025, 1, 1, tzinfo=UTC),
            "status": None,
            "limit": 5,
        }
    )
    assert params == {
        "userEmail": "a@example.com",
        "hasCharges": "true",
        "minAmount": "0.001",
        "startDate": "2025-01-01T00:00:00Z",
        "limit": "5",
    }
    with pytest.raises(TypeError, match="colour"):
        _base.filter_params({"colour": "red"})
