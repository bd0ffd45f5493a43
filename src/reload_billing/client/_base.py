"""What the sync and async clients share: configuration, requests, answers, retries.

Each API method is described once as a ``Call`` (method, path, body, how to read
the answer, whether it is safe to send again); ``_sync.py`` and ``_async.py`` only
send calls. That keeps the two clients identical in behaviour.
"""

from __future__ import annotations

import base64
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from . import _json
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
from .models import (
    AccessToken,
    Page,
    PreviewCharge,
    RevokedToken,
    TokenInfo,
    Transaction,
    UsageRecord,
    UserInfo,
)

T = TypeVar("T")
# Amounts: never float (refused at run time too, with a TypeError).
MoneyInput = Decimal | int | str

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
VERSION = "0.1.0"
USER_AGENT = f"reload-billing-python/{VERSION}"


# --- configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.initial_backoff * 2**attempt))


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    client_secret: str
    base_url: str
    timeout: httpx.Timeout
    retry: RetryPolicy

    @property
    def authorization(self) -> str:
        pair = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def url(self, path: str) -> str:
        return self.base_url + path


def resolve_config(
    client_id: str | None,
    client_secret: str | None,
    base_url: str | None,
    timeout: float | httpx.Timeout,
    max_retries: int,
    backoff: float,
    max_backoff: float,
) -> ClientConfig:
    client_id = client_id or os.environ.get("RELOAD_CLIENT_ID")
    client_secret = client_secret or os.environ.get("RELOAD_CLIENT_SECRET")
    if not client_id or not client_secret:
        raise ReloadError(
            "no client credentials: pass client_id and client_secret, or set "
            "RELOAD_CLIENT_ID and RELOAD_CLIENT_SECRET",
            code="missing_credentials",
        )
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")
    base_url = (base_url or os.environ.get("RELOAD_API_URL") or DEFAULT_BASE_URL).rstrip("/")
    return ClientConfig(
        client_id=client_id,
        client_secret=client_secret,
        base_url=base_url,
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        retry=RetryPolicy(
            max_retries=max_retries, initial_backoff=backoff, max_backoff=max_backoff
        ),
    )


# --- calls ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer.

    ``retry_safe``: sending it twice cannot do anything twice (reads, or writes that
    carry an idempotency key). Other calls are only sent again when the first
    attempt surely never reached the server (connection refused, 429).
    """

    method: str
    path: str
    parse: Callable[[dict[str, Any]], T]
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_safe: bool = True

    def request_headers(self, config: ClientConfig, access_token: str | None) -> dict[str, str]:
        headers = {
            "Authorization": config.authorization,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if access_token is not None:
            headers["X-Access-Token"] = access_token
        headers.update(self.headers)
        return headers


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _data(model: type[Any]) -> Callable[[dict[str, Any]], Any]:
    def parse(envelope: dict[str, Any]) -> Any:
        return model.model_validate(envelope.get("data"))

    return parse


def _page(envelope: dict[str, Any]) -> Page[UsageRecord]:
    pagination = envelope.get("pagination") or {}
    return Page[UsageRecord].model_validate({"data": envelope.get("data") or [], **pagination})


def _post(
    path: str, body: Mapping[str, Any], parse: Callable[[dict[str, Any]], T], **kw: Any
) -> Call[T]:
    return Call("POST", path, parse, body=_json.encode(body), **kw)


# --- usage reports ------------------------------------------------------------------


class Quoted(Protocol):
    @property
    def total_cost(self) -> Any: ...


class PriceQuoter(Protocol):
    """Anything with ``quote(usage)``, such as ``reload_billing.pricing.PriceRule``."""

    def quote(self, usage: Mapping[str, Any]) -> Quoted: ...


class UsageFields(TypedDict, total=False):
    """Optional fields of a usage report (API.md, UsageReport), in snake_case."""

    usage_type: str | None
    short_description: str | None
    cost_before_tax: MoneyInput | None
    tax_rate: MoneyInput | None
    tax_amount: MoneyInput | None
    llm_model: str | None
    llm_provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    processing_time_ms: Any
    model_parameters: Mapping[str, Any] | None
    internal_tokens_or_credits: MoneyInput | None
    charge_user: bool | None
    idempotency_key: str | None
    metadata: Mapping[str, str] | None
    usage_date: datetime | None
    # Used to compute totalCost with ``price``; never sent.
    price: PriceQuoter | None
    cached_input_tokens: int | None
    cache_write_input_tokens: int | None


REPORT_FIELDS = {
    "ai_agent_id": "aiAgentId",
    "description": "description",
    "total_cost": "totalCost",
    "usage_type": "usageType",
    "short_description": "shortDescription",
    "cost_before_tax": "costBeforeTax",
    "tax_rate": "taxRate",
    "tax_amount": "taxAmount",
    "llm_model": "llmModel",
    "llm_provider": "llmProvider",
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "total_tokens": "totalTokens",
    "processing_time_ms": "processingTimeMs",
    "model_parameters": "modelParameters",
    "internal_tokens_or_credits": "internalTokensOrCredits",
    "charge_user": "chargeUser",
    "idempotency_key": "idempotencyKey",
    "metadata": "metadata",
    "usage_date": "usageDate",
}
MONEY_FIELDS = frozenset(
    {"total_cost", "cost_before_tax", "tax_rate", "tax_amount", "internal_tokens_or_credits"}
)
PRICING_FIELDS = (
    "llm_model",
    "llm_provider",
    "input_tokens",
    "output_tokens",
    "processing_time_ms",
)
PRICING_ONLY_FIELDS = frozenset({"price", "cached_input_tokens", "cache_write_input_tokens"})


def usage_report_body(
    ai_agent_id: str, description: str, total_cost: MoneyInput | None, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/tp/usage``, with an idempotency key always set."""
    unknown = sorted(set(fields) - set(REPORT_FIELDS) - PRICING_ONLY_FIELDS)
    if unknown:
        raise TypeError(f"report_usage() got an unexpected keyword argument {unknown[0]!r}")
    values: dict[str, Any] = {k: v for k, v in fields.items() if k not in PRICING_ONLY_FIELDS}
    values.update(ai_agent_id=ai_agent_id, description=description)
    price: PriceQuoter | None = fields.get("price")
    if price is not None:
        if total_cost is not None:
            raise ValueError("give total_cost or price, not both")
        usage = {name: fields.get(name) for name in (*PRICING_FIELDS, *PRICING_ONLY_FIELDS)}
        total_cost = price.quote(usage).total_cost
    if total_cost is None:
        raise TypeError("report_usage() needs total_cost (or price= to compute it)")
    values["total_cost"] = total_cost
    body: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in MONEY_FIELDS:
            value = _json.to_money(value, name)
        body[REPORT_FIELDS[name]] = value
    body.setdefault("idempotencyKey", new_idempotency_key())
    return body


