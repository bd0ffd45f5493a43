"""What the model provider charges, from genai-prices' bundled price data.

No network: the data shipped with the installed genai-prices is used as is
(``UpdatePrices`` is never started). Upgrade genai-prices to get newer prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


class UnknownModelError(LookupError):
    """genai-prices has no price for this model (or provider)."""

    def __init__(self, model: str, provider: str | None, detail: str) -> None:
        where = f" from provider {provider!r}" if provider else ""
        super().__init__(
            f"no price known for model {model!r}{where} in genai-prices {_data_version()} "
            f"({detail}); check the model name, or price it yourself with "
            "PriceRule(input_per_million=..., output_per_million=..., use_provider_cost=False)"
        )
        self.model = model
        self.provider = provider


@dataclass(frozen=True)
class ProviderCost:
    """The provider's price of one call, in USD."""

    model: str
    provider: str
    input_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal


def _data_version() -> str:
    try:
        from importlib.metadata import version

        return version("genai-prices")
    except Exception:  # the version only decorates a message
        return "(unknown version)"


def _tokens(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


def provider_cost(
    model: str,
    provider: str | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    cache_write_input_tokens: int = 0,
    *,
    at: datetime | None = None,
) -> ProviderCost:
    """The provider's price for ``input_tokens`` in and ``output_tokens`` out.

    ``input_tokens`` counts every input token; ``cached_input_tokens`` (cache reads)
    and ``cache_write_input_tokens`` are parts of it, priced at their own rates.
    ``provider`` (``"openai"``, ``"anthropic"``, ..., any case) is guessed from the
    model when omitted. ``at`` picks the price in force at that time (default: now).
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a model name such as 'gpt-4o'")
    input_tokens = _tokens("input_tokens", input_tokens)
    output_tokens = _tokens("output_tokens", output_tokens)
    cached = _tokens("cached_input_tokens", cached_input_tokens)
    cache_write = _tokens("cache_write_input_tokens", cache_write_input_tokens)
    if cached + cache_write > input_tokens:
        raise ValueError(
            "cached_input_tokens + cache_write_input_tokens cannot exceed input_tokens "
            "(input_tokens counts every input token, cached ones included)"
        )
    from genai_prices import Usage, calc_price

    usage_values = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cached:
        usage_values["cache_read_tokens"] = cached
    if cache_write:
        usage_values["cache_write_tokens"] = cache_write
    provider_id = provider.strip().lower() if provider else None
    try:
        price = calc_price(
            Usage(**usage_values),
            model_ref=model.strip(),
            provider_id=provider_id,
            genai_request_timestamp=at,
        )
    except LookupError as error:
        raise UnknownModelError(model, provider, str(error)) from None
    return ProviderCost(
        model=price.model.id,
        provider=price.provider.id,
        input_cost=_exact(price.input_price),
        output_cost=_exact(price.output_price),
        total_cost=_exact(price.total_price),
    )


def _exact(value: object) -> Decimal:
    # genai-prices computes in Decimal; str() guards against a float ever slipping in.
    return value if isinstance(value, Decimal) else Decimal(str(value))
