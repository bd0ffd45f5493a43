"""The only code that moves money.

Every movement is one ledger transaction whose entries sum to zero. Account
balances are a cache of their entries, written in the same database transaction:
user accounts at once with a conditional UPDATE (the balance check and the debit are
one atomic statement), hot credit-only accounts (an organization's earnings, the
platform's fees) through deferred increments applied just before the commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, insert, select, update

from .. import db
from ..errors import InvalidRequest
from ..ids import new_id
from ..money import refund_fee_share, split_fee
from .models import accounts, entries, spending_counters, transactions

USER_BILLING = "user_billing"
ORG_EARNINGS = "org_earnings"
PLATFORM_FEES = "platform_fees"
EXTERNAL_FUNDING = "external_funding"

PLATFORM_FEES_ACCOUNT = "acc_platform_fees"
EXTERNAL_FUNDING_ACCOUNT = "acc_external_funding"
_SYSTEM_ACCOUNTS = {
    PLATFORM_FEES_ACCOUNT: PLATFORM_FEES,
    EXTERNAL_FUNDING_ACCOUNT: EXTERNAL_FUNDING,
}
_DEFERRED_PREFIX = "ledger:"
_SPENT_PREFIX = "spent:"


class ChargeRefused(Exception):
    """A charge that cannot be made; ``reason`` is the contract's failureReason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """A connection's spending limits in nano-dollars; None: no limit."""

    per_charge: int | None = None
    daily: int | None = None
    monthly: int | None = None

    @property
    def any(self) -> bool:
        return self.per_charge is not None or self.daily is not None or self.monthly is not None


@dataclass(frozen=True)
class Posted:
    """A transaction as written."""

    id: str
    kind: str
    amount: int
    platform_fee: int
    created_at: int
    description: str | None = None
    idempotency_key: str | None = None
    balance_after: int | None = None


# --- accounts -------------------------------------------------------------------


def ensure_system_accounts(conn: Connection) -> None:
    existing = set(
        conn.execute(select(accounts.c.id).where(accounts.c.id.in_(list(_SYSTEM_ACCOUNTS))))
        .scalars()
        .all()
    )
    for account_id, kind in _SYSTEM_ACCOUNTS.items():
        if account_id not in existing:
            conn.execute(
                insert(accounts).values(
                    id=account_id,
                    kind=kind,
                    owner_id=kind,
                    balance=0,
                    # Funding mirrors every deposit, so it is as negative as the
                    # money that came in: system accounts have no floor.
                    floor=-(2**62),
                    created_at=db.now_us(),
                )
            )


def open_account(conn: Connection, kind: str, owner_id: str) -> str:
    """A new account for a user (billing) or an organization (earnings)."""
    account_id = new_id("ba" if kind == USER_BILLING else "acc")
    conn.execute(
        insert(accounts).values(
            id=account_id,
            kind=kind,
            owner_id=owner_id,
            balance=0,
            floor=0 if kind == USER_BILLING else -(2**62),
            created_at=db.now_us(),
        )
    )
    return account_id


def balance(conn: Connection, account_id: str) -> int:
    value = conn.execute(select(accounts.c.balance).where(accounts.c.id == account_id)).scalar()
    if value is None:
        raise InvalidRequest("unknown account", param="billingAccountId")
    return int(value)


# --- posting --------------------------------------------------------------------


def _post(
    conn: Connection,
    *,
    kind: str,
    legs: Sequence[tuple[str, int]],
    amount: int,
    platform_fee: int = 0,
    usage_record_id: str | None = None,
    organization_id: str | None = None,
    user_id: str | None = None,
    billing_account_id: str | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
) -> Posted:
    if sum(amount for _, amount in legs) != 0:
        raise AssertionError(f"unbalanced ledger transaction: {legs}")
    transaction_id = new_id("txn")
    created_at = db.now_us()
    _INSERT_TRANSACTION.execute(
        conn,
        {
            "id": transaction_id,
            "kind": kind,
            "amount": amount,
            "platform_fee": platform_fee,
            "usage_record_id": usage_record_id,
            "organization_id": organization_id,
            "user_id": user_id,
            "billing_account_id": billing_account_id,
            "description": description,
            "idempotency_key": idempotency_key,
            "created_at": created_at,
        },
    ).close()
    _INSERT_ENTRY.execute_many(
        conn,
        [
            {
                "transaction_id": transaction_id,
                "account_id": account_id,
                "amount": leg,
                "created_at": created_at,
            }
            for account_id, leg in legs
            if leg != 0
        ],
    )
    return Posted(
        transaction_id, kind, amount, platform_fee, created_at, description, idempotency_key
    )


# Statements of the hot path are built and compiled once and run on the driver's
# cursor (db.Prepared): SQLAlchemy's per-execution work costs more than running them.
_INSERT_TRANSACTION = db.Prepared(insert(transactions))
_INSERT_ENTRY = db.Prepared(insert(entries))
_DEBIT = db.Prepared(
    update(accounts)
    .where(
        and_(
            accounts.c.id == bindparam("account_id"),
            accounts.c.balance - bindparam("amount") >= accounts.c.floor,
        )
    )
    .values(balance=accounts.c.balance - bindparam("amount"))
    .returning(accounts.c.balance)
)
_CREDIT = db.Prepared(
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(balance=accounts.c.balance + bindparam("amount"))
    .returning(accounts.c.balance)
)


def _debit(conn: Connection, account_id: str, amount: int) -> bool:
    """Take ``amount`` from an account unless that would pass its floor: one statement."""
    cursor = _DEBIT.execute(conn, {"account_id": account_id, "amount": amount})
    row = cursor.fetchone()
    cursor.close()
    return row is not None


def _credit_now(conn: Connection, account_id: str, amount: int) -> int:
    cursor = _CREDIT.execute(conn, {"account_id": account_id, "amount": amount})
    row = cursor.fetchone()
    cursor.close()
    if row is None:
        raise AssertionError(f"no ledger account {account_id}")
    return int(row[0])


def _credit_later(conn: Connection, account_id: str, amount: int) -> None:
    db.defer_increment(conn, _DEFERRED_PREFIX + account_id, amount)


def _apply_deferred(conn: Connection, increments: dict[str, int]) -> None:
    spent: list[dict[str, Any]] = []
    for key in sorted(increments):
        if not increments[key]:
            continue
        if key.startswith(_DEFERRED_PREFIX):
            _credit_now(conn, key[len(_DEFERRED_PREFIX) :], increments[key])
        elif key.startswith(_SPENT_PREFIX):
            connection_id, _, period = key[len(_SPENT_PREFIX) :].partition("|")
            spent.append(
                {"connection_id": connection_id, "period": period, "spent": increments[key]}
            )
    db.upsert_add(conn, spending_counters, spent, key=("connection_id", "period"), add=("spent",))


db.on_flush_deferred(_apply_deferred)


# --- movements ------------------------------------------------------------------


def top_up(
    conn: Connection,
    *,
    billing_account_id: str,
    user_id: str,
    amount: int,
    description: str = "Top-up",
) -> Posted:
    """Funds coming in from outside (a payment provider, sandbox funds, the operator)."""
    if amount <= 0:
        raise InvalidRequest("amount must be greater than zero", param="amount")
    posted = _post(
        conn,
        kind="topup",
        legs=[(EXTERNAL_FUNDING_ACCOUNT, -amount), (billing_account_id, amount)],
        amount=amount,
        user_id=user_id,
        billing_account_id=billing_account_id,
        description=description,
    )
    _credit_later(conn, EXTERNAL_FUNDING_ACCOUNT, -amount)
    after = _credit_now(conn, billing_account_id, amount)
    return dataclasses.replace(posted, balance_after=after)


def _period_keys(moment_us: int) -> tuple[str, str]:
    day = datetime.fromtimestamp(moment_us / 1_000_000, tz=UTC)
    return day.strftime("d:%Y-%m-%d"), day.strftime("m:%Y-%m")


def _reserve_limit(
    conn: Connection, connection_id: str, period: str, amount: int, cap: int
) -> bool:
    """Add ``amount`` to a period's spending unless that would pass ``cap``: atomic."""
    if amount > cap:
        return False
    db.insert_ignore(conn, spending_counters, connection_id=connection_id, period=period, spent=0)
    result = conn.execute(
        update(spending_counters)
        .where(
            and_(
                spending_counters.c.connection_id == connection_id,
                spending_counters.c.period == period,
                spending_counters.c.spent + amount <= cap,
            )
        )
        .values(spent=spending_counters.c.spent + amount)
    )
    return result.rowcount == 1


