"""GET /v1/tp/reports/usage: sums grouped by up to three keys, checked against a
brute-force sum of the records made by the real services over random data."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from reload_billing.ledger.models import transactions
from reload_billing.ledger.service import Limits
from reload_billing.money import from_nanos, to_nanos
from reload_billing.oauth import service as oauth
from reload_billing.reports import analytics, analytics_rollup
from reload_billing.reports.models import usage_analytics_daily
from reload_billing.reports.schemas import GROUP_KEYS, METRICS, parse_query
from reload_billing.usage import service as usage
from reload_billing.usage.models import usage_records
from reload_billing.usage.schemas import RefundRequest, UsageReport
from reload_billing.users import service as users
from reload_billing.validation import parse
from tests.helpers import assert_ledger_ok

NOW = datetime.now(UTC)
MODELS = [("gpt-4o", "openai"), ("claude-sonnet-4", "anthropic"), ("", "local"), (None, None)]
TYPES = ["token_usage", "api_call", "API Call", None]


def _organization(conn, organization_id):
    from reload_billing.organizations import service as organizations

    row = organizations.get_organization(conn, organization_id)
    return usage.Organization(row.id, row.environment, row.earnings_account_id)


def _random_report(rng: random.Random, agent_id: str, key: str | None) -> dict[str, Any]:
    model, provider = rng.choice(MODELS)
    body: dict[str, Any] = {
        "aiAgentId": agent_id,
        "description": "Random work",
        "totalCost": Decimal(rng.randrange(0, 2_000_000)) / 1_000_000,
        "chargeUser": rng.random() < 0.7,
        # Days back from now, in whole seconds: several months, so several months
        # and many days and hours.
        "usageDate": NOW - timedelta(seconds=rng.randrange(0, 95 * 86_400)),
    }
    if model is not None:
        body["llmModel"], body["llmProvider"] = model, provider
    usage_type = rng.choice(TYPES)
    if usage_type is not None:
        body["usageType"] = usage_type
    if rng.random() < 0.8:
        body["inputTokens"] = rng.randrange(0, 5000)
        body["outputTokens"] = rng.randrange(0, 2000)
    if rng.random() < 0.7:
        body["processingTimeMs"] = Decimal(rng.randrange(0, 9_000_000)) / 1000
    if rng.random() < 0.3:
        body["internalTokensOrCredits"] = Decimal(rng.randrange(0, 10**7)) / 1000
    if key is not None:
        body["idempotencyKey"] = key
    return body


def seed_random_usage(db, make_tenant, seed: int = 1) -> dict[str, Any]:
    """Two organizations; the first with two agents and three users (one short of
    money, one with a daily limit), ~200 reports through the real services: charges
    that fail, retries that succeed, refunds, reports group-committed together and one
    unit of work rolled back."""
    rng = random.Random(seed)
    main = make_tenant(balance="200")
    other = make_tenant(balance="50")
    second_agent = db.write(
        lambda conn: __import__("reload_billing.agents.service", fromlist=["x"]).create_agent(
            conn, main.organization_id, "Second agent"
        )
    ).id

    def connect_users(conn):
        found = [oauth.authenticate_token(conn, main.organization_id, main.access_token)]
        for n, (funds, limits) in enumerate(
            [("1", Limits()), ("100", Limits(daily=to_nanos(Decimal("3"))))]
        ):
            user = users.create_user(
                conn, email=f"analytics{seed}-{n}@example.com", password="correct-horse-battery",
                first_name="R", last_name=str(n),
            )  # fmt: skip
            users.credit(conn, user_id=user.id, amount=to_nanos(Decimal(funds)), description="t")
            token = oauth.issue_direct(
                conn, organization_id=main.organization_id, user_id=user.id,
                scopes=("identity", "usage_reporting", "payment"), agent_ids=None,
                limits=limits, ttl_days=1,
            )  # fmt: skip
            found.append(
                oauth.authenticate_token(conn, main.organization_id, token["access_token"])
            )
        return found

    tokens = db.write(connect_users)
    agent_ids = [main.agent_id, second_agent]
    keys = itertools.count()
    failed_keys: list[tuple[int, str, dict[str, Any]]] = []

    def report(conn, who: int, body: dict[str, Any]):
        organization = _organization(conn, main.organization_id)
        return usage.report_usage(
            conn, organization, tokens[who], parse(UsageReport, body), fee_percent=Decimal(5)
        )

    # One by one, each in its own transaction.
    for _ in range(120):
        who = rng.randrange(3)
        key = f"k{next(keys)}"
        body = _random_report(rng, rng.choice(agent_ids), key)
        outcome = db.write(lambda conn, who=who, body=body: report(conn, who, body))
        if outcome.record["status"] == "failed":
            failed_keys.append((who, key, body))
        elif outcome.record["charged"] and rng.random() < 0.25:
            amount = None if rng.random() < 0.4 else Decimal(rng.randrange(1, 1000)) / 10**6
            if amount is not None and amount > outcome.record["chargedAmount"]:
                amount = None

            def refund(conn, record_id=outcome.record["id"], amount=amount):
                organization = _organization(conn, main.organization_id)
                return usage.refund(
                    conn, organization, None, record_id, RefundRequest(amount=amount), None
                )

            db.write(refund)
    assert failed_keys, "some charges must fail"
    # Money arrives; some failed charges are retried with their key and succeed.
    db.write(
        lambda conn: [
            users.credit(conn, user_id=t.user_id, amount=to_nanos(Decimal(100)), description="t")
            for t in tokens
        ]
    )
    for who, _key, body in failed_keys[: len(failed_keys) // 2 + 1]:
        db.write(lambda conn, who=who, body=body: report(conn, who, body))
    # Many at once through group commit, one of them rolled back after reporting.
    futures = []
    for n in range(60):
        body = _random_report(rng, rng.choice(agent_ids), f"b{n}")
        who = rng.randrange(3)
        if n == 30:

            def doomed(conn, who=who, body=body):
                report(conn, who, body)
                raise RuntimeError("this unit of work fails after the report")

            futures.append(db.writer.submit(doomed))
        else:
            futures.append(
                db.writer.submit(lambda conn, who=who, body=body: report(conn, who, body))
            )
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except RuntimeError:
            pass
    assert len(outcomes) == 59
    # The other organization's records must never show up.
    db.write(
        lambda conn: [
            usage.report_usage(
                conn, _organization(conn, other.organization_id),
                oauth.authenticate_token(conn, other.organization_id, other.access_token),
                parse(UsageReport, _random_report(rng, other.agent_id, None)),
                fee_percent=Decimal(5),
            )
            for _ in range(10)
        ]
    )  # fmt: skip
    return {"tenant": main, "tokens": tokens, "agent_ids": agent_ids}


# --- the brute force -------------------------------------------------------------


def brute_force(
    db, organization_id, group_by, *, start=None, end=None, agent=None, user=None, status=None
):
    """Every record read one by one and summed in Python."""
    with db.read() as conn:
        records = conn.execute(
            select(usage_records).where(usage_records.c.organization_id == organization_id)
        ).all()
        returned = defaultdict(int)
        for row in conn.execute(select(transactions).where(transactions.c.kind == "refund")):
            returned[row.usage_record_id] += row.platform_fee
    groups: dict[tuple, dict[str, Any]] = {}
    for r in records:
        moment = datetime.fromtimestamp(r.usage_date // 1_000_000, tz=UTC)
        if start is not None and r.usage_date < start:
            continue
        if end is not None and r.usage_date >= end:
            continue
        if (agent and r.ai_agent_id != agent) or (user and r.user_id != user):
            continue
        if status and r.status != status:
            continue
        values = {
            "aiAgentId": r.ai_agent_id,
            "userId": r.user_id,
            "llmModel": r.llm_model,
            "llmProvider": r.llm_provider,
            "usageType": r.usage_type,
            "hour": moment.strftime("%Y-%m-%dT%H:00:00Z"),
            "day": moment.strftime("%Y-%m-%d"),
            "month": moment.strftime("%Y-%m"),
        }
        key = tuple(values[k] for k in group_by)
        g = groups.setdefault(key, defaultdict(int, processing=Decimal(0)))
        g["records"] += 1
        g["cost"] += r.total_cost
        g["charged"] += r.charged_amount
        g["refunded"] += r.refunded_amount
        g["fee"] += r.platform_fee - returned[r.id]
        g["input"] += r.input_tokens or 0
        g["output"] += r.output_tokens or 0
        g["total"] += r.total_tokens or 0
        g["internal"] += r.internal_credits or 0
        g["failed"] += r.status == "failed"
        if r.processing_time_ms is not None:
            g["processing"] += Decimal(repr(r.processing_time_ms))
            g["processing_count"] += 1
    rows = []
    for key, g in groups.items():
        row = dict(zip(group_by, key, strict=True))
        row.update(
            records=g["records"],
            totalCost=from_nanos(g["cost"]),
            chargedAmount=from_nanos(g["charged"]),
            refundedAmount=from_nanos(g["refunded"]),
            platformFee=from_nanos(g["fee"]),
            netEarnings=from_nanos(g["charged"] - g["refunded"] - g["fee"]),
            inputTokens=g["input"],
            outputTokens=g["output"],
            totalTokens=g["total"],
            internalTokensOrCredits=from_nanos(g["internal"]),
            avgProcessingTimeMs=(g["processing"] / g["processing_count"]).quantize(Decimal("0.001"))
            if g["processing_count"]
            else None,
            failedCharges=g["failed"],
        )
        rows.append(row)
    rows.sort(key=lambda r: tuple((r[k] is not None, r[k] or "") for k in group_by))
    return rows


def column_sums(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sums: dict[str, Any] = {}
    for metric in ("records", "totalCost", "chargedAmount", "refundedAmount", "platformFee",
                   "netEarnings", "inputTokens", "outputTokens", "totalTokens",
                   "internalTokensOrCredits", "failedCharges"):  # fmt: skip
        sums[metric] = sum((row[metric] for row in rows), start=0)
    return sums


def get_report(client, **params):
    response = client.get("/v1/tp/reports/usage", params=params)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


@pytest.fixture
def random_usage(db, make_tenant):
    return seed_random_usage(db, make_tenant)


GROUPINGS = [
    (),
    ("aiAgentId",),
    ("day", "aiAgentId"),
    ("month",),
    ("hour",),
    ("llmProvider", "llmModel"),
    ("userId", "usageType"),
    ("month", "llmModel", "usageType"),
    ("usageType", "day", "userId"),
]


def test_every_grouping_equals_a_brute_force_sum_and_totals_are_the_sum_of_rows(
    live_server, db, random_usage
):
    tenant = random_usage["tenant"]
    rng = random.Random(5)
    extra = [tuple(rng.sample(GROUP_KEYS, rng.randint(1, 3))) for _ in range(6)]
    with tenant.client(live_server.url, token=False) as client:
        for group_by in GROUPINGS + extra:
            body = get_report(client, groupBy=",".join(group_by))
            assert body["status"] == "success"
            expected = brute_force(db, tenant.organization_id, group_by)
            assert body["data"] == expected, group_by
            assert all(list(row)[: len(group_by)] == list(group_by) for row in body["data"])
            assert all(list(row)[len(group_by) :] == list(METRICS) for row in body["data"])
            sums = column_sums(body["data"])
            for metric, value in sums.items():
                assert body["totals"][metric] == value, (group_by, metric)
            # Totals are the same however the records are grouped.
            assert body["totals"] == get_report(client)["totals"]
        # 120 one by one and 59 group-committed; retries add none, the rolled-back one none.
        assert get_report(client)["totals"]["records"] == 179


def test_filters_narrow_the_records_like_a_brute_force_filter(live_server, db, random_usage):
    tenant = random_usage["tenant"]
    second_user = random_usage["tokens"][1].user_id
    day = lambda n: (NOW - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa: E731
    start_us = int(datetime.fromisoformat(day(40)).replace(tzinfo=UTC).timestamp()) * 10**6
    end_us = (
        int(datetime.fromisoformat(day(10)).replace(tzinfo=UTC).timestamp()) * 10**6
        + 86_400 * 10**6
    )
    cases = [
        ({"startDate": day(40), "endDate": day(10)}, {"start": start_us, "end": end_us}),
        ({"aiAgentId": random_usage["agent_ids"][1]}, {"agent": random_usage["agent_ids"][1]}),
        ({"userId": second_user}, {"user": second_user}),
        ({"status": "failed"}, {"status": "failed"}),
        ({"status": "completed", "startDate": day(60)}, {"status": "completed",
          "start": int(datetime.fromisoformat(day(60)).replace(tzinfo=UTC).timestamp()) * 10**6}),
    ]  # fmt: skip
    with tenant.client(live_server.url, token=False) as client:
        for params, filters in cases:
            for group_by in (("day", "aiAgentId"), ("userId",), ("month", "llmProvider")):
                body = get_report(client, groupBy=",".join(group_by), **params)
                expected = brute_force(db, tenant.organization_id, group_by, **filters)
                assert body["data"] == expected, (params, group_by)
                assert body["totals"]["records"] == sum(r["records"] for r in expected)
        failed = get_report(client, status="failed")["totals"]
        assert failed["records"] == failed["failedCharges"] > 0
        assert failed["chargedAmount"] == 0
        # A timestamp bound is exact to the microsecond (and not a whole day).
        stamp = (NOW - timedelta(days=20, hours=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cut = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 10**6)
        body = get_report(client, groupBy="hour", endDate=stamp)
        assert body["data"] == brute_force(db, tenant.organization_id, ("hour",), end=cut + 1)


def test_a_user_token_sees_only_that_users_records(live_server, db, random_usage):
    tenant = random_usage["tenant"]
    with tenant.client(live_server.url) as client:
        body = get_report(client, groupBy="userId")
    assert [row["userId"] for row in body["data"]] == [tenant.user_id]
    assert body["data"] == brute_force(db, tenant.organization_id, ("userId",), user=tenant.user_id)


def test_daily_rows_and_records_give_the_same_report(db, random_usage):
    organization_id = random_usage["tenant"].organization_id
    with db.read() as conn:
        for group_by in [(), ("day", "aiAgentId"), ("month", "llmModel", "usageType"),
                         ("llmProvider",), ("usageType", "day")]:  # fmt: skip
            for params in (
                {},
                {"status": ["completed"]},
                {"startDate": [(NOW - timedelta(days=30)).strftime("%Y-%m-%d")]},
            ):
                query = parse_query({"groupBy": [",".join(group_by)], **params})
                assert analytics.uses_daily_rows(query)
                daily = analytics.usage_report(conn, organization_id, query, source="daily")
                records = analytics.usage_report(conn, organization_id, query, source="records")
                assert daily.rows == records.rows and daily.totals == records.totals
                assert daily.rows == brute_force(
                    db, organization_id, group_by,
                    start=query.start, status=query.status,
                )  # fmt: skip
        for raw in ({"groupBy": ["hour"]}, {"groupBy": ["userId"]}, {"userId": ["usr_x"]},
                    {"startDate": ["2026-01-01T10:00:00Z"]}):  # fmt: skip
            assert not analytics.uses_daily_rows(parse_query(raw))


def test_the_kept_daily_rows_equal_a_rebuild_from_the_records(db, random_usage):
    def snapshot():
        with db.read() as conn:
            rows = conn.execute(select(usage_analytics_daily)).mappings().all()
        return {(r["organization_id"], r["day"], r["dims"]): dict(r) for r in rows if r["records"]}

    kept = snapshot()
    assert len(kept) > 50
    written = db.write(lambda conn: analytics_rollup.rebuild(conn))
    assert written == len(kept)
    assert snapshot() == kept
    with db.read() as conn:
        total = conn.execute(select(func.sum(usage_analytics_daily.c.records))).scalar()
        assert total == conn.execute(select(func.count()).select_from(usage_records)).scalar()
    assert_ledger_ok(db)


def test_csv_has_the_same_rows_as_json(live_server, random_usage):
    tenant = random_usage["tenant"]
    with tenant.client(live_server.url, token=False) as client:
        body = get_report(client, groupBy="month,llmModel")
        response = client.get(
            "/v1/tp/reports/usage", params={"groupBy": "month,llmModel", "format": "csv"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == ["month", "llmModel", *METRICS]
    assert len(lines) == len(body["data"]) + 1
    for line, row in zip(lines[1:], body["data"], strict=True):
        expected = ["" if row[k] is None else str(row[k]) for k in ("month", "llmModel")]
        expected += ["" if row[m] is None else str(row[m]) for m in METRICS]
        assert line == expected


def test_an_empty_period_has_no_rows_and_zero_totals(live_server, tenant):
    with tenant.client(live_server.url, token=False) as client:
        body = get_report(client, groupBy="day", startDate="2001-01-01", endDate="2001-01-31")
    assert body["data"] == []
    assert body["totals"]["records"] == 0 and body["totals"]["totalCost"] == 0
    assert body["totals"]["avgProcessingTimeMs"] is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"groupBy": "agent"}, "groupBy"),
        ({"groupBy": "day,aiAgentId,userId,llmModel"}, "groupBy"),
        ({"groupBy": "day,day"}, "groupBy"),
        ({"groupBy": "DAY"}, "groupBy"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"endDate": "2026-13-01"}, "endDate"),
        ({"startDate": "2026-02-01", "endDate": "2026-01-01"}, "endDate"),
        ({"status": "refunded"}, "status"),
        ({"format": "xml"}, "format"),
        ({"groupby": "day"}, "groupby"),
        ({"aiAgentId": ""}, "aiAgentId"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(live_server, tenant, params, param):
    with tenant.client(live_server.url, token=False) as client:
        response = client.get("/v1/tp/reports/usage", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["error"]["param"] == param


def test_credentials_are_checked_first(live_server, tenant):
    import httpx

    with httpx.Client(base_url=live_server.url, auth=(tenant.client_id, "wrong")) as client:
        assert client.get("/v1/tp/reports/usage", params={"groupBy": "nope"}).status_code == 401
        assert client.get("/v1/tp/reports/usage").status_code == 401
    with httpx.Client(base_url=live_server.url) as client:
        assert client.get("/v1/tp/reports/usage").status_code == 401
