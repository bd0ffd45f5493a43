"""Real parallel clients against a real server: no overdraft, no double charge."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from sqlalchemy import func, select

from reload_billing.ledger.models import transactions
from reload_billing.usage.models import usage_records
from tests.helpers import assert_ledger_ok, balance, failed_records, post, usage_body


def _parallel(count, send):
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(send, range(count)))


def test_50_concurrent_charges_on_30_usd_give_30_completed_and_20_failed(
    live_server, db, make_tenant
):
    tenant = make_tenant(balance="30")

    def send(i):
        with tenant.client(live_server.url) as client:
            return post(
                client, "/v1/tp/usage", usage_body(tenant.agent_id, "1", idempotencyKey=f"c-{i}")
            )

    statuses = [response.status_code for response in _parallel(50, send)]
    assert statuses.count(201) == 30
    assert statuses.count(402) == 20
    assert balance(db, tenant.billing_account_id) == 0
    assert failed_records(db) == 20
    assert_ledger_ok(db)


def test_20_concurrent_requests_with_one_key_make_one_record_and_one_charge(
    live_server, db, tenant
):
    body = usage_body(tenant.agent_id, "2", idempotencyKey="the-one-key")

    def send(_):
        with tenant.client(live_server.url) as client:
            return post(client, "/v1/tp/usage", body)

    responses = _parallel(20, send)
    assert {response.status_code for response in responses} <= {201, 409}
    created = [r for r in responses if r.status_code == 201]
    assert len({r.json()["data"]["id"] for r in created}) == 1
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) == 1
    assert all(
        r.json()["error"]["code"] == "idempotency_key_in_use"
        for r in responses
        if r.status_code == 409
    )
    with db.read() as conn:
        records = conn.execute(select(func.count()).select_from(usage_records)).scalar()
        charges = conn.execute(
            select(func.count()).select_from(transactions).where(transactions.c.kind == "charge")
        ).scalar()
    assert records == 1 and charges == 1
    assert balance(db, tenant.billing_account_id) == Decimal("8")
    assert_ledger_ok(db)


def test_concurrent_refunds_never_refund_more_than_was_charged(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        record_id = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "3")).json()["data"][
            "id"
        ]

    def send(_):
        with tenant.client(live_server.url) as client:
            return post(client, f"/v1/tp/usage-reports/{record_id}/refund", {"amount": 1})

    statuses = [response.status_code for response in _parallel(10, send)]
    assert statuses.count(201) == 3
    assert balance(db, tenant.billing_account_id) == Decimal("10")
    assert_ledger_ok(db)
