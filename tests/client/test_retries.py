"""Retries and idempotency keys over real HTTP, against a scripted loopback server."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from reload_billing.client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncReload,
    IdempotencyConflictError,
    InvalidRequestError,
    PaymentRequiredError,
    Reload,
    UsageRecord,
)

from .loopback import Loopback, Received, Reply, failure, record_json, success

Start = Callable[..., Loopback]
CREATED = Reply(201, success(record_json()))


def client(server: Loopback, **kwargs: object) -> Reload:
    options: dict[str, object] = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0}
    options.update(kwargs)
    return Reload("cli_1", "sec_1", base_url=server.url, **options)  # type: ignore[arg-type]


def report(reload: Reload, **fields: object) -> UsageRecord:
    return reload.for_user("tok_1").report_usage(
        "agt_1",
        "Answered a question",
        Decimal("0.000185"),
        charge_user=True,
        **fields,  # type: ignore[arg-type]
    )


def keys(server: Loopback) -> list[str]:
    return [request.json["idempotencyKey"] for request in server.received]


def test_every_request_carries_credentials_token_and_exact_money(loopback: Start) -> None:
    server = loopback([CREATED])
    with client(server) as reload:
        record = report(reload)
    assert record.total_cost == Decimal("0.000185")
    (request,) = server.received
    assert request.method == "POST" and request.path == "/v1/tp/usage"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"cli_1:sec_1").decode()
    assert request.headers["x-access-token"] == "tok_1"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("reload-billing-python/")
    assert b'"totalCost":0.000185' in request.body
    assert b'"chargeUser":true' in request.body


def test_503_is_retried_with_the_same_idempotency_key(loopback: Start) -> None:
    server = loopback([Reply(503, failure("service_unavailable")), Reply(503, b"busy"), CREATED])
    with client(server) as reload:
        record = report(reload)
    assert record.id == "usg_1"
    assert len(server.received) == 3
    assert len(set(keys(server))) == 1
    assert server.received[0].body == server.received[2].body


def test_the_callers_idempotency_key_is_used_on_every_attempt(loopback: Start) -> None:
    server = loopback([Reply(500, failure("internal_error")), CREATED])
    with client(server) as reload:
        report(reload, idempotency_key="order-7-answer-3")
    assert keys(server) == ["order-7-answer-3", "order-7-answer-3"]


def test_a_connection_dropped_after_commit_is_retried_and_replayed(loopback: Start) -> None:
    committed: dict[str, Received] = {}

    def server_logic(request: Received) -> Reply:
        key = request.json["idempotencyKey"]
        if key not in committed:
            committed[key] = request  # the charge is committed, then the answer is lost
            return Reply(drop=True)
        return Reply(201, success(record_json(idempotencyKey=key)), {"Idempotent-Replayed": "true"})

    server = loopback(server_logic)
    with client(server) as reload:
        record = report(reload)
    assert len(server.received) == 2
    assert len(committed) == 1
    assert record.idempotency_key == keys(server)[0] == keys(server)[1]


def test_429_waits_for_retry_after(loopback: Start) -> None:
    server = loopback([Reply(429, failure("rate_limited"), {"Retry-After": "1"}), CREATED])
    started = time.monotonic()
    with client(server) as reload:
        report(reload)
    assert time.monotonic() - started >= 0.95
    assert len(server.received) == 2
    assert len(set(keys(server))) == 1


def test_409_in_use_is_retried_but_reused_is_not(loopback: Start) -> None:
    server = loopback([Reply(409, failure("idempotency_key_in_use")), CREATED])
    with client(server) as reload:
        report(reload)
    assert len(server.received) == 2

    server = loopback([Reply(409, failure("idempotency_key_reused", "used with another body"))])
    with client(server) as reload, pytest.raises(IdempotencyConflictError) as caught:
        report(reload)
    assert caught.value.code == "idempotency_key_reused"
    assert len(server.received) == 1


def test_other_4xx_are_never_retried(loopback: Start) -> None:
    server = loopback([Reply(400, failure("invalid_request", "too long", param="description"))])
    with client(server) as reload, pytest.raises(InvalidRequestError) as caught:
        report(reload)
    assert caught.value.param == "description"
    assert caught.value.request_id == "req_1"
    assert len(server.received) == 1


def test_402_is_not_retried_and_keeps_the_record(loopback: Start) -> None:
    failed = record_json(status="failed", charged=False, failureReason="insufficient_balance")
    server = loopback([Reply(402, failure("insufficient_balance", data=failed))])
    with client(server) as reload, pytest.raises(PaymentRequiredError) as caught:
        report(reload)
    assert caught.value.reason == "insufficient_balance"
    assert caught.value.record is not None and caught.value.record.status == "failed"
    assert len(server.received) == 1


def test_retries_stop_after_max_retries(loopback: Start) -> None:
    server = loopback([Reply(503, failure("service_unavailable", "down"))])
    with client(server, max_retries=3) as reload, pytest.raises(APIStatusError) as caught:
        report(reload)
    assert caught.value.status_code == 503
    assert len(server.received) == 4
    assert len(set(keys(server))) == 1

    server = loopback([Reply(503, failure("service_unavailable"))])
    with client(server, max_retries=0) as reload, pytest.raises(APIStatusError):
        report(reload)
    assert len(server.received) == 1


def test_a_timeout_is_retried_with_the_same_key(loopback: Start) -> None:
    server = loopback([Reply(201, success(record_json()), delay=1.0), CREATED])
    with client(server, timeout=0.3) as reload:
        report(reload)
    assert len(server.received) == 2
    assert len(set(keys(server))) == 1

    server = loopback([Reply(201, success(record_json()), delay=1.0)])
    with client(server, timeout=0.3, max_retries=0) as reload, pytest.raises(APITimeoutError):
        report(reload)


def test_refund_reuses_its_idempotency_key_header(loopback: Start) -> None:
    refund = {"id": "txn_1", "type": "refund", "amount": Decimal("0.5"), "status": "completed"}
    server = loopback([Reply(502, b"bad gateway"), Reply(201, success(refund))])
    with client(server) as reload:
        transaction = reload.for_user("tok_1").refund("usg_1", amount="0.5", reason="wrong answer")
    assert transaction.amount == Decimal("0.5")
    first, second = server.received
    assert first.path == "/v1/tp/usage-reports/usg_1/refund"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.json == {"amount": Decimal("0.5"), "reason": "wrong answer"}


def test_code_exchange_is_not_resent_after_a_server_error(loopback: Start) -> None:
    server = loopback([Reply(503, failure("service_unavailable"))])
    with client(server) as reload, pytest.raises(APIStatusError):
        reload.exchange_code("rac_code", "http://localhost/cb", "v" * 43)
    assert len(server.received) == 1
    assert server.received[0].json == {
        "grant_type": "authorization_code",
        "code": "rac_code",
        "client_id": "cli_1",
        "client_secret": "sec_1",
        "redirect_uri": "http://localhost/cb",
        "code_verifier": "v" * 43,
    }


def test_connection_refused_is_an_api_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reload = Reload("c", "s", base_url=f"http://127.0.0.1:{port}", backoff=0.01, max_retries=2)
    started = time.monotonic()
    with reload, pytest.raises(APIConnectionError) as caught:
        reload.introspect_token("tok")
    assert caught.value.status_code is None
    assert time.monotonic() - started < 5


def test_iteration_follows_total_pages(loopback: Start) -> None:
    def pages(request: Received) -> Reply:
        page = int(request.query["page"])
        data = [record_json(id=f"usg_{page}_{n}") for n in range(2 if page < 3 else 1)]
        pagination = {"page": page, "limit": 2, "total": 5, "totalPages": 3}
        return Reply(200, success(data, pagination=pagination))

    server = loopback(pages)
    with client(server) as reload:
        ids = [r.id for r in reload.usage_reports(limit=2, status="completed", user_id="usr_1")]
    assert ids == ["usg_1_0", "usg_1_1", "usg_2_0", "usg_2_1", "usg_3_0"]
    assert [r.query for r in server.received] == [
        {"limit": "2", "status": "completed", "userId": "usr_1", "page": str(n)} for n in (1, 2, 3)
    ]
    assert "x-access-token" not in server.received[0].headers


def test_a_non_json_success_is_an_error(loopback: Start) -> None:
    server = loopback([Reply(200, b"<html>captive portal</html>")])
    with client(server) as reload, pytest.raises(APIStatusError, match="JSON"):
        reload.introspect_token("tok")


def test_async_client_retries_with_one_key_and_iterates(loopback: Start) -> None:
    server = loopback([Reply(503, failure("service_unavailable")), Reply(drop=True), CREATED])

    async def main() -> tuple[UsageRecord, list[str]]:
        async with AsyncReload("cli_1", "sec_1", base_url=server.url, backoff=0.01) as reload:
            user = reload.for_user("tok_1")
            record = await user.report_usage("agt_1", "Answered", "0.25", charge_user=True)
            listing = loopback(
                [Reply(200, success([record_json()], pagination={"page": 1, "totalPages": 1}))]
            )
            lister = AsyncReload("cli_1", "sec_1", base_url=listing.url)
            ids = [r.id async for r in lister.for_user("tok_1").usage_reports()]
            await lister.close()
            assert listing.received[0].headers["x-access-token"] == "tok_1"
            return record, ids

    record, ids = asyncio.run(main())
    assert record.id == "usg_1" and ids == ["usg_1"]
    assert len(server.received) == 3
    assert len(set(keys(server))) == 1
    assert b'"totalCost":0.25' in server.received[0].body