def report_usage(body: Mapping[str, Any]) -> Call[UsageRecord]:
    return _post("/v1/tp/usage", body, _data(UsageRecord))


def preview_charge(
    ai_agent_id: str, amount: MoneyInput, description: str, idempotency_key: str | None
) -> Call[PreviewCharge]:
    body: dict[str, Any] = {
        "aiAgentId": ai_agent_id,
        "amount": _json.to_money(amount, "amount"),
        "description": description,
    }
    if idempotency_key is not None:
        body["idempotencyKey"] = idempotency_key
    return _post("/v1/tp/preview-charge", body, _data(PreviewCharge))


def refund(
    usage_report_id: str,
    amount: MoneyInput | None,
    reason: str | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body: dict[str, Any] = {}
    if amount is not None:
        body["amount"] = _json.to_money(amount, "amount")
    if reason is not None:
        body["reason"] = reason
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    path = f"/v1/tp/usage-reports/{_segment(usage_report_id)}/refund"
    return _post(path, body, _data(Transaction), headers=headers)


def usage_report(usage_report_id: str) -> Call[UsageRecord]:
    return Call("GET", f"/v1/tp/usage-reports/{_segment(usage_report_id)}", _data(UsageRecord))


def user() -> Call[UserInfo]:
    return Call("GET", "/v1/tp/user", _data(UserInfo))


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("an id must be a non-empty string")
    return quote(value, safe="")


# --- listing ------------------------------------------------------------------------


class UsageFilters(TypedDict, total=False):
    """Filters of ``GET /v1/tp/usage-reports`` in snake_case."""

    page: int
    limit: int
    user_id: str
    user_email: str
    start_date: datetime | date | str
    end_date: datetime | date | str
    has_charges: bool
    min_amount: MoneyInput
    max_amount: MoneyInput
    status: str
    ai_agent_id: str
    transaction_type: str
    idempotency_key: str
    usage_type: str
    sort_by: str
    sort_order: str


FILTERS = {
    "page": "page",
    "limit": "limit",
    "user_id": "userId",
    "user_email": "userEmail",
    "start_date": "startDate",
    "end_date": "endDate",
    "has_charges": "hasCharges",
    "min_amount": "minAmount",
    "max_amount": "maxAmount",
    "status": "status",
    "ai_agent_id": "aiAgentId",
    "transaction_type": "transactionType",
    "idempotency_key": "idempotencyKey",
    "usage_type": "usageType",
    "sort_by": "sortBy",
    "sort_order": "sortOrder",
}
ITERATION_PAGE_SIZE = 100


def filter_params(filters: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise TypeError(f"unknown usage report filter {unknown[0]!r}")
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif name in ("min_amount", "max_amount"):
            text = _json.format_decimal(_json.to_money(value, name))
        elif isinstance(value, datetime):
            text = _json.dumps(value).strip('"')
        elif isinstance(value, date):
            text = value.isoformat()
        else:
            text = str(value)
        params[FILTERS[name]] = text
    return params


def usage_reports_page(params: Mapping[str, str]) -> Call[Page[UsageRecord]]:
    return Call("GET", "/v1/tp/usage-reports", _page, params=dict(params))


def first_page(filters: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """Query parameters for iterating, and the page to start from."""
    params = filter_params(filters)
    params.setdefault("limit", str(ITERATION_PAGE_SIZE))
    return params, int(params.pop("page", "1"))


# --- tokens -------------------------------------------------------------------------


def revoke_token(token: str, reason: str | None) -> Call[RevokedToken]:
    body = {"token": token} if reason is None else {"token": token, "reason": reason}
    return _post("/v1/tp/revoke-token", body, _data(RevokedToken))


def introspect_token(token: str) -> Call[TokenInfo]:
    return _post("/v1/tp/introspect-token", {"token": token}, _data(TokenInfo))


def exchange_code(
    config: ClientConfig, code: str, redirect_uri: str, code_verifier: str
) -> Call[AccessToken]:
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    # A code works once: a second attempt after a lost answer could only fail.
    return _post("/v1/tp/token", body, _data(AccessToken), retry_safe=False)


# --- answers ------------------------------------------------------------------------


def parse_success(call: Call[T], response: httpx.Response) -> T:
    try:
        envelope = _json.loads(response.content)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        raise APIStatusError(
            f"the server answered HTTP {response.status_code} without a JSON object",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
            body=response.text[:2000],
            headers=response.headers,
        )
    try:
        return call.parse(envelope)
    except ValidationError as error:
        raise APIStatusError(
            f"unexpected answer from {call.method} {call.path}: {error}",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
            body=envelope,
            headers=response.headers,
        ) from None


_ERRORS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: IdempotencyConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            moment = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_from_response(status_code: int, content: bytes, headers: Mapping[str, str]) -> APIError:
    """The exception for an error answer; never raises while building it."""
    headers = httpx.Headers(headers)
    body: Any
    try:
        body = _json.loads(content) if content else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or (body.get("message") if isinstance(body, dict) else None)
    if not isinstance(message, str) or not message:
        snippet = content[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
    code = error.get("code") if isinstance(error.get("code"), str) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    kind = _ERRORS.get(status_code)
    if kind is None:
        kind = InvalidRequestError if 400 <= status_code < 500 else APIStatusError
    common: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "param": param,
        "request_id": headers.get("x-request-id"),
        "body": body if body is not None else (content.decode("utf-8", "replace") or None),
        "headers": headers,
    }
    if kind is PaymentRequiredError:
        return PaymentRequiredError(message, record=_failed_record(body), **common)
    if kind is RateLimitError:
        return RateLimitError(message, retry_after=retry_after_seconds(headers), **common)
    return kind(message, **common)


def _failed_record(body: Any) -> UsageRecord | None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return UsageRecord.model_validate(data)
    except ValidationError:
        return None


def connection_error(error: httpx.TransportError, call: Call[Any]) -> APIConnectionError:
    where = f"{call.method} {call.path}"
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"{where} timed out: {error!r}")
    return APIConnectionError(f"{where} got no answer: {error!r}")


# --- retries ------------------------------------------------------------------------

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_HOPELESS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)


def transport_retry_delay(
    call: Call[Any], error: httpx.TransportError, attempt: int, policy: RetryPolicy
) -> float | None:
    """Seconds to wait before sending again after no answer, or None to give up."""
    if attempt >= policy.max_retries or isinstance(error, _HOPELESS):
        return None
    if not call.retry_safe and not isinstance(error, _NEVER_SENT):
        return None
    return policy.backoff(attempt)


def status_retry_delay(
    call: Call[Any], error: APIError, attempt: int, policy: RetryPolicy
) -> float | None:
    """Seconds to wait before sending again after an error answer, or None to give up."""
    if attempt >= policy.max_retries:
        return None
    retryable = (
        isinstance(error, RateLimitError)
        or (
            call.retry_safe
            and isinstance(error, APIStatusError)
            and (error.status_code or 0) >= 500
        )
        or (
            call.retry_safe
            and isinstance(error, IdempotencyConflictError)
            and error.code == "idempotency_key_in_use"
        )
    )
    if not retryable:
        return None
    wait = retry_after_seconds(error.headers)
    if wait is None:
        return policy.backoff(attempt)
    return wait if wait <= policy.max_retry_after else None
