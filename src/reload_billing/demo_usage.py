"""Three weeks of demo usage, made once, through the real services.

Every report goes through ``usage.service.report_usage`` with a ``TokenContext``
from ``oauth.service.authenticate_token``, funds through ``ledger.top_up`` and
refunds through ``usage.service.refund``, so the ledger stays consistent. Only
timestamps are then moved into the past (the records', and their ledger
transactions' and entries'), never an amount.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, and_, select, update

from . import db
from .agents import service as agents
from .config import Settings
from .ledger.models import entries, transactions
from .ledger.service import Limits
from .oauth import service as oauth
from .organizations import service as organizations
from .reports import rollups
from .usage import service as usage
from .usage.models import usage_records
from .usage.schemas import RefundRequest, UsageReport
from .users import service as users

SEED_KEY = "demo-seed-"
DAYS = 21
RECORDS = 450
DAY_US = 86_400_000_000

AGENTS = ("Research Assistant", "Code Reviewer", "Support Copilot")
# model, provider, USD per million input tokens, per million output tokens
MODELS = (
    ("gpt-4o", "openai", Decimal("2.5"), Decimal(10)),
    ("gpt-4o-mini", "openai", Decimal("0.15"), Decimal("0.6")),
    ("claude-3-5-sonnet", "anthropic", Decimal(3), Decimal(15)),
    ("gemini-1.5-pro", "google", Decimal("1.25"), Decimal(5)),
)
WORK = {
    "Research Assistant": (
        ("Summarised a {n}-page PDF on {topic}", "PDF summary"),
        ("Compared {n} sources about {topic}", "Source comparison"),
        ("Drafted a literature review on {topic}", "Literature review"),
        ("Answered a follow-up question about {topic}", "Follow-up answer"),
    ),
    "Code Reviewer": (
        ("Reviewed pull request #{n} ({topic})", "PR review"),
        ("Explained a failing test in {topic}", "Test triage"),
        ("Suggested a refactor of the {topic} module", "Refactor plan"),
    ),
    "Support Copilot": (
        ("Drafted a reply to ticket #{n} about {topic}", "Ticket reply"),
        ("Classified {n} incoming tickets", "Ticket triage"),
        ("Translated a help article on {topic}", "Translation"),
    ),
}
TOPICS = (
    "battery recycling",
    "invoice disputes",
    "Kubernetes upgrades",
    "the EU AI Act",
    "password resets",
    "solar storage",
    "billing webhooks",
    "onboarding emails",
    "database indexes",
    "refund policy",
)


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str
    first_name: str
    last_name: str
    funds: Decimal  # at the start
    later_funds: Decimal  # a top-up halfway
    limits: Limits
    share: float


USERS = (
    DemoUser(
        "user@demo.reload.dev",
        "reload-demo-user",
        "Ada",
        "Lovelace",
        Decimal(25),
        Decimal(20),
        Limits(),
        0.5,
    ),
    DemoUser(
        "alan@demo.reload.dev",
        "reload-demo-user",
        "Alan",
        "Turing",
        Decimal(30),
        Decimal(0),
        Limits(per_charge=150_000_000),
        0.3,
    ),
    DemoUser(
        "grace@demo.reload.dev",
        "reload-demo-user",
        "Grace",
        "Hopper",
        Decimal(1),
        Decimal(2),
        Limits(),
        0.2,
    ),
)


def seeded(conn: Connection, organization_id: str) -> bool:
    return (
        conn.execute(
            select(usage_records.c.id).where(
                and_(
                    usage_records.c.organization_id == organization_id,
                    usage_records.c.idempotency_key == f"{SEED_KEY}0",
                )
            )
        ).first()
        is not None
    )


def _backdate(conn: Connection, transaction_id: str, moment: int) -> None:
    conn.execute(
        update(transactions).where(transactions.c.id == transaction_id).values(created_at=moment)
    )
    conn.execute(
        update(entries).where(entries.c.transaction_id == transaction_id).values(created_at=moment)
    )


def _user(conn: Connection, spec: DemoUser) -> Any:
    try:
        return users.user_by_email(conn, spec.email)
    except Exception:
        return users.create_user(
            conn,
            email=spec.email,
            password=spec.password,
            first_name=spec.first_name,
            last_name=spec.last_name,
        )


def _top_up(conn: Connection, user: Any, amount: Decimal, moment: int) -> None:
    if amount <= 0:
        return
    posted = users.credit(
        conn, user_id=user.id, amount=int(amount.scaleb(9)), description="Sandbox funds"
    )
    _backdate(conn, posted.id, moment)


def _moments(rng: random.Random, now: int) -> list[int]:
    """When the demo's usage happened: busier on weekdays and lately."""
    start = now - DAYS * DAY_US
    moments: list[int] = []
    while len(moments) < RECORDS:
        offset = rng.random()
        moment = start + int(offset * (DAYS * DAY_US - 10 * 60 * 1_000_000))
        weekday = db.from_us(moment).weekday()
        weight = (0.45 if weekday >= 5 else 1.0) * (0.55 + 0.45 * offset)
        if rng.random() < weight:
            moments.append(moment)
    return sorted(moments)


