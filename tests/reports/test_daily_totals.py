"""The pages' totals come from daily totals kept for past days; whatever happens to
past records afterwards (a late refund, a retried charge), they must equal a fresh
sum of the records. On both databases."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from reload_billing.db import now_us
from reload_billing.organizations import service as organizations
from reload_billing.reports import rollups
from reload_billing.reports import service as reports
from reload_billing.reports.models import usage_daily_days
from reload_billing.reports.rollups import Scope
from reload_billing.usage.models import usage_records
from reload_billing.users import service as users
from tests.helpers import post
from tests.web.helpers import report

DAY_US = 86_400_000_000
FIELDS = (
    "records",
    "cost",
    "charged",
    "refunded",
    "platform_fee",
    "fee_returned",
    "failed",
    "tokens",
    "charged_records",
    "refunded_records",
)


def fresh(db, query: reports.UsageQuery, start_day: int, end_day: int) -> dict[object, dict]:
    """Totals straight from the records, summed here: overall, per day, per agent."""
    with db.read() as conn:
        rows = conn.execute(
            select(usage_records).where(
                *query.conditions(),
                usage_records.c.created_at >= start_day * DAY_US,
                usage_records.c.created_at < (end_day + 1) * DAY_US,
            )
        ).all()
    sums: dict[object, dict] = {}
    for row in rows:
        returned = (
            row.platform_fee * row.refunded_amount // row.charged_amount
            if row.refunded_amount
            else 0
        )
        part = {
            "records": 1,
            "cost": row.total_cost,
            "charged": row.charged_amount,
            "refunded": row.refunded_amount,
            "platform_fee": row.platform_fee,
            "fee_returned": returned,
            "failed": int(row.status == "failed"),
            "tokens": row.total_tokens or 0,
            "charged_records": int(bool(row.charged)),
            "refunded_records": int(row.refunded_amount > 0),
        }
        for key in ("all", ("day", row.created_at // DAY_US), ("agent", row.ai_agent_id)):
            into = sums.setdefault(key, dict.fromkeys(FIELDS, 0))
            for name in FIELDS:
                into[name] += part[name]
    return sums


def as_dict(totals: reports.Totals) -> dict:
    return {name: getattr(totals, name) for name in FIELDS}


def assert_same(summary: reports.Summary, expected: dict) -> None:
    assert as_dict(summary.total) == expected.get("all", dict.fromkeys(FIELDS, 0))
    for day in summary.days:
        assert as_dict(day) == expected.get(("day", day.key), dict.fromkeys(FIELDS, 0)), day.key
    for agent in summary.agents:
        assert as_dict(agent) == expected[("agent", agent.key)]


def kept_days(db, scope_id: str) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count()).where(usage_daily_days.c.scope_id == scope_id)
            ).scalar_one()
        )


def test_kept_totals_follow_late_refunds_and_retried_charges(live_server, make_tenant, db):
    tenant = make_tenant(balance="3")
    with tenant.client(live_server.url) as api:
        made = [
            report(
                api,
                tenant.agent_id,
                cost,
                description=f"R{n}",
                inputTokens=100 * n,
                outputTokens=n,
                idempotencyKey=f"key-{n}",
            )
            for n, cost in enumerate(["1", "0.5", "0.25", "0.125", "5"])
        ]
    assert made[-1]["status"] == "failed"
    now = now_us()
    today = now // DAY_US
    # Spread the records over the last four days, as if reported then.
    moments = [
        now - 4 * DAY_US,
        now - 3 * DAY_US,
        now - 3 * DAY_US + 1,
        now - 2 * DAY_US,
        now - 2 * DAY_US,
    ]

    def backdate(conn):
        for record, moment in zip(made, moments, strict=True):
            conn.execute(
                update(usage_records)
                .where(usage_records.c.id == record["id"])
                .values(created_at=moment)
            )
        rollups.forget(conn, [tenant.organization_id, tenant.user_id])

    db.write(backdate)
    with db.read() as conn:
        user = users.get_user(conn, tenant.user_id)
        org = organizations.get_organization(conn, tenant.organization_id)
    scopes = [
        (Scope.of_organization(org), reports.UsageQuery(organization_id=org.id)),
        (Scope.of_user(user), reports.UsageQuery(user_id=user.id)),
        (
            Scope.of_user(user),
            reports.UsageQuery(user_id=user.id, organization_id=org.id, status="completed"),
        ),
    ]
    start, end = today - 6, today

    def check() -> None:
        for scope, query in scopes:
            summary = reports.summary(db, scope, query, start_day=start, end_day=end)
            assert_same(summary, fresh(db, query, start, end))

    check()
    assert kept_days(db, org.id) >= 6  # the past days were summed once and kept
    assert kept_days(db, user.id) >= 6
    with tenant.client(live_server.url) as api:
        # A late partial refund of a three-day-old record.
        answer = post(
            api, f"/v1/tp/usage-reports/{made[1]['id']}/refund", {"amount": Decimal("0.2")}
        )
        assert answer.status_code in (200, 201), answer.text
        check()
        # The failed one is retried after a top-up and charged now, on its old day.
        db.write(
            lambda conn: users.credit(conn, user_id=user.id, amount=10**10, description="top-up")
        )
        retried = post(
            api,
            "/v1/tp/usage",
            {
                "aiAgentId": tenant.agent_id,
                "description": "R4",
                "totalCost": Decimal("5"),
                "chargeUser": True,
                "inputTokens": 400,
                "outputTokens": 4,
                "idempotencyKey": "key-4",
            },
        )
        assert retried.status_code == 201, retried.text
        assert retried.json()["data"]["status"] == "completed"
        check()
        # Today's records are summed live, never kept.
        report(api, tenant.agent_id, "0.75", description="today")
        check()


def test_a_scope_far_behind_the_ledger_is_made_again(live_server, tenant, db, monkeypatch):
    with tenant.client(live_server.url) as api:
        record = report(api, tenant.agent_id, "1")
    past = now_us() - 2 * DAY_US

    def backdate(conn):
        conn.execute(
            update(usage_records).where(usage_records.c.id == record["id"]).values(created_at=past)
        )
        rollups.forget(conn, [tenant.user_id])

    db.write(backdate)
    with db.read() as conn:
        user = users.get_user(conn, tenant.user_id)
    scope, query = Scope.of_user(user), reports.UsageQuery(user_id=user.id)
    today = now_us() // DAY_US
    first = reports.summary(db, scope, query, start_day=today - 3, end_day=today)
    assert first.total.charged == 10**9
    monkeypatch.setattr(rollups, "RESET_AFTER", 0)
    with tenant.client(live_server.url) as api:
        assert post(api, f"/v1/tp/usage-reports/{record['id']}/refund", {}).status_code in (
            200,
            201,
        )
    again = reports.summary(db, scope, query, start_day=today - 3, end_day=today)
    assert again.total.refunded == 10**9
    assert_same(again, fresh(db, query, today - 3, today))


@pytest.mark.parametrize("minutes_after_midnight, live", [(2, -1), (30, 0)])
def test_the_first_minutes_of_a_day_keep_yesterday_live(minutes_after_midnight, live):
    midnight = (now_us() // DAY_US) * DAY_US
    moment = midnight + minutes_after_midnight * 60_000_000
    assert rollups.first_live_day(moment) == moment // DAY_US + live
