"""Daily totals of usage records that stay exact, made lazily for the pages.

Summing a month of a busy organization's records on every page view reads tens of
thousands of rows; summing daily totals reads a few hundred. A past day's totals
are computed from the records the first time a page asks, and kept in
``usage_daily``. Today (and the first minutes after midnight, while reports in
flight may still commit) is always summed live from the records.

What can change a past day's records? Records are inserted with the time of the
report, so never into a past day; afterwards only a charge (a retried report) or a
refund changes one, and both write ledger entries on the user's billing account
and on the organization's earnings account. So each scope keeps the id of the
newest ledger entry it has checked (its watermark); before reading, the entries
of the scope's account made since then (plus a margin, for transactions that
committed out of id order) name the past days whose totals must be made again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    case,
    delete,
    exc,
    func,
    insert,
    literal_column,
    select,
    update,
)

from .. import db
from ..db import Database
from ..ledger.models import entries, transactions
from ..usage.models import usage_records
from .models import USAGE_DAILY_DIMENSIONS, usage_daily, usage_daily_days, usage_daily_watermarks

DAY_US = 86_400_000_000
# A day's totals are kept once it has been over for this long.
SETTLE_US = 5 * 60 * 1_000_000
# Ledger entries re-read below the watermark: those of transactions that were
# still in flight when it was taken (ids are not given in commit order).
MARGIN = 10_000
# Past this many new ledger entries, the watermark moves on even with no change.
ADVANCE_AFTER = 50_000
# Past this many, a scope's kept totals are dropped and made again when asked.
RESET_AFTER = 500_000

u = usage_records
DAY = (u.c.created_at // literal_column(str(DAY_US), BigInteger)).label("day")
DIMENSIONS = USAGE_DAILY_DIMENSIONS
MEASURES = (
    "records",
    "cost",
    "charged_amount",
    "refunded_amount",
    "platform_fee",
    "fee_returned",
    "tokens",
    "internal_credits",
)


@dataclass(frozen=True)
class Scope:
    """Whose totals: an organization's or a user's. ``account_id`` is the ledger
    account whose entries tell that some of its records changed."""

    scope_id: str
    account_id: str
    is_user: bool

    @classmethod
    def of_user(cls, user: Any) -> Scope:
        return cls(str(user.id), str(user.billing_account_id), True)

    @classmethod
    def of_organization(cls, organization: Any) -> Scope:
        return cls(str(organization.id), str(organization.earnings_account_id), False)

    def condition(self) -> ColumnElement[bool]:
        column = u.c.user_id if self.is_user else u.c.organization_id
        return column == self.scope_id


def first_live_day(now: int | None = None) -> int:
    """Days from this one on are summed live from the records."""
    return ((now if now is not None else db.now_us()) - SETTLE_US) // DAY_US


def _sum(column: Any) -> Any:
    return func.coalesce(func.sum(column), 0)


def _key(row: Any) -> tuple[Any, ...]:
    return (
        int(row.day),
        row.organization_id,
        row.ai_agent_id,
        row.model,
        row.usage_type,
        row.status,
        bool(row.charged),
        bool(row.refunded),
    )


def grouped(
    conn: Connection, conditions: Sequence[ColumnElement[bool]]
) -> dict[tuple[Any, ...], list[int]]:
    """Sums of the matching records by day and every dimension: one grouped scan,
    and a second read of the (few) refunded ones for the fee given back."""
    model = func.coalesce(u.c.llm_model, "").label("model")
    usage_type = func.coalesce(u.c.usage_type, "").label("usage_type")
    refunded = case((u.c.refunded_amount > 0, 1), else_=0).label("refunded")
    dims = (
        DAY,
        u.c.organization_id,
        u.c.ai_agent_id,
        model,
        usage_type,
        u.c.status,
        u.c.charged,
        refunded,
    )
    found: dict[tuple[Any, ...], list[int]] = {}
    for row in conn.execute(
        select(
            *dims,
            func.count().label("records"),
            _sum(u.c.total_cost),
            _sum(u.c.charged_amount),
            _sum(u.c.refunded_amount),
            _sum(u.c.platform_fee),
            _sum(u.c.total_tokens),
            _sum(u.c.internal_credits),
        )
        .where(*conditions)
        .group_by(*dims)
    ):
        records, cost, charged, refunded_sum, fee, tokens, credits = (int(v) for v in row[8:])
        found[_key(row)] = [records, cost, charged, refunded_sum, fee, 0, tokens, credits]
    # The fee given back by a record's refunds, as the ledger computes it over the
    # running total: fee * refunded // charged (exact in Python integers).
    for row in conn.execute(
        select(*dims, u.c.platform_fee, u.c.charged_amount, u.c.refunded_amount).where(
            *conditions, u.c.refunded_amount > 0
        )
    ):
        if row.charged_amount:
            returned = int(row.platform_fee) * int(row.refunded_amount) // int(row.charged_amount)
            found[_key(row)][5] += returned
    return found


# --- keeping the daily totals current --------------------------------------------


def _changed_days(conn: Connection, scope: Scope, since: int, before_day: int) -> set[int]:
    """Past days with records of ``scope`` charged or refunded after entry ``since``."""
    day = (u.c.created_at // literal_column(str(DAY_US), BigInteger)).label("day")
    rows = conn.execute(
        select(day)
        .distinct()
        .select_from(
            entries.join(transactions, transactions.c.id == entries.c.transaction_id).join(
                u, u.c.id == transactions.c.usage_record_id
            )
        )
        .where(
            entries.c.id > since,
            entries.c.account_id == scope.account_id,
            u.c.created_at < before_day * DAY_US,
        )
    )
    return {int(row.day) for row in rows}


@dataclass
class _Plan:
    compute: list[int]
    drop: set[int]
    reset: bool
    watermark: int | None


def _plan(conn: Connection, scope: Scope, start_day: int, end_day: int, live_day: int) -> _Plan:
    watermark = conn.execute(
        select(usage_daily_watermarks.c.entry_id).where(
            usage_daily_watermarks.c.scope_id == scope.scope_id
        )
    ).scalar()
    newest = int(conn.execute(select(func.coalesce(func.max(entries.c.id), 0))).scalar() or 0)
    drop: set[int] = set()
    reset = False
    if watermark is not None and newest > watermark:
        if newest - watermark > RESET_AFTER:
            reset = True
        else:
            drop = _changed_days(conn, scope, watermark - MARGIN, live_day)
    kept = set(
        conn.execute(
            select(usage_daily_days.c.day).where(
                usage_daily_days.c.scope_id == scope.scope_id,
                usage_daily_days.c.day >= start_day,
                usage_daily_days.c.day <= end_day,
            )
        ).scalars()
    )
    if reset:
        kept = set()
    compute = [d for d in range(start_day, end_day + 1) if d not in kept or d in drop]
    move = watermark is None or reset or bool(drop) or newest - watermark > ADVANCE_AFTER
    return _Plan(compute, drop, reset, newest if move else None)


def _apply(conn: Connection, scope: Scope, plan: _Plan) -> None:
    where_scope = usage_daily.c.scope_id == scope.scope_id
    days_scope = usage_daily_days.c.scope_id == scope.scope_id
    if plan.reset:
        conn.execute(delete(usage_daily).where(where_scope))
        conn.execute(delete(usage_daily_days).where(days_scope))
    elif plan.drop:
        conn.execute(delete(usage_daily).where(where_scope, usage_daily.c.day.in_(plan.drop)))
        conn.execute(
            delete(usage_daily_days).where(days_scope, usage_daily_days.c.day.in_(plan.drop))
        )
    if plan.compute:
        # Another request may have made some of these days meanwhile.
        done = set(
            conn.execute(
                select(usage_daily_days.c.day).where(
                    days_scope, usage_daily_days.c.day.in_(plan.compute)
                )
            ).scalars()
        )
        for first, last in _runs(d for d in plan.compute if d not in done):
            _compute(conn, scope, first, last)
    if plan.watermark is not None:
        db.insert_ignore(
            conn, usage_daily_watermarks, scope_id=scope.scope_id, entry_id=plan.watermark
        )
        conn.execute(
            update(usage_daily_watermarks)
            .where(usage_daily_watermarks.c.scope_id == scope.scope_id)
            .values(entry_id=plan.watermark)
        )


def _runs(days: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive days as (first, last) ranges: one scan per range."""
    runs: list[tuple[int, int]] = []
    for day in sorted(days):
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _compute(conn: Connection, scope: Scope, first: int, last: int) -> None:
    sums = grouped(
        conn,
        [
            scope.condition(),
            u.c.created_at >= first * DAY_US,
            u.c.created_at < (last + 1) * DAY_US,
        ],
    )
    if sums:
        conn.execute(
            insert(usage_daily),
            [
                {
                    "scope_id": scope.scope_id,
                    "day": key[0],
                    **dict(zip(DIMENSIONS, key[1:], strict=True)),
                    **dict(zip(MEASURES, values, strict=True)),
                }
                for key, values in sums.items()
            ],
        )
    now = db.now_us()
    conn.execute(
        insert(usage_daily_days),
        [
            {"scope_id": scope.scope_id, "day": day, "computed_at": now}
            for day in range(first, last + 1)
        ],
    )


def ensure(database: Database, scope: Scope, start_day: int, end_day: int) -> None:
    """Make the kept totals of ``scope`` for the past days in [start_day, end_day]
    present and current (writes only when something is missing or changed)."""
    live_day = first_live_day()
    end_day = min(end_day, live_day - 1)
    if start_day > end_day:
        return
    with database.read() as conn:
        plan = _plan(conn, scope, start_day, end_day, live_day)
    if not plan.compute and not plan.drop and not plan.reset and plan.watermark is None:
        return
    try:
        database.write(lambda conn: _apply(conn, scope, plan))
    except exc.IntegrityError:
        # A concurrent request made the same days first: they are there.
        return


def forget(conn: Connection, scope_ids: Iterable[str]) -> None:
    """Drop kept totals (after records were written into the past, as the demo does)."""
    ids = list(scope_ids)
    if ids:
        conn.execute(delete(usage_daily).where(usage_daily.c.scope_id.in_(ids)))
        conn.execute(delete(usage_daily_days).where(usage_daily_days.c.scope_id.in_(ids)))
        conn.execute(
            delete(usage_daily_watermarks).where(usage_daily_watermarks.c.scope_id.in_(ids))
        )
