"""The UsageReport as the contract defines it, and the answers' JSON shapes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..money import MoneyError, parse_usd, to_decimal
from ..validation import StrictModel


def _money(value: object) -> Decimal:
    try:
        return parse_usd(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None


def _quantity(value: object) -> Decimal:
    try:
        return parse_usd(value, maximum=Decimal(10) ** 9)
    except MoneyError as error:
        raise ValueError(str(error)) from None


MAX_PERCENT_PLACES = 12  # so that the rate's text fits its column (40 characters)


def _percent(value: object) -> Decimal:
    try:
        rate = to_decimal(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None
    if rate < 0 or rate > 100:
        raise ValueError("must be a percentage between 0 and 100")
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PERCENT_PLACES:
        raise ValueError(f"must have at most {MAX_PERCENT_PLACES} decimal places")
    return rate


def _non_negative_number(value: object) -> Decimal:
    try:
        number = to_decimal(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None
    if number < 0 or number > Decimal(10) ** 12:
        raise ValueError("must be a number between 0 and 10^12")
    return number


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1_000_000}),
]
Quantity = Annotated[
    Decimal, BeforeValidator(_quantity), WithJsonSchema({"type": "number", "minimum": 0})
]
Percent = Annotated[
    Decimal,
    BeforeValidator(_percent),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100}),
]
Milliseconds = Annotated[
    Decimal, BeforeValidator(_non_negative_number), WithJsonSchema({"type": "number", "minimum": 0})
]
TokenCount = Annotated[StrictInt, Field(ge=0, le=2**53)]
MAX_MODEL_PARAMETERS_BYTES = 8192
MAX_DOUBLE = Decimal("1e308")


class UsageReport(StrictModel):
    ai_agent_id: StrictStr = Field(alias="aiAgentId", min_length=1, max_length=64)
    description: StrictStr = Field(min_length=1, max_length=2000)
    total_cost: Money = Field(alias="totalCost")
    usage_type: StrictStr | None = Field(default=None, alias="usageType", max_length=64)
    short_description: StrictStr | None = Field(
        default=None, alias="shortDescription", max_length=200
    )
    cost_before_tax: Money | None = Field(default=None, alias="costBeforeTax")
    tax_rate: Percent | None = Field(default=None, alias="taxRate")
    tax_amount: Money | None = Field(default=None, alias="taxAmount")
    llm_model: StrictStr | None = Field(default=None, alias="llmModel", max_length=200)
    llm_provider: StrictStr | None = Field(default=None, alias="llmProvider", max_length=200)
    input_tokens: TokenCount | None = Field(default=None, alias="inputTokens")
    output_tokens: TokenCount | None = Field(default=None, alias="outputTokens")
    total_tokens: TokenCount | None = Field(default=None, alias="totalTokens")
    processing_time_ms: Milliseconds | None = Field(default=None, alias="processingTimeMs")
    model_parameters: dict[str, Any] | None = Field(default=None, alias="modelParameters")
    internal_tokens_or_credits: Quantity | None = Field(
        default=None, alias="internalTokensOrCredits"
    )
    charge_user: StrictBool = Field(default=False, alias="chargeUser")
    idempotency_key: StrictStr | None = Field(
        default=None, alias="idempotencyKey", min_length=1, max_length=255
    )
    metadata: dict[StrictStr, StrictStr] | None = None
    usage_date: datetime | None = Field(default=None, alias="usageDate")

    @field_validator("description")
    @classmethod
    def _description_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("model_parameters")
    @classmethod
    def _parameters_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        try:
            size = len(orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_bounded_number))
        except TypeError:  # beyond 64-bit integers or doubles: JSON tools cannot read it back
            raise ValueError("numbers must fit in 64-bit integers or doubles") from None
        if size > MAX_MODEL_PARAMETERS_BYTES:
            raise ValueError("must be at most 8 KiB as JSON")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > 50:
            raise ValueError("at most 50 keys")
        for key, item in value.items():
            if not key or len(key) > 40:
                raise ValueError("keys have 1-40 characters")
            if len(item) > 500:
                raise ValueError(f"the value of {key!r} is longer than 500 characters")
        return value

    @field_validator("usage_date")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be an RFC 3339 timestamp with a time zone (e.g. Z)")
        return value

    @model_validator(mode="after")
    def _tax_adds_up(self) -> UsageReport:
        if self.cost_before_tax is not None and self.tax_amount is not None:
            if self.cost_before_tax + self.tax_amount != self.total_cost:
                raise ValueError("totalCost must equal costBeforeTax + taxAmount")
        return self


class PreviewCharge(StrictModel):
    ai_agent_id: StrictStr = Field(alias="aiAgentId", min_length=1, max_length=64)
    amount: Money
    description: StrictStr = Field(min_length=1, max_length=2000)
    idempotency_key: StrictStr | None = Field(
        default=None, alias="idempotencyKey", min_length=1, max_length=255
    )


class RefundRequest(StrictModel):
    amount: Money | None = None
    reason: StrictStr | None = Field(default=None, max_length=500)


def _bounded_number(value: Any) -> Any:
    if isinstance(value, Decimal) and abs(value) < MAX_DOUBLE:
        return orjson.Fragment(str(value).encode())
    raise TypeError("not a JSON number a double can hold")


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)


def request_hash(report: UsageReport, user_id: str) -> str:
    """What makes two reports "the same request": every field as recorded, less
    the key itself, plus the user; 5.5 and 5.50 are the same amount."""
    fields = report.model_dump(exclude={"idempotency_key"}, exclude_unset=True)
    fields["user"] = user_id
    return hashlib.sha256(_canonical(fields)).hexdigest()
