"""``reload webhooks ...`` and ``reload worker``: endpoints, secrets shown once and
never stored, deliveries, re-sending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import endpoints
from tests.webhooks.receiver import Receiver

RELOAD = str(Path(sys.executable).parent / "reload")


def cli(settings, cwd, *args):
    env = {
        **os.environ,
        "RELOAD_DATABASE_URL": settings.database_url,
        "RELOAD_SECRET_KEY": settings.secret_key,
        "RELOAD_LOG_LEVEL": "warning",
    }
    return subprocess.run(
        [RELOAD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def one_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0], parse_float=Decimal)


def test_operator_adds_an_endpoint_delivers_and_resends(settings, db, tenant, tmp_path):
    receiver = Receiver()
    try:
        added = cli(
            settings, tmp_path, "webhooks", "add", "--org", tenant.organization_id,
            "--url", receiver.url, "--events", "user.connected,payment.success", "--json",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        endpoint = one_json(added)
        assert endpoint["id"].startswith("whe_")
        assert endpoint["secret"].startswith("whsec_")
        assert endpoint["events"] == ["user.connected", "payment.success"]
        receiver.secret = endpoint["secret"]

        # The secret is stored nowhere: only a nonce it is derived from.
        with db.read() as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.id == endpoint["id"])).one()
        assert endpoint["secret"] not in " ".join(str(value) for value in row)
        assert (
            webhooks.endpoint_secret(settings.secret_key, row.id, row.secret_nonce)
            == endpoint["secret"]
        )

        bad = cli(
            settings, tmp_path, "webhooks", "add", "--org", tenant.organization_id,
            "--url", receiver.url, "--events", "payment.refunded", "--json",
        )  # fmt: skip
        assert bad.returncode == 1
        assert one_json(bad)["error"]["code"] == "invalid_request"
        assert "payment.refunded" in one_json(bad)["error"]["message"]

        listed = one_json(
            cli(settings, tmp_path, "webhooks", "list", "--org", tenant.organization_id, "--json")
        )
        assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
        assert "secret" not in listed["data"][0]

        db.write(
            lambda conn: webhooks.enqueue(conn, tenant.organization_id, "payment.success", {"n": 1})
        )
        sent = cli(settings, tmp_path, "worker", "--once")
        assert sent.returncode == 0, sent.stderr
        assert [r.signature_ok for r in receiver.receipts] == [True]
        delivery_id = receiver.receipts[0].id

        resent = cli(settings, tmp_path, "webhooks", "resend", "--delivery", delivery_id, "--json")
        assert one_json(resent)["status"] == "pending"
        assert cli(settings, tmp_path, "worker", "--once").returncode == 0
        assert [r.id for r in receiver.receipts] == [delivery_id, delivery_id]

        found = one_json(
            cli(
                settings,
                tmp_path,
                "webhooks",
                "deliveries",
                "--org",
                tenant.organization_id,
                "--json",
            )
        )["data"]
        assert [(d["id"], d["status"]) for d in found] == [(delivery_id, "delivered")]
        assert [a["statusCode"] for a in found[0]["attempts"]] == [200, 200]
        assert all(a["latencyMs"] is not None for a in found[0]["attempts"])

        missing = cli(settings, tmp_path, "webhooks", "resend", "--delivery", "whd_nope", "--json")
        assert missing.returncode == 1 and one_json(missing)["error"]["code"] == "not_found"
    finally:
        receiver.stop()
