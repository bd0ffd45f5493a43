"""The Reload SDK for developers: report usage and charge users from Python.

    from reload_billing.client import Reload

    reload = Reload()  # RELOAD_CLIENT_ID, RELOAD_CLIENT_SECRET, RELOAD_API_URL
    record = reload.for_user(access_token).report_usage(
        agent_id, "Summarised a PDF", Decimal("0.0125"), charge_user=True
    )

Needs only httpx and pydantic (``pip install 'reload-billing[client]'``).
"""

from __future__ import annotations

from ._async import AsyncReload, AsyncReloadUser
from ._base import DEFAULT_BASE_URL, VERSION, RetryPolicy, UsageFields, UsageFilters
from ._sync import Reload, ReloadUser
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ReloadError,
)
from .integrations import ProviderUsage, usage_from_anthropic, usage_from_openai
from .models import (
    AccessToken,
    Organization,
    Page,
    PreviewCharge,
    RevokedToken,
    TokenInfo,
    Transaction,
    UsageRecord,
    User,
    UserInfo,
)
from .oauth import authorize_url, create_pkce_pair, create_state

__version__ = VERSION

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AccessToken",
    "AsyncReload",
    "AsyncReloadUser",
    "AuthenticationError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "Organization",
    "Page",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PreviewCharge",
    "ProviderUsage",
    "RateLimitError",
    "Reload",
    "ReloadError",
    "ReloadUser",
    "RetryPolicy",
    "RevokedToken",
    "TokenInfo",
    "Transaction",
    "UsageFields",
    "UsageFilters",
    "UsageRecord",
    "User",
    "UserInfo",
    "authorize_url",
    "create_pkce_pair",
    "create_state",
    "usage_from_anthropic",
    "usage_from_openai",
]
