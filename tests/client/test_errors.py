from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest

from reload_billing.client import (
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
    Reload,
    ReloadError,
    _base,
    _json,
)
from reload_billing.client._base import RetryPolicy

from .loopback import failure, record_json


def error_for(status: int, body: object, **headers: str) -> APIError:
    content = body if isinstance(body, bytes) else _json.encode(body)
    return _base.error_from_response(status, content, {"X-Request-Id": "req_42", **headers})


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, IdempotencyConflictError),
        (413, InvalidRequestError),
        (422, InvalidRequestError),
        (418, InvalidRequestError),
        (429, RateLimitError),
        (500, APIStatusError),
        (502, APIStatusError),
        (503, APIStatusError),
    ],
)
def test_each_status_maps_to_its_error(status: int, kind: type[ReloadError]) -> None:
    error = error_for(status, failure("some_code", "Something went wrong", param="totalCost"))
    assert type(error) is kind
    assert error.status_code == status
    assert error.code == "some_code"
    assert error.message == "Something went wrong"
    assert error.param == "totalCost"
    assert error.request_id == "req_42"
    assert error.body["error"]["code"] == "some_code"
    assert "some_code" in str(error) and "req_42" in str(error)


def test_not_found_is_an_invalid_request() -> None:
    assert isinstance(error_for(404, failure("not_found")), InvalidRequestError)


def test_payment_required_carries_the_failed_record() -> None:
    record = record_json(
        status="failed",
        charged=False,
        chargedAmount=0,
        failureReason="insufficient_balance",
        totalCost=Decimal("12.5"),
    )
    error = error_for(402, failure("insufficient_balance", "balance too low", data=record))
    assert isinstance(error, PaymentRequiredError)
    assert error.reason == "insufficient_balance"
    assert error.record is not None
    assert error.record.status == "failed"
    assert error.record.total_cost == Decimal("12.5")
    assert error.record.idempotency_key == "k"


def test_payment_required_without_a_record_still_has_a_reason() -> None:
    error = error_for(402, failure("spending_limit_exceeded"))
    assert isinstance(error, PaymentRequiredError)
    assert error.record is None and error.reason == "spending_limit_exceeded"


def test_rate_limit_reads_retry_after() -> None:
    error = error_for(429, failure("rate_limited"), **{"Retry-After": "3"})
    assert isinstance(error, RateLimitError) and error.retry_after == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    error = error_for(429, failure("rate_limited"), **{"Retry-After": later})
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None and 25 < error.retry_after <= 30


def test_a_non_json_error_page_becomes_an_api_status_error() -> None:
    error = error_for(502, b"<html><body>Bad Gateway</body></html>")
    assert isinstance(error, APIStatusError)
    assert error.status_code == 502 and error.code is None
    assert "Bad Gateway" in error.message
    assert error.body == "<html><body>Bad Gateway</body></html>"


def test_an_empty_error_answer_is_still_an_error() -> None:
    error = error_for(500, b"")
    assert isinstance(error, APIStatusError) and error.message == "HTTP 500"


def test_missing_credentials_are_reported_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RELOAD_CLIENT_ID", raising=False)
    monkeypatch.delenv("RELOAD_CLIENT_SECRET", raising=False)
    with pytest.raises(ReloadError, match="RELOAD_CLIENT_ID") as caught:
        Reload()
    assert caught.value.code == "missing_credentials"


def test_configuration_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELOAD_CLIENT_ID", "cli_env")
    monkeypatch.setenv("RELOAD_CLIENT_SECRET", "sec_env")
    monkeypatch.setenv("RELOAD_API_URL", "http://reload.internal:9000/")
    reload = Reload()
    assert reload.base_url == "http://reload.internal:9000"
    assert reload.config.authorization == "Basic Y2xpX2VudjpzZWNfZW52"  # cli_env:sec_env
    reload.close()
    monkeypatch.delenv("RELOAD_API_URL")
    with Reload() as default:
        assert default.base_url == "http://127.0.0.1:8000"


