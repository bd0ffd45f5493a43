"""The ledger: every movement balanced, balances equal to their entries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from reload_billing.ledger import service as ledger
from reload_billing.ledger.models import accounts
from reload_billing.money import to_nanos
from reload_billing.users import service as users
from tests.helpers import assert_ledger_ok, balance, entries_balance

USD = 1_000_000_000


def test_top_up_moves_money_from_external_funding(db, tenant):
    db.write(
        lambda conn: users.credit(conn, user_id=tenant.user_id, amount=5 * USD, description="t")
    )
    assert balance(db, tenant.billing_account_id) == Decimal("15")
    assert entries_balance(db, tenant.billing_account_id) == Decimal("15")
    assert balance(db, ledger.EXTERNAL_FUNDING_ACCOUNT) == Decimal("-15")
    assert_ledger_ok(db)


def _charge(db, tenant, amount_nanos, fee="5", record="use_test"):
    return db.write(
        lambda conn: ledger.charge(
            conn,
            billing_account_id=tenant.billing_account_id,
            earnings_account_id=tenant.earnings_account_id,
            amount=amount_nanos,
            fee_percent=Decimal(fee),
            usage_record_id=record,
            organization_id=tenant.organization_id,
            user_id=tenant.user_id,
            description="test",
        )
    )


def test_charge_splits_platform_fee_exactly(db, tenant):
    posted = _charge(db, tenant, 333_333_333)  # 0.333333333 USD at 5 %
    assert posted.platform_fee == 16_666_667  # half-to-even of 16 666 666.65
    assert balance(db, tenant.billing_account_id) == Decimal("9.666666667")
    assert balance(db, tenant.earnings_account_id) == Decimal("0.316666666")
    assert balance(db, ledger.PLATFORM_FEES_ACCOUNT) == Decimal("0.016666667")
    assert_ledger_ok(db)


def test_charge_beyond_balance_is_refused_and_moves_nothing(db, tenant):
    with pytest.raises(ledger.ChargeRefused) as refused:
        _charge(db, tenant, 10 * USD + 1)
    assert refused.value.reason == "insufficient_balance"
    assert balance(db, tenant.billing_account_id) == Decimal("10")
    assert balance(db, tenant.earnings_account_id) == 0
    assert_ledger_ok(db)


def test_refunds_in_pieces_return_exactly_the_whole_fee(db, tenant):
    charged = to_nanos(Decimal("0.7"))
    posted = _charge(db, tenant, charged)
    refunded = 0
    for piece in (Decimal("0.1"), Decimal("0.3"), Decimal("0.3")):
        amount = to_nanos(piece)
        db.write(
            lambda conn, amount=amount, before=refunded: ledger.refund(
                conn,
                billing_account_id=tenant.billing_account_id,
                earnings_account_id=tenant.earnings_account_id,
                charged=charged,
                charge_fee=posted.platform_fee,
                refunded_before=before,
                amount=amount,
                usage_record_id="use_test",
                organization_id=tenant.organization_id,
                user_id=tenant.user_id,
                reason="test",
            )
        )
        refunded += amount
    assert balance(db, tenant.billing_account_id) == Decimal("10")
    assert balance(db, tenant.earnings_account_id) == 0
    assert balance(db, ledger.PLATFORM_FEES_ACCOUNT) == 0
    assert_ledger_ok(db)


def test_verify_detects_a_balance_that_disagrees_with_its_entries(db, tenant):
    db.write(
        lambda conn: conn.execute(
            update(accounts).where(accounts.c.id == tenant.billing_account_id).values(balance=1)
        )
    )
    with db.read() as conn:
        result = ledger.verify(conn)
    assert not result.ok
    assert result.mismatched_accounts[0]["accountId"] == tenant.billing_account_id
