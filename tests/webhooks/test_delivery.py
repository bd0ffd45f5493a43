"""Webhook delivery to a real receiver on loopback: signatures, payloads, retries
with backoff, give-up, and several workers that never send one delivery twice."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from reload_billing.db import Database
from reload_billing.ledger.service import Limits
from reload_billing.money import to_nanos
from reload_billing.oauth import service as oauth
from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import attempts, deliveries, endpoints
from reload_billing.webhooks.worker import DeliveryWorker, Policy
from tests.helpers import post, usage_body
from tests.webhooks.receiver import Receiver, wait_for


def add_endpoint(db, settings, organization_id, url, events=webhooks.EVENTS):
    return db.write(
        lambda conn: webhooks.create_endpoint(
            conn,
            organization_id,
            url=url,
            events=events,
            secret_key=settings.resolved_secret_key(),
            environment="sandbox",
        )
    )


def delivery_rows(db):
    with db.read() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.created_at)).all()


def attempt_codes(db, delivery_id):
    with db.read() as conn:
        return list(
            conn.execute(
                select(attempts.c.status_code)
                .where(attempts.c.delivery_id == delivery_id)
                .order_by(attempts.c.id)
            ).scalars()
        )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_payment_success_arrives_signed_with_the_contract_payload(
    live_server, db, settings, tenant, receiver
):
    _, secret = add_endpoint(db, settings, tenant.organization_id, receiver.url)
    receiver.secret = secret
    with tenant.client(live_server.url) as client:
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "0.25"))
    assert response.status_code == 201
    record = response.json()["data"]

    [receipt] = wait_for(receiver.accepted)
    assert receipt.signature_ok is True
    assert receipt.headers["content-type"] == "application/json"
    assert receipt.headers["x-webhook-event"] == "payment.success"
    event = receipt.event
    assert receipt.headers["x-webhook-id"] == event["id"]
    assert event["event"] == "payment.success"
    assert parse_time(event["sentAt"]) >= parse_time(event["timestamp"])
    data = event["data"]
    assert data["user"]["id"] == tenant.user_id
    assert data["user"]["email"] == tenant.user_email
    assert data["organization"]["id"] == tenant.organization_id
    assert data["environment"] == "sandbox"
    assert data["usageRecordId"] == record["id"]
    assert data["transaction"]["amount"] == Decimal("0.25")
    assert data["transaction"]["type"] == "usage"
    # The signature covers the exact bytes: one changed byte no longer verifies.
    tampered = receipt.body.replace(b"0.25", b"0.26")
    forged = "sha256=" + hmac.new(b"wrong", receipt.body, hashlib.sha256).hexdigest()
    good = "sha256=" + hmac.new(secret.encode(), tampered, hashlib.sha256).hexdigest()
    assert good != receipt.headers["x-webhook-signature"] != forged

    [row] = wait_for(lambda: [r for r in delivery_rows(db) if r.status == "delivered"])
    assert row.id == event["id"] and row.attempts == 1 and row.last_status_code == 200
    assert attempt_codes(db, row.id) == [200]


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(
    live_server, db, settings, tenant, receiver
):
    _, receiver.secret = add_endpoint(
        db, settings, tenant.organization_id, receiver.url, events=["payment.failed"]
    )
    receiver.fail_first = 2
    with tenant.client(live_server.url) as client:
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "100"))
    assert response.status_code == 402

    [accepted] = wait_for(receiver.accepted)
    tries = [r for r in receiver.receipts if r.id == accepted.id]
    assert [r.status for r in tries] == [500, 500, 200]
    assert all(r.signature_ok for r in tries)
    # Each retry is signed anew with its own sentAt; the event itself is the same.
    assert len({r.event["sentAt"] for r in tries}) == 3
    assert {r.event["timestamp"] for r in tries} == {accepted.event["timestamp"]}
    assert accepted.event["data"]["failureReason"] == "insufficient_balance"
    assert accepted.event["data"]["amount"] == Decimal("100")

    row = wait_for(lambda: [r for r in delivery_rows(db) if r.status == "delivered"])[0]
    assert row.attempts == 3
    assert attempt_codes(db, row.id) == [500, 500, 200]
    with db.read() as conn:
        errors = list(
            conn.execute(
                select(attempts.c.error)
                .where(attempts.c.delivery_id == row.id)
                .order_by(attempts.c.id)
            ).scalars()
        )
    assert errors[0].startswith("HTTP 500") and errors[2] is None


def test_a_charge_over_a_spending_limit_sends_payment_failed(
    live_server, db, settings, make_tenant, receiver
):
    tenant = make_tenant(balance="30", limits=Limits(daily=to_nanos(Decimal("1"))))
    _, receiver.secret = add_endpoint(db, settings, tenant.organization_id, receiver.url)
    with tenant.client(live_server.url) as client:
        assert post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "2")).status_code == 402
    [receipt] = wait_for(receiver.accepted)
    assert receipt.signature_ok
    assert receipt.event["event"] == "payment.failed"
    assert receipt.event["data"]["failureReason"] == "spending_limit_exceeded"


def test_connect_and_disconnect_send_user_events(live_server, db, settings, tenant, receiver):
    _, receiver.secret = add_endpoint(
        db,
        settings,
        tenant.organization_id,
        receiver.url,
        events=["user.connected", "user.disconnected"],
    )

    def connect_second_user(conn):
        from reload_billing.users import service as users

        user = users.create_user(
            conn,
            email="second@example.com",
            password="correct-horse-battery",
            first_name="Ada",
            last_name="L",
        )
        oauth.issue_direct(
            conn,
            organization_id=tenant.organization_id,
            user_id=user.id,
            scopes=("identity",),
            agent_ids=None,
            limits=Limits(),
            ttl_days=1,
        )
        return user

    second = db.write(connect_second_user)
    connection_id = db.write(lambda conn: oauth.user_connections(conn, second.id)[0].id)
    db.write(lambda conn: oauth.disconnect(conn, second.id, connection_id))

    received = wait_for(lambda: len(receiver.accepted()) == 2 and receiver.accepted())
    assert sorted(r.headers["x-webhook-event"] for r in received) == [
        "user.connected",
        "user.disconnected",
    ]
    assert all(r.signature_ok for r in received)
    assert {r.event["data"]["user"]["email"] for r in received} == {"second@example.com"}


def test_only_enabled_endpoints_that_chose_the_event_get_it(live_server, db, settings, tenant):
    chosen, other, disabled = Receiver(), Receiver(), Receiver()
    try:
        add_endpoint(db, settings, tenant.organization_id, chosen.url, events=["payment.success"])
        add_endpoint(db, settings, tenant.organization_id, other.url, events=["payment.failed"])
        off, _ = add_endpoint(db, settings, tenant.organization_id, disabled.url)
        db.write(lambda conn: webhooks.set_enabled(conn, tenant.organization_id, off.id, False))
        with tenant.client(live_server.url) as client:
            assert post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1")).status_code == 201
        wait_for(chosen.accepted)
        assert len(delivery_rows(db)) == 1
        assert other.receipts == [] and disabled.receipts == []
    finally:
        for receiver in (chosen, other, disabled):
            receiver.stop()


def test_an_event_is_written_only_if_its_transaction_commits(db, settings, tenant, receiver):
    add_endpoint(db, settings, tenant.organization_id, receiver.url)

    def fails_after_enqueue(conn):
        webhooks.enqueue(conn, tenant.organization_id, "payment.success", {"n": 1})
        raise RuntimeError("the change that caused the event failed")

    with pytest.raises(RuntimeError):
        db.write(fails_after_enqueue)
    assert delivery_rows(db) == []
    db.write(
        lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {"n": 2})
    )
    assert [row.status for row in delivery_rows(db)] == ["pending"]


def _worker_database(settings) -> Database:
    return Database(settings.database_url)


def test_two_workers_racing_never_send_one_delivery_twice(db, settings, tenant):
    receiver = Receiver(delay=0.005)
    try:
        _, receiver.secret = add_endpoint(db, settings, tenant.organization_id, receiver.url)

        def enqueue_many(conn):
            for n in range(60):
                webhooks.enqueue(conn, tenant.organization_id, "payment.success", {"n": n})

        db.write(enqueue_many)
        policy = Policy(poll=0.01, backoff=0.1, timeout=5, concurrency=4)
        databases = [_worker_database(settings) for _ in range(2)]
        workers = [DeliveryWorker(database, settings, policy=policy) for database in databases]
        barrier = threading.Barrier(len(workers))

        def race(worker):
            barrier.wait()
            worker.drain(timeout=60)

        threads = [threading.Thread(target=race, args=(worker,)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        for worker, database in zip(workers, databases, strict=True):
            worker.stop()
            database.close()

        ids = [receipt.id for receipt in receiver.receipts]
        assert len(ids) == 60
        assert len(set(ids)) == 60, "a delivery was sent twice"
        assert all(receipt.signature_ok for receipt in receiver.receipts)
        assert all(worker.sent > 0 for worker in workers), "one worker did all the work"
        assert {row.status for row in delivery_rows(db)} == {"delivered"}
        with db.read() as conn:
            assert conn.execute(select(func.count()).select_from(attempts)).scalar() == 60
    finally:
        receiver.stop()


def test_a_delivery_is_marked_failed_when_the_retry_window_ends(db, settings, tenant, receiver):
    receiver.fail_first = 10_000
    add_endpoint(db, settings, tenant.organization_id, receiver.url)
    db.write(lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {}))
    policy = Policy(poll=0.01, backoff=0.05, backoff_max=0.1, retry_window=0.6, timeout=2)
    worker = DeliveryWorker(db, settings, policy=policy)
    try:
        [row] = wait_for(
            lambda: (
                (worker.run_once() or True)
                and [r for r in delivery_rows(db) if r.status == "failed"]
            ),
            timeout=10,
        )
    finally:
        worker.stop()
    assert row.attempts >= 3
    assert row.last_status_code == 500 and row.last_error.startswith("HTTP 500")
    codes = attempt_codes(db, row.id)
    assert len(codes) == row.attempts and set(codes) == {500}
    # The last attempt is not later than the window allows (created + 0.6 s + one send).
    with db.read() as conn:
        last = conn.execute(
            select(func.max(attempts.c.created_at)).where(attempts.c.delivery_id == row.id)
        ).scalar()
    assert last - row.created_at < 1_500_000


def test_timeouts_and_refused_connections_are_recorded_and_retried(db, settings, tenant):
    slow = Receiver(delay=1.0)
    refused = Receiver()
    refused.stop()  # nothing listens on its port any more
    try:
        add_endpoint(db, settings, tenant.organization_id, slow.url)
        add_endpoint(db, settings, tenant.organization_id, refused.url)
        db.write(lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {}))
        worker = DeliveryWorker(db, settings, policy=Policy(backoff=60, timeout=0.2))
        try:
            assert worker.run_once() == 2
        finally:
            worker.stop()
        rows = {row.endpoint_id: row for row in delivery_rows(db)}
        with db.read() as conn:
            urls = dict(conn.execute(select(endpoints.c.id, endpoints.c.url)).all())
        by_url = {urls[endpoint_id]: row for endpoint_id, row in rows.items()}
        timed_out, no_answer = by_url[slow.url], by_url[refused.url]
        assert timed_out.status == no_answer.status == "pending"
        assert timed_out.last_error.startswith("timeout")
        assert "Connect" in no_answer.last_error
        assert timed_out.last_status_code is None and no_answer.last_status_code is None
        # The next try waits for the backoff (60 s here), and nobody holds the claim.
        for row in (timed_out, no_answer):
            assert row.next_attempt_at - row.created_at >= 59_000_000
            assert row.locked_until is None and row.attempts == 1
    finally:
        slow.stop()


def test_resend_sends_the_same_delivery_again(db, settings, tenant, receiver):
    _, receiver.secret = add_endpoint(db, settings, tenant.organization_id, receiver.url)
    db.write(lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {}))
    worker = DeliveryWorker(db, settings, policy=Policy(backoff=0.05, timeout=2))
    try:
        worker.drain()
        [row] = delivery_rows(db)
        assert row.status == "delivered"
        db.write(lambda conn: webhooks.resend(conn, row.id, retry_us=10**9))
        assert delivery_rows(db)[0].status == "pending"
        worker.drain()
    finally:
        worker.stop()
    assert [r.id for r in receiver.receipts] == [row.id, row.id]
    assert all(r.signature_ok for r in receiver.receipts)
    assert delivery_rows(db)[0].status == "delivered"
    assert attempt_codes(db, row.id) == [200, 200]


def test_deleting_an_endpoint_fails_its_pending_deliveries(db, settings, tenant, receiver):
    endpoint, _ = add_endpoint(db, settings, tenant.organization_id, receiver.url)
    db.write(lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {}))
    db.write(lambda conn: webhooks.delete_endpoint(conn, tenant.organization_id, endpoint.id))
    [row] = delivery_rows(db)
    assert (row.status, row.last_error) == ("failed", "endpoint deleted")
    worker = DeliveryWorker(db, settings, policy=Policy(timeout=2))
    try:
        assert worker.run_once() == 0
    finally:
        worker.stop()
    assert receiver.receipts == []
