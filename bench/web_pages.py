"""The web pages on a big database: the account's and the developer's usage pages
with 1,000,000 usage records.

Seeds one organization (5 agents, 1,000 connected users) and N usage records over
the last 365 days straight into the tables with bulk inserts (SQLAlchemy Core
executemany, in chunks). One "heavy" user holds a fifth of the records. The ledger
is not written: these pages read usage records only. Then starts a live server on
loopback and times, over HTTP, the first page and a deep keyset page of each usage
page, and the CSV of one filtered day; prints medians.

    python bench/web_pages.py [--records 1000000] [--db .bench/web_pages.db] [--reuse]
    python bench/web_pages.py --postgresql   # a throwaway PostgreSQL server instead
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

from reload_billing import db, migrate  # noqa: E402
from reload_billing.agents.models import agents  # noqa: E402
from reload_billing.config import Settings  # noqa: E402
from reload_billing.ledger.models import accounts  # noqa: E402
from reload_billing.oauth.models import connections  # noqa: E402
from reload_billing.organizations import service as organizations  # noqa: E402
from reload_billing.security import hash_password  # noqa: E402
from reload_billing.testing import live  # noqa: E402
from reload_billing.usage.models import usage_records  # noqa: E402
from reload_billing.users.models import users  # noqa: E402

DAY_US = 86_400_000_000
PASSWORD = "bench-password-1"
DEV_EMAIL = "bench-dev@example.com"
HEAVY_EMAIL = "bench-heavy@example.com"
USERS = 1_000
AGENTS = ("Research Assistant", "Code Reviewer", "Support Copilot", "Data Analyst", "Tutor")
MODELS = (
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet", "anthropic"),
    ("gemini-1.5-pro", "google"),
)
CHUNK = 20_000


def seed(url: str, records: int) -> None:
    engine = db.make_engine(url)
    rng = random.Random(42)
    now = db.now_us()
    started = time.perf_counter()
    with engine.begin() as conn:
        org, _secret = organizations.create_organization(
            conn, name="Bench Labs", email=DEV_EMAIL, password=PASSWORD, environment="sandbox"
        )
        agent_ids = [f"agt_bench{i:019d}" for i in range(len(AGENTS))]
        conn.execute(
            insert(agents),
            [
                {
                    "id": agent_ids[i],
                    "organization_id": org.id,
                    "name": name,
                    "status": "active",
                    "created_at": now - 400 * DAY_US,
                }
                for i, name in enumerate(AGENTS)
            ],
        )
        password_hash = hash_password(PASSWORD)
        user_rows, account_rows, connection_rows = [], [], []
        for n in range(USERS):
            user_id = f"usr_bench{n:019d}"
            account_id = f"ba_bench{n:020d}"
            email = HEAVY_EMAIL if n == 0 else f"bench-user-{n}@example.com"
            user_rows.append(
                {
                    "id": user_id,
                    "email": email,
                    "password_hash": password_hash,
                    "first_name": "Bench",
                    "last_name": f"User {n}",
                    "billing_account_id": account_id,
                    "created_at": now - 400 * DAY_US,
                }
            )
            account_rows.append(
                {
                    "id": account_id,
                    "kind": "user_billing",
                    "owner_id": user_id,
                    "balance": 0,
                    "floor": 0,
                    "created_at": now - 400 * DAY_US,
                }
            )
            connection_rows.append(
                {
                    "id": f"con_bench{n:019d}",
                    "user_id": user_id,
                    "organization_id": org.id,
                    "scopes": "identity usage_reporting payment",
                    "agent_ids": None,
                    "status": "active",
                    "created_at": now - 399 * DAY_US + n * 1_000_000,
                }
            )
        conn.execute(insert(users), user_rows)
        conn.execute(insert(accounts), account_rows)
        conn.execute(insert(connections), connection_rows)
    print(f"seeding {records:,} usage records...", flush=True)
    start = now - 365 * DAY_US
    step = 365 * DAY_US // records
    written = 0
    while written < records:
        rows = []
        for i in range(written, min(records, written + CHUNK)):
            moment = start + i * step + rng.randrange(step)
            n = 0 if rng.random() < 0.2 else rng.randrange(1, USERS)
            model, provider = MODELS[i % len(MODELS)]
            tokens_in, tokens_out = rng.randrange(200, 40_000), rng.randrange(50, 3_000)
            cost = tokens_in * 2_500 + tokens_out * 10_000  # nano-dollars
            failed = rng.random() < 0.02
            charged = not failed and rng.random() < 0.95
            fee = cost * 5 // 100 if charged else 0
            rows.append(
                {
                    "id": f"use_bench{i:019d}",
                    "organization_id": org.id,
                    "user_id": f"usr_bench{n:019d}",
                    "connection_id": f"con_bench{n:019d}",
                    "ai_agent_id": agent_ids[rng.randrange(len(agent_ids))],
                    "description": f"Answered question {i} about invoices",
                    "short_description": "Answer",
                    "usage_type": "token_usage" if i % 10 else "api_call",
                    "total_cost": cost,
                    "llm_model": model,
                    "llm_provider": provider,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                    "internal_credits": (tokens_in + tokens_out) * 1_000_000,
                    "charge_user": True,
                    "idempotency_key": None,
                    "usage_date": moment,
                    "status": "failed" if failed else "completed",
                    "charged": charged,
                    "charged_amount": cost if charged else 0,
                    "refunded_amount": cost if charged and rng.random() < 0.01 else 0,
                    "platform_fee": fee,
                    "failure_reason": "insufficient_balance" if failed else None,
                    "attempts": 1,
                    "created_at": moment,
                    "updated_at": moment,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(usage_records), rows)
        written += len(rows)
        if written % 200_000 == 0 or written == records:
            print(f"  {written:,} in {time.perf_counter() - started:.0f} s", flush=True)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)


def sign_in(client: httpx.Client, path: str, email: str) -> None:
    page = client.get(path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text[:500]
    answer = client.post(
        path, data={"csrf_token": token.group(1), "email": email, "password": PASSWORD}
    )
    assert answer.status_code == 303, answer.text[:500]


def deep_cursor(url: str, *, user_id: str | None, org_id: str | None, offset: int) -> str:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        query = select(usage_records.c.created_at, usage_records.c.id)
        if user_id is not None:
            query = query.where(usage_records.c.user_id == user_id)
        if org_id is not None:
            query = query.where(usage_records.c.organization_id == org_id)
        row = conn.execute(
            query.order_by(usage_records.c.created_at.desc(), usage_records.c.id.desc())
            .offset(offset)
            .limit(1)
        ).one()
    engine.dispose()
    return f"{row.created_at}.{row.id}"


def timed(client: httpx.Client, path: str, rounds: int) -> tuple[float, float, int, int]:
    for _ in range(2):
        client.get(path)
    samples = []
    size = status = 0
    for _ in range(rounds):
        began = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        size, status = len(answer.content), answer.status_code
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1], size, status


def measure(url: str, rounds: int) -> list[tuple[str, str, float, float, int, int]]:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        org_id = conn.execute(select(func.min(usage_records.c.organization_id))).scalar_one()
        heavy = conn.execute(select(users.c.id).where(users.c.email == HEAVY_EMAIL)).scalar_one()
        heavy_count = conn.execute(
            select(func.count()).where(usage_records.c.user_id == heavy)
        ).scalar_one()
        org_count = conn.execute(select(func.count()).select_from(usage_records)).scalar_one()
    engine.dispose()
    day = db.from_us(db.now_us() - 40 * DAY_US).strftime("%Y-%m-%d")
    user_deep = deep_cursor(url, user_id=heavy, org_id=None, offset=heavy_count // 2)
    org_deep = deep_cursor(url, user_id=None, org_id=org_id, offset=org_count // 2)
    print(f"heavy user: {heavy_count:,} records; organization: {org_count:,} records")
    settings = Settings(database_url=url, secret_key="bench-secret-key", environment="sandbox")
    server = live.start(settings)
    results = []
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            sign_in(client, "/signin", HEAVY_EMAIL)
            sign_in(client, "/developer/signin", DEV_EMAIL)
            # The first view of each side makes the daily totals of the past 29 days
            # (then kept): timed once, apart.
            for side, path in (("user", "/usage"), ("developer", "/developer/usage")):
                began = time.perf_counter()
                status = client.get(path).status_code
                took = (time.perf_counter() - began) * 1000
                print(
                    f"{side:9} {path + ' (first view)':60} {status}              "
                    f"once   {took:7.1f} ms",
                    flush=True,
                )
            cases = [
                ("user", "/usage"),
                ("user", f"/usage?after={user_deep}"),
                ("user", f"/usage.csv?from={day}&to={day}"),
                ("user", "/"),
                ("developer", "/developer/usage"),
                ("developer", f"/developer/usage?after={org_deep}"),
                ("developer", f"/developer/usage.csv?from={day}&to={day}"),
                ("developer", f"/developer/usage?agent=agt_bench{0:019d}&status=failed"),
                ("developer", "/developer"),
                ("developer", "/developer/users"),
            ]
            for side, path in cases:
                median, p90, size, status = timed(client, path, rounds)
                results.append((side, path, median, p90, size, status))
                print(
                    f"{side:9} {path[:60]:60} {status} {size:>9,} B  "
                    f"median {median:7.1f} ms  p90 {p90:7.1f} ms",
                    flush=True,
                )
    finally:
        server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=ROOT / ".bench" / "web_pages.db")
    parser.add_argument("--reuse", action="store_true", help="keep an existing seeded file")
    parser.add_argument("--postgresql", action="store_true", help="a throwaway PostgreSQL")
    parser.add_argument("--database-url", help="an existing, empty database instead")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(machine())
    server = None
    if args.database_url:
        url = args.database_url
    elif args.postgresql:
        from reload_billing.testing import postgres

        server = postgres.start()
        url = server.url()
    else:
        url = f"sqlite:///{args.db}"
        if args.db.exists() and not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    try:
        if args.database_url or args.postgresql:
            fresh = not args.reuse
        else:
            fresh = not args.reuse or not args.db.exists()
        migrate.upgrade(url)
        if fresh:
            seed(url, args.records)
        measure(url, args.rounds)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
