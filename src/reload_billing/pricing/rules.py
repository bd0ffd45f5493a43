"""What the user pays: a price rule applied to one call's usage.

    rule = PriceRule(markup_percent=20, minimum_charge="0.001")
    quote = rule.quote({"llm_model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100})
    quote.total_cost  # Decimal('0.0042')

The total is the sum of its parts, in this order::

    provider cost (genai-prices) + own per-token prices + per-second price
    + markup (percent of all of the above) + fixed fee
    -> rounded to ``round_to`` -> raised to ``minimum_charge`` if below it

and ``quote.breakdown`` holds each part, so that they add up to ``total_cost``
exactly. Everything is ``Decimal``; a ``float`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from typing import Any

from .provider import provider_cost

ONE_MILLION = Decimal(1_000_000)
ONE_THOUSAND = Decimal(1000)
# Enough digits that no sum or product here is ever rounded before ``round_to``.
_EXACT = Context(prec=60)
_ROUNDINGS = frozenset(
    {
        "ROUND_CEILING",
        "ROUND_DOWN",
        "ROUND_FLOOR",
        "ROUND_HALF_DOWN",
        "ROUND_HALF_EVEN",
        "ROUND_HALF_UP",
        "ROUND_UP",
        "ROUND_05UP",
    }
)


def to_decimal(value: object, name: str) -> Decimal:
    """A Decimal from ``Decimal``, ``int`` or ``str``; floats are refused."""
    if isinstance(value, float):
        raise TypeError(
            f"{name} must be a Decimal, int or str, not float: write Decimal({str(value)!r})"
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, int or str, not {type(value).__name__}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, not {value!r}")
    return number


def _read(usage: Any, name: str) -> Any:
    if isinstance(usage, Mapping):
        return usage.get(name)
    return getattr(usage, name, None)


def _count(usage: Any, name: str) -> int:
    value = _read(usage, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


def _milliseconds(usage: Any) -> Decimal:
    value = _read(usage, "processing_time_ms")
    if value is None:
        return Decimal(0)
    if isinstance(value, float):
        # A duration, not money: its shortest decimal form is what was measured.
        value = repr(value)
    number = to_decimal(value, "processing_time_ms")
    if number < 0:
        raise ValueError("processing_time_ms must be >= 0")
    return number


@dataclass(frozen=True)
class Quote:
    """The price of one call: ``total_cost`` and the parts that add up to it."""

    total_cost: Decimal
    provider_cost: Decimal
    breakdown: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class PriceRule:
    """How a developer prices a call. Amounts in USD; ``markup_percent`` in percent.

    ``use_provider_cost``: start from the provider's price of the model (needs
    ``llm_model`` in the usage). ``input_per_million`` / ``output_per_million``: own
    prices per million tokens, added on top. ``per_second``: price per second of
    ``processing_time_ms``.
    """

    markup_percent: Decimal | int | str = 0
    fixed_fee: Decimal | int | str = 0
    input_per_million: Decimal | int | str | None = None
    output_per_million: Decimal | int | str | None = None
    per_second: Decimal | int | str | None = None
    minimum_charge: Decimal | int | str = 0
    round_to: Decimal | int | str = Decimal("0.000001")
    rounding: str = ROUND_HALF_EVEN
    use_provider_cost: bool = True

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("rounding", "use_provider_cost") or value is None:
                continue
            number = to_decimal(value, item.name)
            if number < 0:
                raise ValueError(f"{item.name} must not be negative")
            object.__setattr__(self, item.name, number)
        if Decimal(self.round_to) <= 0:
            raise ValueError("round_to must be greater than zero, e.g. Decimal('0.000001')")
        if self.rounding not in _ROUNDINGS:
            raise ValueError(f"rounding must be a decimal rounding mode such as {ROUND_HALF_EVEN}")
        if not isinstance(self.use_provider_cost, bool):
            raise TypeError("use_provider_cost must be True or False")

    def quote(self, usage: Mapping[str, Any] | Any) -> Quote:
        """Price one call. ``usage`` is a mapping or an object with ``llm_model``,
        ``llm_provider``, ``input_tokens``, ``output_tokens``, ``cached_input_tokens``,
        ``cache_write_input_tokens`` and ``processing_time_ms`` (each optional)."""
        with localcontext(_EXACT):
            parts = self._parts(usage)
            subtotal = sum(parts.values(), Decimal(0))
            parts["markup"] = subtotal * Decimal(self.markup_percent) / 100
            parts["fixed_fee"] = Decimal(self.fixed_fee)
            exact = sum(parts.values(), Decimal(0))
            rounded = exact.quantize(Decimal(self.round_to), rounding=self.rounding)
            parts["rounding"] = rounded - exact
            minimum = Decimal(self.minimum_charge)
            total = max(rounded, minimum)
            parts["minimum_adjustment"] = total - rounded
        return Quote(total_cost=total, provider_cost=parts["provider"], breakdown=parts)

    def _parts(self, usage: Any) -> dict[str, Decimal]:
        input_tokens = _count(usage, "input_tokens")
        output_tokens = _count(usage, "output_tokens")
        parts = {"provider": Decimal(0), "input": Decimal(0), "output": Decimal(0)}
        if self.use_provider_cost:
            model = _read(usage, "llm_model")
            if not model:
                raise ValueError(
                    "this PriceRule starts from the provider's price, which needs llm_model; "
                    "pass llm_model, or use PriceRule(use_provider_cost=False, ...)"
                )
            parts["provider"] = provider_cost(
                model,
                _read(usage, "llm_provider"),
                input_tokens,
                output_tokens,
                _count(usage, "cached_input_tokens"),
                _count(usage, "cache_write_input_tokens"),
            ).total_cost
        if self.input_per_million is not None:
            parts["input"] = input_tokens * Decimal(self.input_per_million) / ONE_MILLION
        if self.output_per_million is not None:
            parts["output"] = output_tokens * Decimal(self.output_per_million) / ONE_MILLION
        parts["time"] = Decimal(0)
        if self.per_second is not None:
            parts["time"] = _milliseconds(usage) * Decimal(self.per_second) / ONE_THOUSAND
        return parts
