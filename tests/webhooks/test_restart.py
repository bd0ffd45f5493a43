"""The outbox survives a crash: ``reload serve`` killed with SIGKILL after the event
was committed but before it was delivered sends it once restarted."""

from __future__ import annotations

import time

from sqlalchemy import select

from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import attempts, deliveries
from tests.helpers import post, usage_body
from tests.reliability.servers import ServerProcess, free_port
from tests.webhooks.receiver import Receiver, wait_for

# Fast retries, so that the test sees the refused attempt and the redelivery soon.
QUICK_WEBHOOKS = {
    "RELOAD_WEBHOOK_POLL_SECONDS": "0.05",
    "RELOAD_WEBHOOK_BACKOFF_SECONDS": "0.2",
    "RELOAD_WEBHOOK_BACKOFF_MAX_SECONDS": "0.5",
}


def test_an_event_committed_before_a_sigkill_is_delivered_after_restart(
    settings, db, tenant, tmp_path
):
    receiver_port = free_port()  # nothing listens there yet: the receiver is down
    _, secret = db.write(
        lambda conn: webhooks.create_endpoint(
            conn,
            tenant.organization_id,
            url=f"http://127.0.0.1:{receiver_port}/hooks",
            events=["payment.failed"],
            secret_key=settings.resolved_secret_key(),
            environment="sandbox",
        )
    )
    server = ServerProcess(
        settings.database_url,
        tmp_path / "server.log",
        env={"RELOAD_SECRET_KEY": settings.secret_key, **QUICK_WEBHOOKS},
    )
    receiver = None
    try:
        server.start()
        with tenant.client(server.url) as client:
            response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "100"))
        assert response.status_code == 402  # committed: the record and its event

        def refused_attempt():
            with db.read() as conn:
                return conn.execute(select(attempts.c.delivery_id, attempts.c.error)).first()

        delivery_id, error = wait_for(refused_attempt)
        assert "Connect" in error
        server.kill()
        with db.read() as conn:
            row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one()
        assert row.status == "pending" and row.delivered_at is None

        receiver = Receiver(secret=secret, port=receiver_port)
        server.start()
        [receipt] = wait_for(receiver.accepted, timeout=30)
        assert receipt.id == delivery_id
        assert receipt.signature_ok is True
        assert receipt.event["event"] == "payment.failed"
        assert receipt.event["data"]["failureReason"] == "insufficient_balance"
        assert receipt.event["data"]["usageRecordId"] == response.json()["data"]["id"]

        def delivered():
            with db.read() as conn:
                status = conn.execute(
                    select(deliveries.c.status).where(deliveries.c.id == delivery_id)
                ).scalar()
            return status == "delivered"

        wait_for(delivered)
        time.sleep(0.3)
        assert len(receiver.receipts) == 1
    finally:
        server.kill()
        if receiver is not None:
            receiver.stop()
