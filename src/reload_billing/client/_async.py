"""The asynchronous client: ``AsyncReload`` and its user-bound ``AsyncReloadUser``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from . import _base
from ._base import Call, MoneyInput, UsageFields, UsageFilters
from .errors import APIError
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
from .oauth import authorize_url as _authorize_url

T = TypeVar("T")


class _AsyncUsageReading:
    """Reading and refunding usage: for the whole organization, or one user."""

    _access_token: str | None = None

    async def _send(self, call: Call[T]) -> T:
        raise NotImplementedError

    async def usage_reports(self, **filters: Unpack[UsageFilters]) -> AsyncIterator[UsageRecord]:
        """Every usage record matching ``filters``, page after page (``async for``).

        ``limit`` sets the page size (default 100); ``page`` the first page.
        """
        params, page = _base.first_page(filters)
        while True:
            result = await self._send(_base.usage_reports_page({**params, "page": str(page)}))
            for record in result.data:
                yield record
            if not result.data or page >= result.total_pages:
                return
            page += 1

    async def usage_reports_page(self, **filters: Unpack[UsageFilters]) -> Page[UsageRecord]:
        """One page of usage records, with the pagination."""
        return await self._send(_base.usage_reports_page(_base.filter_params(filters)))

    async def usage_report(self, usage_report_id: str) -> UsageRecord:
        """One usage record with all its transactions."""
        return await self._send(_base.usage_report(usage_report_id))

    async def refund(
        self,
        usage_report_id: str,
        amount: MoneyInput | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Refund a charged record: ``amount`` (default: all that is left to refund)."""
        return await self._send(_base.refund(usage_report_id, amount, reason, idempotency_key))


class AsyncReload(_AsyncUsageReading):
    """The developer API with the organization's client credentials, for asyncio.

    Pass ``transport=httpx.ASGITransport(app)`` to talk to an app in process.
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = _base.DEFAULT_TIMEOUT,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                "AsyncReload needs an asynchronous transport (httpx.AsyncBaseTransport)"
            )
        self.config = _base.resolve_config(
            client_id, client_secret, base_url, timeout, max_retries, backoff, max_backoff
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self.config.timeout, transport=transport
        )

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncReload:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def for_user(self, access_token: str) -> AsyncReloadUser:
        """A client acting for the user behind ``access_token``."""
        return AsyncReloadUser(self, access_token)

    async def revoke_token(self, token: str, reason: str | None = None) -> RevokedToken:
        return await self._send(_base.revoke_token(token, reason))

    async def introspect_token(self, token: str) -> TokenInfo:
        return await self._send(_base.introspect_token(token))

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> AccessToken:
        """Trade an authorization code (with its PKCE verifier) for an access token."""
        return await self._send(_base.exchange_code(self.config, code, redirect_uri, code_verifier))

    def authorize_url(self, redirect_uri: str, code_challenge: str, **options: Any) -> str:
        """The consent page URL for this organization; see ``oauth.authorize_url``."""
        return _authorize_url(
            self.base_url,
            self.config.client_id,
            redirect_uri,
            code_challenge=code_challenge,
            **options,
        )

    async def _send(self, call: Call[T], access_token: str | None = None) -> T:
        policy = self.config.retry
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    self.config.url(call.path),
                    params=call.params,
                    content=call.body,
                    headers=call.request_headers(self.config, access_token),
                )
            except httpx.TransportError as error:
                delay = _base.transport_retry_delay(call, error, attempt, policy)
                if delay is None:
                    raise _base.connection_error(error, call) from error
            else:
                if response.is_success:
                    return _base.parse_success(call, response)
                failure: APIError = _base.error_from_response(
                    response.status_code, response.content, response.headers
                )
                delay = _base.status_retry_delay(call, failure, attempt, policy)
                if delay is None:
                    raise failure
            await asyncio.sleep(delay)
            attempt += 1


class AsyncReloadUser(_AsyncUsageReading):
    """The developer API acting for one user (``X-Access-Token``), for asyncio."""

    def __init__(self, owner: AsyncReload, access_token: str) -> None:
        if not access_token:
            raise ValueError("access_token must not be empty")
        self.owner = owner
        self._access_token = access_token

    @property
    def access_token(self) -> str:
        return self._access_token or ""

    async def _send(self, call: Call[T]) -> T:
        return await self.owner._send(call, self._access_token)

    async def user(self) -> UserInfo:
        """The user's profile, organization and granted permissions."""
        return await self._send(_base.user())

    async def preview_charge(
        self,
        ai_agent_id: str,
        amount: MoneyInput,
        description: str,
        idempotency_key: str | None = None,
    ) -> PreviewCharge:
        """Whether charging ``amount`` would succeed now; charges nothing."""
        call = _base.preview_charge(ai_agent_id, amount, description, idempotency_key)
        return await self._send(call)

    async def report_usage(
        self,
        ai_agent_id: str,
        description: str,
        total_cost: MoneyInput | None = None,
        **fields: Unpack[UsageFields],
    ) -> UsageRecord:
        """Record usage and, with ``charge_user=True``, charge it.

        One idempotency key covers every retry of this call (``idempotency_key``, or
        a new UUID). Raises ``PaymentRequiredError`` when the charge failed.
        """
        body = _base.usage_report_body(ai_agent_id, description, total_cost, fields)
        return await self._send(_base.report_usage(body))
