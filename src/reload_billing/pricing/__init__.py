"""Cost calculation: the provider's price of a call, and a developer's price rule.

Pure functions over ``Decimal``; the provider prices come from genai-prices' bundled
data, without network access. To read token usage out of OpenAI or Anthropic
responses, see ``reload_billing.client.integrations``.
"""

from __future__ import annotations

from .provider import ProviderCost, UnknownModelError, provider_cost
from .rules import PriceRule, Quote

__all__ = ["PriceRule", "ProviderCost", "Quote", "UnknownModelError", "provider_cost"]
