"""Typed answers of the API.

Field names are snake_case in Python and camelCase on the wire (``total_cost`` is
``totalCost``). Money is always a ``Decimal``. Fields the server adds later are
kept (``extra="allow"``), so a newer server never breaks an older SDK.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class ReloadModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as the API writes it: camelCase keys, ``Decimal`` money."""
        return self.model_dump(by_alias=True)


class Transaction(ReloadModel):
    """A movement of money: a charge (``type: usage``), a refund or an adjustment."""

    id: str
    type: str | None = None
    status: str | None = None
    amount: Decimal = Decimal(0)
    platform_fee: Decimal | None = None
    net_amount: Decimal | None = None
    description: str | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None


class UsageRecord(ReloadModel):
    """A usage report as recorded, with its charge state and transactions."""

    id: str
    status: str
    charged: bool = False
    charged_amount: Decimal = Decimal(0)
    refunded_amount: Decimal = Decimal(0)
    total_cost: Decimal = Decimal(0)
    failure_reason: str | None = None
    transactions: list[Transaction] = Field(default_factory=list)
    user_id: str | None = None
    organization_id: str | None = None
    ai_agent_id: str | None = None
    description: str | None = None
    short_description: str | None = None
    usage_type: str | None = None
    cost_before_tax: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_amount: Decimal | None = None
    llm_model: str | None = None
    llm_provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    processing_time_ms: Decimal | None = None
    model_parameters: dict[str, Any] | None = None
    internal_tokens_or_credits: Decimal | None = None
    charge_user: bool | None = None
    idempotency_key: str | None = None
    metadata: dict[str, str] | None = None
    platform_fee: Decimal | None = None
    usage_date: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def refundable_amount(self) -> Decimal:
        """What is left to refund."""
        return self.charged_amount - self.refunded_amount


class PreviewCharge(ReloadModel):
    """Whether a charge would succeed now; nothing is charged."""

    can_charge: bool
    amount: Decimal
    balance: Decimal | None = None
    reason: str | None = None
    limit: str | None = None


class Organization(ReloadModel):
    id: str
    name: str | None = None
    display_name: str | None = None


class User(ReloadModel):
    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class UserInfo(ReloadModel):
    """``GET /v1/tp/user``: the user behind an access token."""

    user: User
    organization: Organization | None = None
    permissions: list[str] = Field(default_factory=list)
    ai_agent_ids: list[str] | None = None
    billing_account_id: str | None = None


class AccessToken(ReloadModel):
    """The answer of the authorization code exchange (snake_case on the wire too)."""

    access_token: str = Field(alias="access_token")
    token_type: str = Field(default="Bearer", alias="token_type")
    expires_in: int | None = Field(default=None, alias="expires_in")
    scope: str | None = None
    permissions: list[str] = Field(default_factory=list)
    ai_agent_ids: list[str] | None = None
    environment: str | None = None
    organization: Organization | None = None
    user: User | None = None
    billing_account_id: str | None = None


class TokenInfo(ReloadModel):
    """``POST /v1/tp/introspect-token``: the state of an access token."""

    status: str
    active: bool = False
    token_id: str | None = None
    user_id: str | None = None
    organization_id: str | None = None
    connection_id: str | None = None
    permissions: list[str] = Field(default_factory=list)
    scope: str | None = None
    ai_agent_ids: list[str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class RevokedToken(ReloadModel):
    """``POST /v1/tp/revoke-token``."""

    revoked: bool = True
    token_id: str | None = None
    status: str | None = None


class Page(ReloadModel, Generic[T]):
    """One page of a list, with the pagination the server reported."""

    data: list[T]
    page: int = 1
    limit: int = 20
    total: int = 0
    total_pages: int = 0

    @property
    def has_more(self) -> bool:
        return self.page < self.total_pages


__all__ = [
    "AccessToken",
    "Organization",
    "Page",
    "PreviewCharge",
    "ReloadModel",
    "RevokedToken",
    "TokenInfo",
    "Transaction",
    "UsageRecord",
    "User",
    "UserInfo",
]
