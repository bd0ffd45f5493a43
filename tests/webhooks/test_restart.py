"""The outbox survives a crash: ``reload serve`` killed with SIGKILL after the event
was committed but before it was delivered sends it once restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import attempts, deliveries
from tests.helpers import post, usage_body
from tests.webhooks.receiver import Receiver, wait_for

RELOAD = str(Path(sys.executable).parent / "reload")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``reload serve`` in its own process group, so SIGKILL reaches all of it."""

    def __init__(self, settings, cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.env = {
            **os.environ,
            "RELOAD_DATABASE_URL": settings.database_url,
            "RELOAD_SECRET_KEY": settings.secret_key,
            "RELOAD_LOG_LEVEL": "warning",
            "RELOAD_WEBHOOK_POLL_SECONDS": "0.05",
            "RELOAD_WEBHOOK_BACKOFF_SECONDS": "0.2",
            "RELOAD_WEBHOOK_BACKOFF_MAX_SECONDS": "0.5",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.cwd / "server.log").open("ab")
        self.process = subprocess.Popen(
            [RELOAD, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.cwd / "server.log").read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("reload serve did not start")

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None


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
    server = Server(settings, tmp_path)
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
