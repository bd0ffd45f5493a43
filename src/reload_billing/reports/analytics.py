"""Usage analytics for developers (``GET /v1/tp/reports/usage``): sums of usage
records grouped by up to three keys, exact.

Two sources give the same sums. Reports that need neither a user nor an hour, over
whole UTC days, read ``usage_analytics_daily`` (a row per organization, day and
combination of agent, model, provider, usage type and status, kept exact by
``analytics_rollup.py`` as records change): a month of a busy organization is a few
thousand rows however many records it holds. The others read the usage records
themselves: one grouped query over the index range ``(organization_id,
usage_date)``, the fee given back by refunds read from the ledger for the (few)
refunded records only.

Money and tokens are summed as integers (money in nano-dollars) and turned into
``Decimal`` here. Hours and days are integer divisions of the microsecond
``usage_date``; months are folded from days here, so the SQL is the same on every
engine. Every sum is additive, so the folding and the totals (the sum of the rows)
are exact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, Table, and_, case, func, literal_column, select

from .. import db
from ..ledger.models import transactions
from ..money import format_usd, from_nanos
from ..usage.models import usage_records
from .models import usage_analytics_daily
from .schemas import GROUP_KEYS, METRICS, UsageReportQuery

HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
MS = Decimal("0.001")

u = usage_records
daily = usage_analytics_daily

# Plain columns a report can group by, in each source.
_KEY_COLUMNS = {
    "aiAgentId": "ai_agent_id",
    "userId": "user_id",
    "llmModel": "llm_model",
    "llmProvider": "llm_provider",
    "usageType": "usage_type",
}


def _sum(column: Any) -> Any:
    return func.coalesce(func.sum(column), 0)


# The part of the platform fee given back with refunds, from the ledger: read only
# for the records that were refunded.
_FEE_RETURNED = (
    select(_sum(transactions.c.platform_fee))
    .where(and_(transactions.c.usage_record_id == u.c.id, transactions.c.kind == "refund"))
    .scalar_subquery()
)

# The sums of a group, in the order Group keeps them: from the records ...
_PROCESSING = 10  # the index of the processing time, summed in microseconds
_RECORD_SUMS: tuple[Any, ...] = (
    func.count(),
    _sum(u.c.total_cost),
    _sum(u.c.charged_amount),
    _sum(u.c.refunded_amount),
    _sum(u.c.platform_fee),
    _sum(case((u.c.refunded_amount > 0, _FEE_RETURNED), else_=0)),
    _sum(u.c.input_tokens),
    _sum(u.c.output_tokens),
    _sum(u.c.total_tokens),
    _sum(u.c.internal_credits),
    None,  # the processing time: see _from_records
    func.count(u.c.processing_time_ms),
    _sum(case((u.c.status == "failed", 1), else_=0)),
)


def _from_records(conn: Connection) -> tuple[Any, ...]:
    # Each processing time (a float of milliseconds) becomes whole microseconds,
    # rounded exactly as the daily rows round it: exact sums, alike from both sources.
    processing_us = db.floor_int(conn, u.c.processing_time_ms * 1000 + 0.5)
    return (*_RECORD_SUMS[:_PROCESSING], _sum(processing_us), *_RECORD_SUMS[_PROCESSING + 1 :])


# ... and from the daily rows.
_FROM_DAILY: tuple[Any, ...] = tuple(
    _sum(daily.c[name])
    for name in (
        "records", "total_cost", "charged_amount", "refunded_amount", "platform_fee",
        "fee_returned", "input_tokens", "output_tokens", "total_tokens", "internal_credits",
        "processing_us", "processing_count", "failed",
    )
)  # fmt: skip


@dataclass
class Group:
    """The sums of one group of records (processing time as Decimal milliseconds)."""

    sums: list[Any]

    @classmethod
    def empty(cls) -> Group:
        sums: list[Any] = [0] * len(_RECORD_SUMS)
        sums[_PROCESSING] = Decimal(0)
        return cls(sums)

    def add(self, other: list[Any]) -> None:
        for i, value in enumerate(other):
            self.sums[i] += value

    def metrics(self) -> dict[str, Any]:
        (records, total_cost, charged, refunded, fee, fee_returned, input_tokens,
         output_tokens, total_tokens, internal, processing_ms, processing_count,
         failed) = self.sums  # fmt: skip
        platform_fee = fee - fee_returned
        average = None
        if processing_count:
            average = (processing_ms / processing_count).quantize(MS)
        return {
            "records": records,
            "totalCost": from_nanos(total_cost),
            "chargedAmount": from_nanos(charged),
            "refundedAmount": from_nanos(refunded),
            "platformFee": from_nanos(platform_fee),
            "netEarnings": from_nanos(charged - refunded - platform_fee),
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": total_tokens,
            "internalTokensOrCredits": from_nanos(internal),
            "avgProcessingTimeMs": average,
            "failedCharges": failed,
        }


def _time_text(key: str, bucket: int, size_us: int) -> str:
    moment = datetime.fromtimestamp(bucket * size_us // 1_000_000, tz=UTC)
    if key == "hour":
        return moment.strftime("%Y-%m-%dT%H:00:00Z")
    if key == "day":
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m")


def uses_daily_rows(query: UsageReportQuery, user_id: str | None = None) -> bool:
    """Whether the daily rows can answer ``query`` (no user, no hour, whole days)."""
    return (
        user_id is None
        and query.user_id is None
        and "userId" not in query.group_by
        and "hour" not in query.group_by
        and (query.start is None or query.start % DAY_US == 0)
        and (query.end is None or query.end % DAY_US == 0)
    )


def _statement(
    conn: Connection, table: Table, organization_id: str, query: UsageReportQuery,
    user_id: str | None, plain: list[str], time_size: int | None,
) -> Any:  # fmt: skip
    """The grouped SELECT over one source: the plain keys, a time bucket, the sums."""
    if table is daily:
        conditions: list[Any] = [daily.c.organization_id == organization_id]
        if query.start is not None:
            conditions.append(daily.c.day >= query.start // DAY_US)
        if query.end is not None:
            conditions.append(daily.c.day < query.end // DAY_US)
        bucket: Any = daily.c.day
        sums = _FROM_DAILY
    else:
        conditions = [u.c.organization_id == organization_id]
        users = sorted({wanted for wanted in (query.user_id, user_id) if wanted is not None})
        for wanted in users:
            conditions.append(u.c.user_id == wanted)
        # One user's records are few: let the planner find them by user (an index on
        # organization and user) rather than scan the period's records; "+ 0" keeps
        # it from using the (organization, usage_date) index for the bounds.
        when = u.c.usage_date + 0 if users else u.c.usage_date
        if query.start is not None:
            conditions.append(when >= query.start)
        if query.end is not None:
            conditions.append(when < query.end)
        # Integer division by a literal, never a bound parameter: PostgreSQL must see
        # the same expression in SELECT and GROUP BY.
        bucket = u.c.usage_date // literal_column(str(time_size or DAY_US), BigInteger)
        sums = _from_records(conn)
    if query.ai_agent_id is not None:
        conditions.append(table.c.ai_agent_id == query.ai_agent_id)
    if query.status is not None:
        conditions.append(table.c.status == query.status)
    groups: list[Any] = [table.c[_KEY_COLUMNS[key]].label(key) for key in plain]
    if time_size is not None:
        groups.append(bucket.label("bucket"))
    statement = select(*groups, *sums).where(*conditions)
    return statement.group_by(*groups) if groups else statement


@dataclass
class UsageReport:
    group_by: tuple[str, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    source: str


def usage_report(
    conn: Connection,
    organization_id: str,
    query: UsageReportQuery,
    *,
    user_id: str | None = None,
    source: str | None = None,
) -> UsageReport:
    """The report of ``query`` for an organization (and only ``user_id``'s records
    when the caller acts for one user). ``source`` ("daily" or "records") forces
    where the sums are read, for tests and benchmarks; by default the daily rows
    answer whenever they can."""
    if source is None:
        source = "daily" if uses_daily_rows(query, user_id) else "records"
    elif source == "daily" and not uses_daily_rows(query, user_id):
        raise ValueError("the daily rows cannot answer this query")
    table = daily if source == "daily" else u
    plain = [key for key in query.group_by if key in _KEY_COLUMNS]
    times = [key for key in query.group_by if key not in _KEY_COLUMNS]
    size_us = HOUR_US if "hour" in times else DAY_US
    statement = _statement(
        conn, table, organization_id, query, user_id, plain, size_us if times else None
    )
    width = len(plain) + (1 if times else 0)
    groups: dict[tuple[Any, ...], Group] = {}
    for row in conn.execute(statement):
        values = tuple(row)
        key = values[: len(plain)]
        if times:
            bucket = int(values[len(plain)])
            key += tuple(_time_text(name, bucket, size_us) for name in times)
        sums: list[Any] = [int(value) for value in values[width:]]
        sums[_PROCESSING] = Decimal(sums[_PROCESSING]) / 1000  # microseconds to ms
        groups.setdefault(key, Group.empty()).add(sums)
    names = plain + times  # the order of the key tuples above
    rows: list[dict[str, Any]] = []
    total = Group.empty()
    for key, group in groups.items():
        if group.sums[0] == 0:
            continue  # no records (an ungrouped query over none, or emptied daily rows)
        total.add(group.sums)
        rows.append({**dict(zip(names, key, strict=True)), **group.metrics()})
    # Sorted by groupBy's keys in their order; a missing value (no model..) first.
    rows.sort(key=lambda r: tuple((r[k] is not None, r[k] or "") for k in query.group_by))
    rows = [{**{k: r[k] for k in query.group_by}, **{m: r[m] for m in METRICS}} for r in rows]
    return UsageReport(query.group_by, rows, total.metrics(), source)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format_usd(value)
    return str(value)


def csv_lines(report: UsageReport) -> Iterator[str]:
    """The rows as CSV: the group keys, then every metric; one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    columns = [*report.group_by, *METRICS]
    writer.writerow(columns)
    for row in report.rows:
        writer.writerow([_safe(_cell(row[column])) for column in columns])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _safe(text: str) -> str:
    # Spreadsheet formula injection: a cell that starts with = + - @ is read as text.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


assert set(GROUP_KEYS) == {*_KEY_COLUMNS, "hour", "day", "month"}
