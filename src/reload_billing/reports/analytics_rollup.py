"""Daily sums of usage records for the analytics API, kept exact as records change.

Every change to a usage record's sums happens in ``usage/service.py`` -- a record
inserted, a failed charge retried, a refund -- and each one calls a function here in
the same database transaction. The change becomes deferred increments
(``db.defer_increment``): summed over the whole group-committed batch and written
once per row of ``usage_analytics_daily``, in a fixed order, just before the commit,
so that the rows every report of an organization touches (same day, agent, model)
are locked only for an instant and never out of order. A unit of work that fails
takes its increments with it (its savepoint is rolled back, and so are they).

:func:`rebuild` recomputes the rows from the records (for records written by other
means, such as a bulk import).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, and_, case, delete, func, select

from .. import db
from ..ledger.models import transactions
from ..usage.models import usage_records
from .models import usage_analytics_daily

DAY_US = 86_400_000_000
PREFIX = "analytics\x1f"
DIMENSIONS = ("organization_id", "day", "ai_agent_id", "llm_model", "llm_provider",
              "usage_type", "status")  # fmt: skip
MEASURES = (
    "records", "total_cost", "charged_amount", "refunded_amount", "platform_fee",
    "fee_returned", "input_tokens", "output_tokens", "total_tokens", "internal_credits",
    "processing_us", "processing_count", "failed",
)  # fmt: skip
_FEE_RETURNED = MEASURES.index("fee_returned")
_REFUNDED = MEASURES.index("refunded_amount")
_KEY = ("organization_id", "day", "dims")


def _dims(record: Mapping[str, Any] | RowMapping) -> tuple[Any, ...]:
    return (
        record["organization_id"],
        int(record["usage_date"]) // DAY_US,
        record["ai_agent_id"],
        record["llm_model"],
        record["llm_provider"],
        record["usage_type"],
        record["status"],
    )


def _measures(record: Mapping[str, Any] | RowMapping) -> list[int]:
    """What one record adds to its row (the fee given back by refunds aside)."""
    processing = record["processing_time_ms"]
    return [
        1,
        int(record["total_cost"]),
        int(record["charged_amount"]),
        int(record["refunded_amount"]),
        int(record["platform_fee"]),
        0,
        int(record["input_tokens"] or 0),
        int(record["output_tokens"] or 0),
        int(record["total_tokens"] or 0),
        int(record["internal_credits"] or 0),
        # Microseconds, rounded half up: what db.floor_int(ms * 1000 + 0.5) gives in SQL.
        math.floor(processing * 1000 + 0.5) if processing is not None else 0,
        1 if processing is not None else 0,
        1 if record["status"] == "failed" else 0,
    ]


def _defer(conn: Connection, dims: tuple[Any, ...], measures: Iterable[int], sign: int) -> None:
    row = orjson.dumps(dims).decode()
    for index, amount in enumerate(measures):
        if amount:
            db.defer_increment(conn, f"{PREFIX}{index}\x1f{row}", sign * amount)


def record_added(conn: Connection, record: Mapping[str, Any]) -> None:
    """A usage record was inserted (``record``: its column values)."""
    _defer(conn, _dims(record), _measures(record), 1)


def record_changed(conn: Connection, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """A record's status or charge changed (a failed charge retried)."""
    old, new = _measures(before), _measures(after)
    if _dims(before) == _dims(after) and old == new:
        return
    _defer(conn, _dims(before), old, -1)
    _defer(conn, _dims(after), new, 1)


def record_refunded(
    conn: Connection, record: Mapping[str, Any], amount: int, fee_returned: int
) -> None:
    """Part of a record's charge was refunded, and ``fee_returned`` of its fee."""
    measures = [0] * len(MEASURES)
    measures[_REFUNDED] = amount
    measures[_FEE_RETURNED] = fee_returned
    _defer(conn, _dims(record), measures, 1)


def digest(dims: tuple[Any, ...]) -> str:
    return hashlib.sha256(orjson.dumps(dims[2:])).hexdigest()


def _row(dims: tuple[Any, ...], measures: list[int]) -> dict[str, Any]:
    return {
        **dict(zip(DIMENSIONS, dims, strict=True)),
        "dims": digest(dims),
        **dict(zip(MEASURES, measures, strict=True)),
    }


def _apply(conn: Connection, increments: dict[str, int]) -> None:
    rows: dict[str, list[int]] = {}
    for key, amount in increments.items():
        if key.startswith(PREFIX) and amount:
            _, index, dims = key.split("\x1f", 2)
            rows.setdefault(dims, [0] * len(MEASURES))[int(index)] += amount
    db.upsert_add(
        conn,
        usage_analytics_daily,
        [_row(tuple(orjson.loads(dims)), rows[dims]) for dims in sorted(rows)],
        key=_KEY,
        add=MEASURES,
    )


db.on_flush_deferred(_apply)


# --- rebuilding from the records -------------------------------------------------


def rebuild(conn: Connection, organization_id: str | None = None) -> int:
    """Recompute the rows (of one organization, or all) from the usage records and
    the ledger's refunds; returns how many rows were written."""
    u = usage_records
    target = usage_analytics_daily
    if organization_id is None:
        conditions = []
        conn.execute(delete(target))
    else:
        conditions = [u.c.organization_id == organization_id]
        conn.execute(delete(target).where(target.c.organization_id == organization_id))
    fee_returned = (
        select(func.coalesce(func.sum(transactions.c.platform_fee), 0))
        .where(and_(transactions.c.usage_record_id == u.c.id, transactions.c.kind == "refund"))
        .scalar_subquery()
    )
    query = (
        select(
            u.c.organization_id,
            u.c.usage_date,
            u.c.ai_agent_id,
            u.c.llm_model,
            u.c.llm_provider,
            u.c.usage_type,
            u.c.status,
            u.c.total_cost,
            u.c.charged_amount,
            u.c.refunded_amount,
            u.c.platform_fee,
            u.c.input_tokens,
            u.c.output_tokens,
            u.c.total_tokens,
            u.c.internal_credits,
            u.c.processing_time_ms,
            case((u.c.refunded_amount > 0, fee_returned), else_=0).label("fee_returned"),
        )
        .where(*conditions)
        .execution_options(yield_per=10_000)
    )
    # Summed here, record by record, exactly as the increments are: the rounding of
    # each processing time to a microsecond must be the same.
    rows: dict[tuple[Any, ...], list[int]] = {}
    for record in conn.execute(query).mappings():
        measures = _measures(record)
        measures[_FEE_RETURNED] = int(record["fee_returned"] or 0)
        sums = rows.setdefault(_dims(record), [0] * len(MEASURES))
        for index, amount in enumerate(measures):
            sums[index] += amount
    found = [_row(dims, sums) for dims, sums in rows.items()]
    for start in range(0, len(found), 5_000):
        conn.execute(target.insert(), found[start : start + 5_000])
    return len(found)