def _unspend(conn: Connection, connection_id: str, periods: list[str], amount: int) -> None:
    """Take ``amount`` off the periods' counters: what :func:`_reserve_limit` added
    for a charge then refused, or what a refund gives back (never below zero: a
    charge made before counting began was never added)."""
    if not periods:
        return
    conn.execute(
        update(spending_counters)
        .where(
            and_(
                spending_counters.c.connection_id == connection_id,
                spending_counters.c.period.in_(periods),
            )
        )
        .values(
            spent=case(
                (spending_counters.c.spent > amount, spending_counters.c.spent - amount),
                else_=0,
            )
        )
    )


def check_limits(
    conn: Connection, connection_id: str | None, limits: Limits, amount: int
) -> str | None:
    """Which limit a charge of ``amount`` would pass now, or None (reads only)."""
    if not limits.any or connection_id is None:
        return None
    if limits.per_charge is not None and amount > limits.per_charge:
        return "per_charge"
    day_key, month_key = _period_keys(db.now_us())
    spent = dict(
        conn.execute(
            select(spending_counters.c.period, spending_counters.c.spent).where(
                and_(
                    spending_counters.c.connection_id == connection_id,
                    spending_counters.c.period.in_([day_key, month_key]),
                )
            )
        ).all()
    )
    if limits.daily is not None and spent.get(day_key, 0) + amount > limits.daily:
        return "daily"
    if limits.monthly is not None and spent.get(month_key, 0) + amount > limits.monthly:
        return "monthly"
    return None


