"""Demo data for ``make run``: an organization, an agent, a user with 10 USD who
has connected the demo app, and that connection's access token; and, once, three
weeks of realistic usage (three agents, several models, three users, failed and
refunded charges) so that the account and the developer portal show something.

Secrets are stored hashed, so the demo's plain credentials are kept in a file
beside the embedded database (``.reload/demo.json``), for the sandbox only.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from sqlalchemy import select

from . import demo_usage
from .agents import service as agents
from .config import Settings
from .db import Database
from .ledger.service import Limits
from .oauth import service as oauth
from .organizations import service as organizations
from .organizations.models import organizations as organizations_table
from .users import service as users

DEMO_ORG_EMAIL = "developer@demo.reload.dev"
DEMO_ORG_PASSWORD = "reload-demo-developer"
DEMO_USER_EMAIL = "user@demo.reload.dev"
DEMO_USER_PASSWORD = "reload-demo-user"
DEMO_REDIRECT_URI = "http://127.0.0.1:8000/oauth/demo-callback"
DEMO_BALANCE_NANOS = 10 * 1_000_000_000


def ensure_demo(database: Database, settings: Settings, path: Path) -> dict[str, Any]:
    with database.read() as conn:
        exists = conn.execute(
            select(organizations_table.c.id).where(
                organizations_table.c.owner_email == DEMO_ORG_EMAIL
            )
        ).first()
    info: dict[str, Any] = {}
    if exists is not None and path.exists():
        info = json.loads(path.read_text())
        if info.get("organizationId") != exists.id:
            info = {}
    if not info:
        info = database.write(lambda conn: _create(conn, settings))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)
    database.write(lambda conn: demo_usage.seed(conn, settings, info))
    return info


def _create(conn: Any, settings: Settings) -> dict[str, Any]:
    existing = conn.execute(
        select(organizations_table).where(organizations_table.c.owner_email == DEMO_ORG_EMAIL)
    ).first()
    if existing is None:
        org, secret = organizations.create_organization(
            conn,
            name="Demo AI Studio",
            email=DEMO_ORG_EMAIL,
            password=DEMO_ORG_PASSWORD,
            environment=settings.environment,
        )
    else:  # the file with the secret is gone: issue a new one
        org, secret = existing, organizations.rotate_secret(conn, existing.id)
    organizations.add_redirect_uri(conn, org.id, DEMO_REDIRECT_URI)
    agent_list = agents.list_agents(conn, org.id, include_archived=False)
    agent = agent_list[0] if agent_list else agents.create_agent(conn, org.id, "Research Assistant")
    try:
        user = users.user_by_email(conn, DEMO_USER_EMAIL)
    except Exception:
        user = users.create_user(
            conn,
            email=DEMO_USER_EMAIL,
            password=DEMO_USER_PASSWORD,
            first_name="Ada",
            last_name="Lovelace",
        )
        users.credit(conn, user_id=user.id, amount=DEMO_BALANCE_NANOS, description="Demo funds")
    token = oauth.issue_direct(
        conn,
        organization_id=org.id,
        user_id=user.id,
        scopes=("identity", "usage_reporting", "payment"),
        agent_ids=None,
        limits=Limits(),
        ttl_days=settings.token_ttl_days,
    )
    return {
        "baseUrl": settings.base_url,
        "organizationId": org.id,
        "clientId": org.client_id,
        "clientSecret": secret,
        "agentId": agent.id,
        "developerEmail": DEMO_ORG_EMAIL,
        "developerPassword": DEMO_ORG_PASSWORD,
        "userEmail": DEMO_USER_EMAIL,
        "userPassword": DEMO_USER_PASSWORD,
        "userId": user.id,
        "billingAccountId": user.billing_account_id,
        "accessToken": token["access_token"],
        "redirectUri": DEMO_REDIRECT_URI,
    }


def curl_command(info: dict[str, Any], key: str = "demo-report-1") -> str:
    body = json.dumps(
        {
            "aiAgentId": info["agentId"],
            "description": "Summarised a 12-page PDF",
            "usageType": "token_usage",
            "totalCost": 0.25,
            "llmModel": "gpt-4o",
            "llmProvider": "openai",
            "inputTokens": 12000,
            "outputTokens": 800,
            "chargeUser": True,
            "idempotencyKey": key,
        }
    )
    return (
        f"curl -sS -X POST {info['baseUrl']}/v1/tp/usage \\\n"
        f"  -u {shlex.quote(info['clientId'] + ':' + info['clientSecret'])} \\\n"
        f"  -H {shlex.quote('X-Access-Token: ' + info['accessToken'])} \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(body)}"
    )


def describe(info: dict[str, Any]) -> str:
    return "\n".join(
        [
            "Reload demo",
            f"  Organization     {info['organizationId']}",
            f"  clientId         {info['clientId']}",
            f"  clientSecret     {info['clientSecret']}",
            f"  Agent id         {info['agentId']}",
            f"  Developer portal {info['baseUrl']}/developer  "
            f"({info['developerEmail']} / {info['developerPassword']})",
            f"  User account     {info['baseUrl']}/  "
            f"({info['userEmail']} / {info['userPassword']})",
            f"  Access token     {info['accessToken']}",
            "",
            "Report a charged usage (run it twice: the idempotency key charges once):",
            "",
            curl_command(info),
            "",
        ]
    )