def _report(rng: random.Random, agent: Any, index: int, moment: int) -> UsageReport:
    model, provider, price_in, price_out = rng.choices(MODELS, weights=(4, 5, 3, 2))[0]
    description, short = rng.choice(WORK[agent.name])
    text = description.format(n=rng.randint(2, 480), topic=rng.choice(TOPICS))
    body: dict[str, Any] = {
        "aiAgentId": agent.id,
        "description": text,
        "shortDescription": short,
        "idempotencyKey": f"{SEED_KEY}{index}",
        "usageDate": db.from_us(moment).isoformat(),
        "chargeUser": rng.random() < 0.92,
    }
    if rng.random() < 0.12:
        body.update(usageType="api_call", totalCost=Decimal("0.01"), processingTimeMs=420)
        body["shortDescription"] = "Web search"
        body["description"] = f"Searched the web for {rng.choice(TOPICS)}"
        return UsageReport.model_validate(body)
    tokens_in = int(rng.lognormvariate(9.2, 0.8))
    tokens_out = int(rng.lognormvariate(6.9, 0.7))
    cost = (price_in * tokens_in + price_out * tokens_out) / 1_000_000
    body.update(
        usageType="token_usage",
        llmModel=model,
        llmProvider=provider,
        inputTokens=tokens_in,
        outputTokens=tokens_out,
        totalCost=cost.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN),
        processingTimeMs=rng.randint(300, 9000),
        modelParameters={"temperature": Decimal("0.2"), "maxTokens": 2048},
        internalTokensOrCredits=Decimal(tokens_in + tokens_out) / 1000,
    )
    return UsageReport.model_validate(body)


def seed(conn: Connection, settings: Settings, info: dict[str, Any]) -> int:
    """Make the demo's usage unless it exists; returns how many records were made."""
    org = organizations.get_organization(conn, info["organizationId"])
    if seeded(conn, org.id):
        return 0
    rng = random.Random(20_240_501)
    now = db.now_us()
    first = now - DAYS * DAY_US - 3_600_000_000
    existing = {a.name: a for a in agents.list_agents(conn, org.id, include_archived=False)}
    agent_rows = [existing.get(name) or agents.create_agent(conn, org.id, name) for name in AGENTS]
    organization = usage.Organization(org.id, org.environment, org.earnings_account_id)
    tokens: list[oauth.TokenContext] = []
    people = []
    for spec in USERS:
        user = _user(conn, spec)
        people.append(user)
        _top_up(conn, user, spec.funds, first)
        if spec.email == info.get("userEmail") and info.get("accessToken"):
            token = info["accessToken"]
        else:
            token = oauth.issue_direct(
                conn,
                organization_id=org.id,
                user_id=user.id,
                scopes=("identity", "usage_reporting", "payment"),
                agent_ids=None,
                limits=spec.limits,
                ttl_days=settings.token_ttl_days,
            )["access_token"]
        tokens.append(oauth.authenticate_token(conn, org.id, token))
    weights = [spec.share for spec in USERS]
    moments = _moments(rng, now)
    halfway = moments[len(moments) // 2]
    topped_up = False
    charged: list[tuple[str, int]] = []
    for index, moment in enumerate(moments):
        if not topped_up and moment >= halfway:
            for person, spec in zip(people, USERS, strict=True):
                _top_up(conn, person, spec.later_funds, moment - 1)
            topped_up = True
        who = rng.choices(range(len(USERS)), weights=weights)[0]
        agent = rng.choices(agent_rows, weights=(5, 3, 2))[0]
        outcome = usage.report_usage(
            conn,
            organization,
            tokens[who],
            _report(rng, agent, index, moment),
            fee_percent=settings.platform_fee_percent,
        )
        record_id = outcome.record["id"]
        conn.execute(
            update(usage_records)
            .where(usage_records.c.id == record_id)
            .values(created_at=moment, updated_at=moment)
        )
        for transaction in outcome.record["transactions"]:
            _backdate(conn, transaction["id"], moment)
        if outcome.record["charged"]:
            charged.append((record_id, moment))
    for record_id, moment in rng.sample(charged, k=max(1, len(charged) // 30)):
        full = rng.random() < 0.6
        record = usage.get_record(conn, org.id, record_id)
        amount = None if full else (record["chargedAmount"] / 2).quantize(Decimal("0.000001"))
        posted, _ = usage.refund(
            conn,
            organization,
            None,
            record_id,
            RefundRequest(amount=amount, reason="Answer was off-topic; refunded"),
            None,
        )
        later = min(now - 60_000_000, moment + int(rng.uniform(0.5, 30) * 3_600_000_000))
        _backdate(conn, posted["id"], later)
        conn.execute(
            update(usage_records).where(usage_records.c.id == record_id).values(updated_at=later)
        )
    # Records were written into past days: no page may keep totals made before.
    rollups.forget(conn, [org.id, *(person.id for person in people)])
    return len(moments)