def charge(
    conn: Connection,
    *,
    billing_account_id: str,
    earnings_account_id: str,
    amount: int,
    fee_percent: Decimal,
    usage_record_id: str,
    organization_id: str,
    user_id: str,
    description: str | None,
    connection_id: str | None = None,
    limits: Limits = Limits(),
) -> Posted:
    """Debit the user, credit the organization less the platform fee.

    Raises :class:`ChargeRefused` and changes nothing when a limit or the balance
    does not allow it: callers catch it and record a failed charge in the same
    transaction, so what was already added to a spending counter is taken back.
    """
    reserved: list[str] = []
    uncapped: list[str] = []
    if connection_id is not None:
        if limits.per_charge is not None and amount > limits.per_charge:
            raise ChargeRefused("spending_limit_exceeded", "over the per-charge limit")
        day_key, month_key = _period_keys(db.now_us())
        for period, cap, name in (
            (day_key, limits.daily, "daily"),
            (month_key, limits.monthly, "monthly"),
        ):
            if cap is None:
                uncapped.append(period)
            elif _reserve_limit(conn, connection_id, period, amount, cap):
                reserved.append(period)
            else:
                _unspend(conn, connection_id, reserved, amount)
                raise ChargeRefused("spending_limit_exceeded", f"over the {name} limit")
    if amount > 0 and not _debit(conn, billing_account_id, amount):
        if connection_id is not None:
            _unspend(conn, connection_id, reserved, amount)
        raise ChargeRefused("insufficient_balance", "the billing account's balance is too low")
    for period in uncapped:
        # Counted even without a limit, so that a limit set later includes what was
        # already spent in its period; summed per batch like the hot accounts.
        db.defer_increment(conn, f"{_SPENT_PREFIX}{connection_id}|{period}", amount)
    fee = split_fee(amount, fee_percent)
    posted = _post(
        conn,
        kind="charge",
        legs=[
            (billing_account_id, -amount),
            (earnings_account_id, amount - fee),
            (PLATFORM_FEES_ACCOUNT, fee),
        ],
        amount=amount,
        platform_fee=fee,
        usage_record_id=usage_record_id,
        organization_id=organization_id,
        user_id=user_id,
        billing_account_id=billing_account_id,
        description=description,
    )
    _credit_later(conn, earnings_account_id, amount - fee)
    _credit_later(conn, PLATFORM_FEES_ACCOUNT, fee)
    return posted


