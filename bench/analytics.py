"""`make bench` (analytics): GET /v1/tp/reports/usage on 1 million usage records.

For each database (a SQLite file, then PostgreSQL started from the installed
binaries): migrate, seed one organization with 20 agents, 2,000 users, 8 models and
1,000,000 usage records spread over one month (every record falls inside the
reported period: the worst case for a monthly report), 1% of them refunded; then
time reports over HTTP against a live server on loopback and print the medians.

    python bench/analytics.py [--records 1000000] [--repeat 7] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

from reload_billing import db as dbmod  # noqa: E402
from reload_billing import migrate  # noqa: E402
from reload_billing.agents import service as agents  # noqa: E402
from reload_billing.config import Settings  # noqa: E402
from reload_billing.db import Database  # noqa: E402
from reload_billing.ledger.models import transactions  # noqa: E402
from reload_billing.money import refund_fee_share, split_fee  # noqa: E402
from reload_billing.organizations import service as organizations  # noqa: E402
from reload_billing.reports import analytics, analytics_rollup  # noqa: E402
from reload_billing.reports.schemas import parse_query  # noqa: E402
from reload_billing.testing import live, postgres  # noqa: E402
from reload_billing.usage.models import usage_records  # noqa: E402

MONTH_START = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 31
CHUNK = 20_000
MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("o3", "openai"),
    ("claude-sonnet-4", "anthropic"),
    ("claude-haiku-4", "anthropic"),
    ("gemini-2.5-pro", "google"),
    ("gemini-2.5-flash", "google"),
    (None, None),
]
USAGE_TYPES = ["token_usage", "api_call", "image_generation"]
# name -> query parameters; every report covers the month (startDate..endDate).
REPORTS: dict[str, dict[str, str]] = {
    "day,aiAgentId (the target)": {"groupBy": "day,aiAgentId"},
    "month": {"groupBy": "month"},
    "llmProvider,llmModel": {"groupBy": "llmProvider,llmModel"},
    "day,aiAgentId,usageType": {"groupBy": "day,aiAgentId,usageType"},
    "one agent, by day": {"groupBy": "day", "aiAgentId": "{agent}"},
    "status=failed, by day": {"groupBy": "day", "status": "failed"},
    "hour": {"groupBy": "hour"},
    "userId": {"groupBy": "userId"},
    "one user, by day": {"groupBy": "day", "userId": "usr_bench00007"},
}
PERIOD = {"startDate": "2026-03-01", "endDate": "2026-03-31"}


def seed(url: str, records: int) -> dict[str, Any]:
    """The organization, its agents, and the usage records (inserted in chunks)."""
    database = Database(url)
    try:
        org, secret = database.write(
            lambda conn: organizations.create_organization(
                conn, name="Bench", email="bench@example.com", password="bench-password-1",
                environment="sandbox",
            )
        )  # fmt: skip
        agent_ids = database.write(
            lambda conn: [agents.create_agent(conn, org.id, f"Agent {i}").id for i in range(20)]
        )
        user_ids = [f"usr_bench{i:05d}" for i in range(2000)]
        rng = random.Random(7)
        start_us = dbmod.to_us(MONTH_START)
        span_us = DAYS * 86_400_000_000
        started = time.perf_counter()
        for first in range(0, records, CHUNK):
            rows, refunds = [], []
            for n in range(first, min(first + CHUNK, records)):
                rows.append(_record(n, rng, org.id, agent_ids, user_ids, start_us, span_us))
                if rows[-1]["refunded_amount"]:
                    refunds.append(_refund(rows[-1]))
            database.write(lambda conn, rows=rows, refunds=refunds: _insert(conn, rows, refunds))
        seconds = time.perf_counter() - started
        # Records written straight into the table: make their daily rows (the server
        # keeps them current itself as reports arrive).
        database.write(lambda conn: analytics_rollup.rebuild(conn, org.id))
        if not database.is_sqlite:
            engine = database.engine.execution_options(isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            with database.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
        return {
            "organization_id": org.id,
            "client_id": org.client_id,
            "client_secret": secret,
            "agent_id": agent_ids[0],
            "seed_seconds": seconds,
        }
    finally:
        database.close()


def _record(
    n: int, rng: random.Random, org_id: str, agent_ids: list[str], user_ids: list[str],
    start_us: int, span_us: int,
) -> dict[str, Any]:  # fmt: skip
    model, provider = rng.choice(MODELS)
    cost = rng.randrange(1_000, 50_000_000)  # 0.000001 to 0.05 USD, in nano-dollars
    failed = rng.random() < 0.03
    charged = not failed and rng.random() < 0.9
    fee = split_fee(cost, __import__("decimal").Decimal(5)) if charged else 0
    refunded = cost // 2 if charged and rng.random() < 0.01 else 0
    input_tokens = rng.randrange(0, 4000)
    output_tokens = rng.randrange(0, 1000)
    usage_date = start_us + rng.randrange(span_us)
    return {
        "id": f"use_bench{n:09d}",
        "organization_id": org_id,
        "user_id": rng.choice(user_ids),
        "connection_id": None,
        "ai_agent_id": rng.choice(agent_ids),
        "description": "Answered a question about invoices",
        "short_description": None,
        "usage_type": rng.choice(USAGE_TYPES),
        "total_cost": cost,
        "cost_before_tax": None,
        "tax_amount": None,
        "tax_rate": None,
        "llm_model": model,
        "llm_provider": provider,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "processing_time_ms": float(rng.randrange(50, 5000)),
        "model_parameters": None,
        "internal_credits": None,
        "charge_user": True,
        "idempotency_key": None,
        "request_hash": None,
        "metadata": None,
        "usage_date": usage_date,
        "status": "failed" if failed else "completed",
        "charged": charged,
        "charged_amount": cost if charged else 0,
        "refunded_amount": refunded,
        "platform_fee": fee,
        "failure_reason": "insufficient_balance" if failed else None,
        "attempts": 1,
        "created_at": usage_date,
        "updated_at": usage_date,
    }


def _refund(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "txn_" + record["id"],
        "kind": "refund",
        "amount": record["refunded_amount"],
        "platform_fee": refund_fee_share(
            record["charged_amount"], record["platform_fee"], 0, record["refunded_amount"]
        ),
        "usage_record_id": record["id"],
        "organization_id": record["organization_id"],
        "user_id": record["user_id"],
        "billing_account_id": None,
        "description": "bench refund",
        "idempotency_key": None,
        "created_at": record["created_at"],
    }


def _insert(conn: Any, rows: list[dict[str, Any]], refunds: list[dict[str, Any]]) -> None:
    conn.execute(insert(usage_records), rows)
    if refunds:
        conn.execute(insert(transactions), refunds)


def time_reports(url: str, seeded: dict[str, Any], repeat: int) -> dict[str, float]:
    settings = Settings(
        database_url=url, secret_key="bench-secret-key", webhook_worker=False, log_level="warning"
    )
    server = live.start(settings)
    auth = base64.b64encode(f"{seeded['client_id']}:{seeded['client_secret']}".encode()).decode()
    medians: dict[str, float] = {}
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Basic {auth}"}, timeout=300
        ) as client:
            for name, wanted in REPORTS.items():
                params = {
                    **PERIOD,
                    **{k: v.format(agent=seeded["agent_id"]) for k, v in wanted.items()},
                }
                query = parse_query({k: [v] for k, v in params.items()})
                source = "daily rows" if analytics.uses_daily_rows(query) else "records"
                client.get("/v1/tp/reports/usage", params=params).raise_for_status()  # warm up
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    response = client.get("/v1/tp/reports/usage", params=params)
                    times.append(time.perf_counter() - started)
                    response.raise_for_status()
                body = response.json()
                medians[name] = statistics.median(times)
                print(
                    f"  {name:<28} [{source:<10}] median {medians[name] * 1000:8.1f} ms  "
                    f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; "
                    f"{len(body['data'])} rows, {body['totals']['records']} records)",
                    flush=True,
                )
    finally:
        server.stop()
    medians["day,aiAgentId from the records"] = plain_group_by(url, seeded, repeat)
    return medians


def plain_group_by(url: str, seeded: dict[str, Any], repeat: int) -> float:
    """The target report summed from the records themselves (what it costs without
    the daily rows), through the service on one connection."""
    database = Database(url)
    query = parse_query({"groupBy": ["day,aiAgentId"], **{k: [v] for k, v in PERIOD.items()}})
    times = []
    try:
        for _ in range(max(1, min(repeat, 3))):
            with database.read() as conn:
                started = time.perf_counter()
                found = analytics.usage_report(
                    conn, seeded["organization_id"], query, source="records"
                )
                times.append(time.perf_counter() - started)
    finally:
        database.close()
    name = "day,aiAgentId from the records"
    print(
        f"  {name:<28} [records   ] median {statistics.median(times) * 1000:8.1f} ms  "
        f"(service, no HTTP; {len(found.rows)} rows, {found.totals['records']} records)",
        flush=True,
    )
    return statistics.median(times)


def run_backend(backend: str, records: int, repeat: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="reload-bench-analytics-"))
    pg = None
    try:
        if backend == "sqlite":
            url = f"sqlite:///{tmp / 'analytics.db'}"
        else:
            pg = postgres.start()
            url = pg.url()
        migrate.upgrade(url)
        print(f"{backend}: seeding {records:,} usage records ...", flush=True)
        seeded = seed(url, records)
        print(
            f"{backend}: seeded in {seeded['seed_seconds']:.0f} s; reports over HTTP:", flush=True
        )
        return {"medians": time_reports(url, seeded, repeat)}
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results = {}
    for backend in ("sqlite", "postgresql"):
        if args.only and backend != args.only:
            continue
        results[backend] = run_backend(backend, args.records, args.repeat)
    print("\nmedian ms per report over HTTP (" + f"{args.records:,} records):")
    names = [*REPORTS, "day,aiAgentId from the records"]
    print(f"  {'report':<28}" + "".join(f"{b:>14}" for b in results))
    for name in names:
        cells = "".join(f"{results[b]['medians'][name] * 1000:14.1f}" for b in results)
        print(f"  {name:<28}{cells}")


if __name__ == "__main__":
    main()
