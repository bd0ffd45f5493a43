"""The operator CLI: each --json command prints exactly one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from reload_billing import migrate
from reload_billing.db import disposable

RELOAD = str(Path(sys.executable).parent / "reload")


def cli(database_url, *args, check=True):
    env = {**os.environ, "RELOAD_DATABASE_URL": database_url, "RELOAD_SECRET_KEY": "cli-test"}
    result = subprocess.run([RELOAD, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def one_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0], parse_float=Decimal)


def test_db_upgrade_moves_an_older_schema_forward_and_keeps_its_data(database_url):
    """A database made by the first release is upgraded in place, rows intact."""
    engine = disposable(database_url)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config(database_url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")  # the test databases start at head
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, first_name, last_name,"
                    " billing_account_id, created_at) VALUES"
                    " ('usr_old', 'old@example.com', 'x', 'O', 'L', 'ba_old', 1)"
                )
            )
        assert migrate.current(database_url) == "0001"
        assert one_json(cli(database_url, "db", "upgrade", "--json"))["revision"] == migrate.head()
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT email, signed_out_at FROM users WHERE id = 'usr_old'")
            ).one()
        assert tuple(row) == ("old@example.com", None)
    finally:
        engine.dispose()


def test_operator_can_set_up_a_billable_connection(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert one_json(cli(database_url, "db", "upgrade", "--json"))["revision"] == migrate.head()
    org = one_json(
        cli(
            database_url,
            "orgs",
            "create",
            "--name",
            "Acme",
            "--email",
            "dev@acme.test",
            "--password",
            "password123",
            "--json",
        )
    )
    assert set(org) == {"organizationId", "clientId", "clientSecret"}
    uri = one_json(
        cli(
            database_url,
            "orgs",
            "add-redirect-uri",
            "--org",
            org["organizationId"],
            "--uri",
            "https://acme.test/cb",
            "--json",
        )
    )
    assert uri["redirectUri"] == "https://acme.test/cb"
    agent = one_json(
        cli(
            database_url,
            "agents",
            "create",
            "--org",
            org["organizationId"],
            "--name",
            "Helper",
            "--json",
        )
    )
    assert agent["name"] == "Helper" and agent["id"].startswith("agt_")
    user = one_json(
        cli(
            database_url,
            "users",
            "create",
            "--email",
            "u@acme.test",
            "--password",
            "password123",
            "--first-name",
            "U",
            "--last-name",
            "Ser",
            "--json",
        )
    )
    assert set(user) == {"id", "email", "billingAccountId"}
    topup = one_json(
        cli(database_url, "users", "credit", "--email", "u@acme.test", "--amount", "12.5", "--json")
    )
    assert topup["amount"] == Decimal("12.5") and topup["balanceAfter"] == Decimal("12.5")
    token = one_json(
        cli(
            database_url,
            "tokens",
            "issue",
            "--org",
            org["organizationId"],
            "--user",
            "u@acme.test",
            "--scopes",
            "identity usage_reporting payment",
            "--agents",
            agent["id"],
            "--json",
        )
    )
    assert token["access_token"].startswith("rat_") and token["aiAgentIds"] == [agent["id"]]
    verified = one_json(cli(database_url, "ledger", "verify", "--json"))
    assert verified["ok"] is True and verified["entriesSum"] == 0


def test_demo_is_created_once_and_printed(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli(database_url, "db", "upgrade")
    first = one_json(cli(database_url, "demo", "--json"))
    again = one_json(cli(database_url, "demo", "--json"))
    assert first == again
    for key in ("clientId", "clientSecret", "agentId", "userEmail", "userPassword", "accessToken"):
        assert first[key]
    text = cli(database_url, "demo").stdout
    assert "curl" in text and first["accessToken"] in text
    assert one_json(cli(database_url, "ledger", "verify", "--json"))["ok"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("users", "credit", "--email", "nobody@x.test", "--amount", "1", "--json"),
        ("users", "credit", "--email", "nobody@x.test", "--amount", "-1", "--json"),
        (
            "orgs",
            "create",
            "--name",
            "A",
            "--email",
            "not-an-email",
            "--password",
            "password123",
            "--json",
        ),
    ],
)
def test_cli_errors_are_one_json_object_and_exit_1(database_url, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli(database_url, *args, check=False)
    assert result.returncode == 1
    assert one_json(result)["status"] == "error"