def refund(
    conn: Connection,
    *,
    billing_account_id: str,
    earnings_account_id: str,
    charged: int,
    charge_fee: int,
    refunded_before: int,
    amount: int,
    usage_record_id: str,
    organization_id: str,
    user_id: str,
    reason: str | None,
    idempotency_key: str | None = None,
    connection_id: str | None = None,
    charged_at: int | None = None,
) -> Posted:
    """Give part or all of a charge back; the platform returns its share of the fee.

    What is given back no longer counts as spent through the connection in the day
    and month of the charge, so it frees that much of their spending limits."""
    if amount <= 0 or refunded_before + amount > charged:
        raise InvalidRequest(
            "amount exceeds what is left to refund", param="amount", code="refund_exceeds_charge"
        )
    fee_back = refund_fee_share(charged, charge_fee, refunded_before, amount)
    posted = _post(
        conn,
        kind="refund",
        legs=[
            (billing_account_id, amount),
            (earnings_account_id, -(amount - fee_back)),
            (PLATFORM_FEES_ACCOUNT, -fee_back),
        ],
        amount=amount,
        platform_fee=fee_back,
        usage_record_id=usage_record_id,
        organization_id=organization_id,
        user_id=user_id,
        billing_account_id=billing_account_id,
        description=reason,
        idempotency_key=idempotency_key,
    )
    _credit_later(conn, earnings_account_id, -(amount - fee_back))
    _credit_later(conn, PLATFORM_FEES_ACCOUNT, -fee_back)
    if connection_id is not None and charged_at is not None:
        _unspend(conn, connection_id, list(_period_keys(charged_at)), amount)
    after = _credit_now(conn, billing_account_id, amount)
    return dataclasses.replace(posted, balance_after=after)


# --- reading --------------------------------------------------------------------


def transactions_of_usage(
    conn: Connection, usage_record_ids: Sequence[str]
) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {usage_id: [] for usage_id in usage_record_ids}
    if not usage_record_ids:
        return found
    rows = conn.execute(
        select(transactions)
        .where(transactions.c.usage_record_id.in_(list(usage_record_ids)))
        .order_by(transactions.c.created_at, transactions.c.id)
    ).all()
    for row in rows:
        found[row.usage_record_id].append(row)
    return found


def charged_at(conn: Connection, usage_record_id: str) -> int | None:
    """When a usage record's charge was made (its spending-limit periods)."""
    value = conn.execute(
        select(func.min(transactions.c.created_at)).where(
            and_(
                transactions.c.usage_record_id == usage_record_id,
                transactions.c.kind == "charge",
            )
        )
    ).scalar()
    return int(value) if value is not None else None


def transaction_by_key(conn: Connection, organization_id: str, key: str) -> Any:
    return conn.execute(
        select(transactions).where(
            and_(
                transactions.c.organization_id == organization_id,
                transactions.c.idempotency_key == key,
            )
        )
    ).first()


@dataclass(frozen=True)
class Verification:
    ok: bool
    accounts: int
    transactions: int
    entries: int
    entries_sum: int
    mismatched_accounts: list[dict[str, Any]]
    unbalanced_transactions: list[str]
    below_floor: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accounts": self.accounts,
            "transactions": self.transactions,
            "entries": self.entries,
            "entriesSum": self.entries_sum,
            "mismatchedAccounts": self.mismatched_accounts,
            "unbalancedTransactions": self.unbalanced_transactions,
            "accountsBelowFloor": self.below_floor,
        }


def verify(conn: Connection) -> Verification:
    """Recompute every balance from the entries; check that everything sums to zero."""
    sums = dict(
        conn.execute(
            select(entries.c.account_id, func.sum(entries.c.amount)).group_by(entries.c.account_id)
        ).all()
    )
    mismatched: list[dict[str, Any]] = []
    below: list[str] = []
    account_rows = conn.execute(select(accounts.c.id, accounts.c.balance, accounts.c.floor)).all()
    for account_id, cached, floor in account_rows:
        computed = int(sums.get(account_id) or 0)
        if computed != cached:
            mismatched.append({"accountId": account_id, "balance": cached, "entries": computed})
        if cached < floor:
            below.append(account_id)
    unbalanced = list(
        conn.execute(
            select(entries.c.transaction_id)
            .group_by(entries.c.transaction_id)
            .having(func.sum(entries.c.amount) != 0)
        )
        .scalars()
        .all()
    )
    total = int(conn.execute(select(func.coalesce(func.sum(entries.c.amount), 0))).scalar() or 0)
    n_entries = int(conn.execute(select(func.count()).select_from(entries)).scalar() or 0)
    n_transactions = int(conn.execute(select(func.count()).select_from(transactions)).scalar() or 0)
    return Verification(
        ok=not mismatched and not unbalanced and total == 0 and not below,
        accounts=len(account_rows),
        transactions=n_transactions,
        entries=n_entries,
        entries_sum=total,
        mismatched_accounts=mismatched,
        unbalanced_transactions=unbalanced,
        below_floor=below,
    )
