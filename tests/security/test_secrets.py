"""Secrets: stored only as hashes (or not at all), compared in constant time, never
logged.

A full run against a real ``reload serve`` at log level debug (organization and
tokens from the CLI, the OAuth flow, charges, refunds, a rotated client secret, a
webhook endpoint whose deliveries fail, revocations, and every kind of wrong
secret) must leave none of its secrets in the server's output, nor in plain text
anywhere in the database.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from pathlib import Path

import httpx
from sqlalchemy import String, Text, select

from reload_billing import db as dbmod
from reload_billing.db import Database
from tests.helpers import post, usage_body
from tests.oauth.test_oauth_flow import csrf, pkce_pair
from tests.reliability.servers import SECRET_KEY, ServerProcess, free_port, run_cli

SRC = Path(__file__).resolve().parents[2] / "src" / "reload_billing"
REDIRECT = "https://app.example.com/callback"


def cli_json(database_url: str, *args: str, outputs: list[str]) -> dict:
    result = run_cli(database_url, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outputs.append(result.stderr)  # stdout shows a new secret once, on purpose
    return json.loads(result.stdout)


def page_csrf(browser: httpx.Client, path: str) -> str:
    return csrf(browser.get(path).text)


def full_run(server: ServerProcess, database_url: str) -> tuple[list[str], list[str]]:
    """Everything a deployment does with secrets; returns (secrets, other outputs)."""
    found: list[str] = [SECRET_KEY]
    outputs: list[str] = []
    owner_password = "owner-" + secrets.token_urlsafe(12)
    user_password = "user-" + secrets.token_urlsafe(12)
    org = cli_json(
        database_url,
        "orgs",
        "create",
        "--name",
        "Acme",
        "--email",
        "owner@example.com",
        "--password",
        owner_password,
        outputs=outputs,
    )
    agent = cli_json(
        database_url,
        "agents",
        "create",
        "--org",
        org["organizationId"],
        "--name",
        "Bot",
        outputs=outputs,
    )
    cli_json(
        database_url,
        "orgs",
        "add-redirect-uri",
        "--org",
        org["organizationId"],
        "--uri",
        REDIRECT,
        outputs=outputs,
    )
    cli_json(
        database_url,
        "users",
        "create",
        "--email",
        "user@example.com",
        "--password",
        user_password,
        "--first-name",
        "Ursula",
        "--last-name",
        "Franklin",
        outputs=outputs,
    )
    cli_json(
        database_url,
        "users",
        "credit",
        "--email",
        "user@example.com",
        "--amount",
        "20",
        outputs=outputs,
    )
    issued = cli_json(
        database_url,
        "tokens",
        "issue",
        "--org",
        org["organizationId"],
        "--user",
        "user@example.com",
        outputs=outputs,
    )
    found += [owner_password, user_password, org["clientSecret"], issued["access_token"]]
    client_id, client_secret, token = org["clientId"], org["clientSecret"], issued["access_token"]
    url = server.url

    # The developer portal: a webhook endpoint that cannot be reached, a rotated secret.
    hook = f"http://127.0.0.1:{free_port()}/hook"
    with httpx.Client(base_url=url, follow_redirects=False) as portal:
        signed = portal.post(
            "/developer/signin",
            data={
                "email": "owner@example.com",
                "password": owner_password,
                "csrf_token": page_csrf(portal, "/developer/signin"),
            },
        )
        assert signed.status_code == 303
        found += [portal.cookies.get("reload_session") or ""]
        made = portal.post(
            "/developer/webhooks",
            data={
                "url": hook,
                "events": ["payment.success", "payment.failed", "user.disconnected"],
                "csrf_token": page_csrf(portal, "/developer/webhooks"),
            },
        )
        webhook_secret = re.search(r"(whsec_[A-Za-z0-9_\-]+)", made.text)
        assert webhook_secret, made.text[:2000]
        found.append(webhook_secret.group(1))
        # Charges now, so that the worker tries (and fails) to deliver their events.
        with httpx.Client(
            base_url=url, auth=(client_id, client_secret), headers={"X-Access-Token": token}
        ) as api:
            charged = post(
                api, "/v1/tp/usage", usage_body(agent["id"], "1.25", idempotencyKey="k-1")
            )
            assert charged.status_code == 201, charged.text
            record = charged.json()["data"]["id"]
            assert (
                post(
                    api, "/v1/tp/usage", usage_body(agent["id"], "1.25", idempotencyKey="k-1")
                ).status_code
                == 201
            )
            assert post(api, "/v1/tp/usage", usage_body(agent["id"], "500")).status_code == 402
            assert (
                post(api, f"/v1/tp/usage-reports/{record}/refund", {"amount": "0.25"}).status_code
                == 201
            )
            assert (
                post(
                    api,
                    "/v1/tp/preview-charge",
                    {"aiAgentId": agent["id"], "amount": 1, "description": "x"},
                ).status_code
                == 200
            )
            assert api.get("/v1/tp/usage-reports").status_code == 200
            assert api.get("/v1/tp/user").status_code == 200
        rotated = portal.post(
            "/developer/credentials/rotate",
            data={"csrf_token": page_csrf(portal, "/developer/credentials")},
        )
        new_secret = re.search(r'data-testid="client-secret">([^<]+)<', rotated.text)
        assert new_secret, rotated.text[:2000]
        found.append(new_secret.group(1))
    old_secret, client_secret = client_secret, new_secret.group(1)

    # The OAuth flow of a second user, who signs up on the way.
    verifier, challenge = pkce_pair()
    second_password = "second-" + secrets.token_urlsafe(12)
    found += [verifier, second_password]
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "identity usage_reporting payment",
        "state": "s-" + secrets.token_hex(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    next_url = "/oauth/authorize?" + httpx.QueryParams(params).__str__()
    with httpx.Client(base_url=url, follow_redirects=False) as browser:
        browser.post(
            "/signup",
            data={
                "first_name": "Alan",
                "last_name": "Kay",
                "email": "alan@example.com",
                "password": second_password,
                "next": next_url,
                "csrf_token": page_csrf(browser, "/signup"),
            },
        )
        found.append(browser.cookies.get("reload_session") or "")
        consent = browser.get(next_url)
        answer = browser.post(
            "/oauth/authorize",
            data={**params, "decision": "approve", "csrf_token": csrf(consent.text)},
        )
        code = httpx.URL(answer.headers["location"]).params["code"]
        found.append(code)
        # A wrong password for an account that exists.
        browser.post(
            "/signin",
            data={
                "email": "alan@example.com",
                "password": user_password,
                "csrf_token": page_csrf(browser, "/signin"),
            },
        )
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    with httpx.Client(base_url=url) as anonymous:
        granted = post(anonymous, "/v1/tp/token", exchange)
        assert granted.status_code == 200, granted.text
        second_token = granted.json()["data"]["access_token"]
        found.append(second_token)
        assert post(anonymous, "/v1/tp/token", exchange).status_code == 400  # replayed code
        assert (
            post(anonymous, "/v1/tp/token", {**exchange, "code_verifier": "v" * 50}).status_code
            == 400
        )
    # Wrong secrets of every kind.
    for auth, access in (
        ((client_id, old_secret), second_token),
        ((client_id, client_secret + "x"), second_token),
        ((client_id, client_secret), second_token + "x"),
        ((client_id, client_secret), token),  # valid shape, other organization's? no: revoked below
    ):
        with httpx.Client(base_url=url, auth=auth, headers={"X-Access-Token": access}) as api:
            api.get("/v1/tp/user")
            post(api, "/v1/tp/usage", usage_body(agent["id"]))
    with httpx.Client(base_url=url, auth=(client_id, client_secret)) as api:
        assert post(api, "/v1/tp/introspect-token", {"token": second_token}).status_code == 200
        assert (
            post(api, "/v1/tp/revoke-token", {"token": second_token, "reason": "test"}).status_code
            == 200
        )
        refused = api.get("/v1/tp/user", headers={"X-Access-Token": second_token})
        assert refused.status_code == 401
        api.get("/v1/tp/user", headers={"Authorization": "Basic " + old_secret})
    return [s for s in found if s], outputs


def test_no_secret_reaches_the_logs_or_the_database(backend, database_url, tmp_path):
    log = tmp_path / "server.log"
    server = ServerProcess(
        database_url,
        log,
        env={
            "RELOAD_LOG_LEVEL": "debug",
            "RELOAD_WEBHOOK_POLL_SECONDS": "0.1",
            "RELOAD_WEBHOOK_BACKOFF_SECONDS": "0.1",
            "RELOAD_WEBHOOK_TIMEOUT_SECONDS": "1",
        },
    )
    server.start()
    try:
        found, outputs = full_run(server, database_url)
        # Let the webhook worker fail a few deliveries (and log it).
        import time

        time.sleep(1.5)
    finally:
        server.stop()
    text = log.read_text(errors="replace") + "\n".join(outputs)
    assert "Application startup complete" in text  # the log was captured at all
    leaked = [s[:12] + "..." for s in found if s in text]
    assert not leaked, f"secrets in the logs: {leaked}"
    assert not in_database(database_url, found)


def in_database(database_url: str, found: list[str]) -> list[str]:
    """Secrets stored in plain text in any text column of any table."""
    database = Database(database_url)
    stored: list[str] = []
    try:
        with database.read() as conn:
            for table in dbmod.metadata.sorted_tables:
                columns = [c for c in table.columns if isinstance(c.type, String | Text)]
                if not columns:
                    continue
                for row in conn.execute(select(*columns)).all():
                    for value in row:
                        if isinstance(value, str):
                            stored += [f"{table.name}: {s[:12]}..." for s in found if s in value]
    finally:
        database.close()
    return stored


SECRET_NAME = re.compile(
    r"secret|password|token|signature|verifier|challenge|csrf|nonce|code_hash", re.IGNORECASE
)
NOT_SECRET = re.compile(r"_(id|type|at|ttl|count|status)$|^token_(id|type)$")


def _last_name(node: ast.AST) -> str:
    """The name a value goes by: ``row.client_secret_hash`` -> ``client_secret_hash``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.slice)
    return ""


def _is_sql(node: ast.AST) -> bool:
    text = ast.unparse(node)
    return ".c." in text or "bindparam(" in text


def test_secrets_are_compared_only_in_constant_time():
    """No ``==``/``!=``/``in`` between a secret and anything but None or a literal:
    such comparisons go through hmac.compare_digest (or a hash lookup)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(op, ast.Constant) for op in operands):
                continue
            if not all(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
                continue
            if any(_is_sql(op) for op in operands):
                continue  # builds SQL: a lookup by hash, not a comparison in Python
            names = [_last_name(op) for op in operands]
            if any(SECRET_NAME.search(n) and not NOT_SECRET.search(n) for n in names):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)
    # And the helpers that compare secrets do use hmac.compare_digest.
    for module in ("ids.py", "oauth/service.py", "web/pages.py"):
        assert "hmac.compare_digest" in (SRC / module).read_text(), module
