"""Spending limits a user sets on a connection: per charge, per day, per month.

They are checked in the same atomic step as the balance, so no number of concurrent
charges can pass them; preview-charge names the limit that would block a charge.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from sqlalchemy import func, select

from reload_billing.ledger.models import spending_counters, transactions
from reload_billing.ledger.service import Limits
from reload_billing.money import from_nanos, to_nanos
from reload_billing.oauth import service as oauth
from reload_billing.oauth.models import connections
from reload_billing.users import service as users
from tests.helpers import assert_ledger_ok, balance, failed_records, parse, post, usage_body


def usd(amount: str) -> int:
    return to_nanos(Decimal(amount))


def counters(db) -> dict[str, Decimal]:
    """What each period's counter says was spent, by period kind ('d' or 'm')."""
    with db.read() as conn:
        rows = conn.execute(select(spending_counters.c.period, spending_counters.c.spent)).all()
    return {period[0]: from_nanos(spent) for period, spent in rows}


def charged_total(db) -> Decimal:
    with db.read() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(transactions.c.amount), 0)).where(
                transactions.c.kind == "charge"
            )
        ).scalar()
    return from_nanos(int(total))


def charge(client, agent_id: str, amount: str, **fields):
    return post(client, "/v1/tp/usage", usage_body(agent_id, amount, **fields))


def preview(client, agent_id: str, amount: str):
    return parse(
        post(
            client,
            "/v1/tp/preview-charge",
            {"aiAgentId": agent_id, "amount": Decimal(amount), "description": "preview"},
        )
    )["data"]


def test_40_concurrent_charges_never_pass_a_daily_limit(live_server, db, make_tenant):
    tenant = make_tenant(balance="100", limits=Limits(daily=usd("5")))

    def send(i: int):
        with tenant.client(live_server.url) as client:
            return charge(client, tenant.agent_id, "0.5", idempotencyKey=f"daily-{i}")

    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(send, range(40)))

    statuses = [response.status_code for response in responses]
    assert statuses.count(201) == 10, statuses
    assert statuses.count(402) == 30
    refused = [parse(r) for r in responses if r.status_code == 402]
    assert {body["error"]["code"] for body in refused} == {"spending_limit_exceeded"}
    assert {body["data"]["failureReason"] for body in refused} == {"spending_limit_exceeded"}
    assert balance(db, tenant.billing_account_id) == Decimal("95")
    assert charged_total(db) == Decimal("5")
    assert counters(db) == {"d": Decimal("5"), "m": Decimal("5")}
    assert failed_records(db) == 30
    assert_ledger_ok(db)


def test_per_charge_limit_refuses_a_larger_charge_and_preview_names_it(
    live_server, db, make_tenant
):
    tenant = make_tenant(balance="30", limits=Limits(per_charge=usd("1")))
    with tenant.client(live_server.url) as client:
        assert preview(client, tenant.agent_id, "1") == {
            "canCharge": True,
            "amount": Decimal("1"),
            "balance": Decimal("30"),
            "reason": None,
            "limit": None,
        }
        blocked = preview(client, tenant.agent_id, "1.000000001")
        assert blocked["canCharge"] is False
        assert (blocked["reason"], blocked["limit"]) == ("spending_limit_exceeded", "per_charge")

        refused = charge(client, tenant.agent_id, "1.000000001")
        assert refused.status_code == 402
        assert parse(refused)["data"]["failureReason"] == "spending_limit_exceeded"
        assert charge(client, tenant.agent_id, "1").status_code == 201
    assert balance(db, tenant.billing_account_id) == Decimal("29")
    assert_ledger_ok(db)


def test_monthly_limit_blocks_once_reached_and_preview_names_it(live_server, db, make_tenant):
    tenant = make_tenant(balance="30", limits=Limits(daily=usd("10"), monthly=usd("3")))
    with tenant.client(live_server.url) as client:
        for _ in range(3):
            assert charge(client, tenant.agent_id, "1").status_code == 201
        blocked = preview(client, tenant.agent_id, "0.01")
        assert (blocked["canCharge"], blocked["reason"], blocked["limit"]) == (
            False,
            "spending_limit_exceeded",
            "monthly",
        )
        refused = charge(client, tenant.agent_id, "0.01")
        assert refused.status_code == 402
        assert parse(refused)["error"]["code"] == "spending_limit_exceeded"
    assert balance(db, tenant.billing_account_id) == Decimal("27")
    # The daily counter holds what was spent, not the charge the monthly limit refused.
    assert counters(db) == {"d": Decimal("3"), "m": Decimal("3")}
    assert_ledger_ok(db)