def test_a_sync_client_refuses_an_async_transport() -> None:
    with pytest.raises(TypeError, match="AsyncReload"):
        Reload("a", "b", transport=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]


# --- which failures are retried ---------------------------------------------------------

POLICY = RetryPolicy(max_retries=3, initial_backoff=0.5, max_backoff=8)
USAGE = _base.report_usage({"aiAgentId": "a", "description": "d", "totalCost": 1})
EXCHANGE = _base.exchange_code(
    _base.resolve_config("c", "s", "http://x", 1.0, 3, 0.5, 8.0), "code", "http://cb", "v"
)


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (500, "internal_error", True),
        (503, "service_unavailable", True),
        (429, "rate_limited", True),
        (409, "idempotency_key_in_use", True),
        (409, "idempotency_key_reused", False),
        (400, "invalid_request", False),
        (401, "unauthorized", False),
        (402, "insufficient_balance", False),
        (403, "forbidden", False),
        (404, "not_found", False),
    ],
)
def test_status_retry_rules(status: int, code: str, retried: bool) -> None:
    error = error_for(status, failure(code))
    assert isinstance(error, APIError)
    delay = _base.status_retry_delay(USAGE, error, 0, POLICY)
    assert (delay is not None) is retried
    if delay is not None:
        assert 0 <= delay <= 0.5


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 8.0)]:
        delays = [POLICY.backoff(attempt) for _ in range(300)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range


def test_retry_after_wins_over_backoff_unless_too_long() -> None:
    error = error_for(429, failure("rate_limited"), **{"Retry-After": "7"})
    assert isinstance(error, APIError)
    assert _base.status_retry_delay(USAGE, error, 0, POLICY) == 7.0
    error = error_for(503, failure("busy"), **{"Retry-After": "2"})
    assert isinstance(error, APIError)
    assert _base.status_retry_delay(USAGE, error, 0, POLICY) == 2.0
    error = error_for(429, failure("rate_limited"), **{"Retry-After": "3600"})
    assert isinstance(error, APIError)
    assert _base.status_retry_delay(USAGE, error, 0, POLICY) is None


def test_no_retry_after_the_last_attempt() -> None:
    error = error_for(503, failure("busy"))
    assert isinstance(error, APIError)
    assert _base.status_retry_delay(USAGE, error, 2, POLICY) is not None
    assert _base.status_retry_delay(USAGE, error, 3, POLICY) is None


def test_a_code_exchange_is_only_resent_when_it_surely_never_arrived() -> None:
    busy = error_for(503, failure("busy"))
    assert isinstance(busy, APIError)
    assert _base.status_retry_delay(EXCHANGE, busy, 0, POLICY) is None
    limited = error_for(429, failure("rate_limited"))
    assert isinstance(limited, APIError)
    assert _base.status_retry_delay(EXCHANGE, limited, 0, POLICY) is not None
    assert (
        _base.transport_retry_delay(EXCHANGE, httpx.ConnectError("refused"), 0, POLICY) is not None
    )
    assert _base.transport_retry_delay(EXCHANGE, httpx.ReadTimeout("slow"), 0, POLICY) is None
    assert _base.transport_retry_delay(USAGE, httpx.ReadTimeout("slow"), 0, POLICY) is not None
    assert (
        _base.transport_retry_delay(USAGE, httpx.RemoteProtocolError("gone"), 0, POLICY) is not None
    )
    assert _base.transport_retry_delay(USAGE, httpx.UnsupportedProtocol("ftp"), 0, POLICY) is None


def test_connection_errors_name_the_call() -> None:
    timeout = _base.connection_error(httpx.ReadTimeout("slow"), USAGE)
    assert isinstance(timeout, APITimeoutError) and isinstance(timeout, APIConnectionError)
    assert "POST /v1/tp/usage" in str(timeout)
    refused = _base.connection_error(httpx.ConnectError("refused"), USAGE)
    assert type(refused) is APIConnectionError and refused.status_code is None
