"""The synchronous client: ``Reload`` and its user-bound ``ReloadUser``."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class _UsageReading:
    """Reading and refunding usage: for the whole organization, or one user."""

    _access_token: str | None = None

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def usage_reports(self, **filters: Unpack[UsageFilters]) -> Iterator[UsageRecord]:
        """Every usage record matching ``filters``, page after page.

        ``limit`` sets the page size (default 100); ``page`` the first page.
        """
        params, page = _base.first_page(filters)
        while True:
            result = self._send(_base.usage_reports_page({**params, "page": str(page)}))
            yield from result.data
            if not result.data or page >= result.total_pages:
                return
            page += 1

    def usage_reports_page(self, **filters: Unpack[UsageFilters]) -> Page[UsageRecord]:
        """One page of usage records, with the pagination."""
        return self._send(_base.usage_reports_page(_base.filter_params(filters)))

    def usage_report(self, usage_report_id: str) -> UsageRecord:
        """One usage record with all its transactions."""
        return self._send(_base.usage_report(usage_report_id))

    def refund(
        self,
        usage_report_id: str,
        amount: MoneyInput | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Refund a charged record: ``amount`` (default: all that is left to refund)."""
        return self._send(_base.refund(usage_report_id, amount, reason, idempotency_key))


class Reload(_UsageReading):
    """The developer API with the organization's client credentials.

    >>> reload = Reload()  # RELOAD_CLIENT_ID, RELOAD_CLIENT_SECRET, RELOAD_API_URL
    >>> user = reload.for_user(access_token)
    >>> user.report_usage("agt_...", "Answered a question", Decimal("0.002"), charge_user=True)
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = _base.DEFAULT_TIMEOUT,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        *,
        http_client: httpx.Client | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(
                "Reload needs a synchronous transport; use AsyncReload with "
                "httpx.ASGITransport, or pass http_client=fastapi.testclient.TestClient(app)"
            )
        self.config = _base.resolve_config(
            client_id, client_secret, base_url, timeout, max_retries, backoff, max_backoff
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.config.timeout, transport=transport)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Reload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def for_user(self, access_token: str) -> ReloadUser:
        """A client acting for the user behind ``access_token``."""
        return ReloadUser(self, access_token)

    def revoke_token(self, token: str, reason: str | None = None) -> RevokedToken:
        return self._send(_base.revoke_token(token, reason))

    def introspect_token(self, token: str) -> TokenInfo:
        return self._send(_base.introspect_token(token))

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> AccessToken:
        """Trade an authorization code (with its PKCE verifier) for an access token."""
        return self._send(_base.exchange_code(self.config, code, redirect_uri, code_verifier))

    def authorize_url(self, redirect_uri: str, code_challenge: str, **options: Any) -> str:
        """The consent page URL for this organization; see ``oauth.authorize_url``."""
        return _authorize_url(
            self.base_url,
            self.config.client_id,
            redirect_uri,
            code_challenge=code_challenge,
            **options,
        )

    def _send(self, call: Call[T], access_token: str | None = None) -> T:
        policy = self.config.retry
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(delay)
            attempt += 1


class ReloadUser(_UsageReading):
    """The developer API acting for one user (``X-Access-Token``)."""

    def __init__(self, owner: Reload, access_token: str) -> None:
        if not access_token:
            raise ValueError("access_token must not be empty")
        self.owner = owner
        self._access_token = access_token

    @property
    def access_token(self) -> str:
        return self._access_token or ""

    def _send(self, call: Call[T]) -> T:
        return self.owner._send(call, self._access_token)

    def user(self) -> UserInfo:
        """The user's profile, organization and granted permissions."""
        return self._send(_base.user())

    def preview_charge(
        self,
        ai_agent_id: str,
        amount: MoneyInput,
        description: str,
        idempotency_key: str | None = None,
    ) -> PreviewCharge:
        """Whether charging ``amount`` would succeed now; charges nothing."""
        return self._send(_base.preview_charge(ai_agent_id, amount, description, idempotency_key))

    def report_usage(
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
        return self._send(_base.report_usage(body))