def test_preview_names_the_daily_limit_and_charges_nothing(live_server, db, make_tenant):
    tenant = make_tenant(balance="30", limits=Limits(daily=usd("2")))
    with tenant.client(live_server.url) as client:
        assert charge(client, tenant.agent_id, "1.5").status_code == 201
        assert preview(client, tenant.agent_id, "0.5")["canCharge"] is True
        blocked = preview(client, tenant.agent_id, "0.6")
        assert (blocked["reason"], blocked["limit"]) == ("spending_limit_exceeded", "daily")
        assert blocked["balance"] == Decimal("28.5")
    assert balance(db, tenant.billing_account_id) == Decimal("28.5")
    assert counters(db) == {"d": Decimal("1.5"), "m": Decimal("1.5")}


def test_preview_prefers_the_limit_over_a_low_balance(live_server, make_tenant):
    tenant = make_tenant(balance="0.1", limits=Limits(per_charge=usd("1")))
    with tenant.client(live_server.url) as client:
        low = preview(client, tenant.agent_id, "0.5")
        assert (low["reason"], low["limit"]) == ("insufficient_balance", None)
        both = preview(client, tenant.agent_id, "2")
        assert (both["reason"], both["limit"]) == ("spending_limit_exceeded", "per_charge")


def test_a_charge_refused_for_balance_does_not_use_up_the_daily_limit(live_server, db, make_tenant):
    tenant = make_tenant(balance="1", limits=Limits(daily=usd("2")))
    with tenant.client(live_server.url) as client:
        assert charge(client, tenant.agent_id, "0.8").status_code == 201
        low = charge(client, tenant.agent_id, "0.8")
        assert parse(low)["data"]["failureReason"] == "insufficient_balance"
        assert counters(db) == {"d": Decimal("0.8"), "m": Decimal("0.8")}
        db.write(
            lambda conn: users.credit(
                conn, user_id=tenant.user_id, amount=usd("10"), description="top-up"
            )
        )
        # 0.8 + 0.8 = 1.6 <= 2: allowed, because the refused charge spent nothing.
        assert charge(client, tenant.agent_id, "0.8").status_code == 201
        over = charge(client, tenant.agent_id, "0.8")
        assert parse(over)["data"]["failureReason"] == "spending_limit_exceeded"
    assert counters(db) == {"d": Decimal("1.6"), "m": Decimal("1.6")}
    assert charged_total(db) == Decimal("1.6")
    assert_ledger_ok(db)


def set_limits(db, tenant, limits: Limits) -> None:
    """What the user does on the account page: change a connection's limits."""

    def work(conn):
        connection_id = conn.execute(
            select(connections.c.id).where(connections.c.user_id == tenant.user_id)
        ).scalar_one()
        oauth.update_limits(conn, tenant.user_id, connection_id, limits)

    db.write(work)


def test_a_limit_set_later_counts_what_was_already_spent_in_its_period(
    live_server, db, make_tenant
):
    tenant = make_tenant(balance="30")
    with tenant.client(live_server.url) as client:
        assert charge(client, tenant.agent_id, "3").status_code == 201
        set_limits(db, tenant, Limits(daily=usd("5")))
        assert preview(client, tenant.agent_id, "3")["limit"] == "daily"
        over = charge(client, tenant.agent_id, "3")
        assert over.status_code == 402
        assert parse(over)["data"]["failureReason"] == "spending_limit_exceeded"
        assert charge(client, tenant.agent_id, "2").status_code == 201
    assert counters(db) == {"d": Decimal("5"), "m": Decimal("5")}
    assert charged_total(db) == Decimal("5")
    assert_ledger_ok(db)


def test_a_refund_frees_the_part_of_the_limit_it_gives_back(live_server, db, make_tenant):
    tenant = make_tenant(balance="30", limits=Limits(daily=usd("5"), monthly=usd("8")))
    with tenant.client(live_server.url) as client:
        first = parse(charge(client, tenant.agent_id, "5"))["data"]
        assert parse(charge(client, tenant.agent_id, "0.01"))["data"]["failureReason"] == (
            "spending_limit_exceeded"
        )
        refund = post(client, f"/v1/tp/usage-reports/{first['id']}/refund", {"amount": 2})
        assert refund.status_code in (200, 201), refund.text
        assert counters(db) == {"d": Decimal("3"), "m": Decimal("3")}
        assert charge(client, tenant.agent_id, "2").status_code == 201
        assert parse(charge(client, tenant.agent_id, "0.01"))["data"]["failureReason"] == (
            "spending_limit_exceeded"
        )
    # 5 charged, 2 given back, 2 charged: 5 spent today, 5 this month.
    assert counters(db) == {"d": Decimal("5"), "m": Decimal("5")}
    assert charged_total(db) == Decimal("7")
    assert_ledger_ok(db)
