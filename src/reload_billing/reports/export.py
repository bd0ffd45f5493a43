"""CSV files of usage records: streamed in keyset batches, exact amounts."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

from ..db import Database
from ..web import format as fmt
from . import service
from .service import Page, UsageQuery

Row = Callable[[Any, Page], list[Any]]
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text(value: str | None) -> str:
    """Free text, defused for spreadsheets (OWASP: prefix a quote to formulas)."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _count(value: int | None) -> str:
    return "" if value is None else str(int(value))


def charge_status(row: Any) -> str:
    if row.status == "failed":
        return "failed"
    if row.refunded_amount and row.refunded_amount >= row.charged_amount:
        return "refunded"
    if row.refunded_amount:
        return "partially_refunded"
    return "charged" if row.charged else "not_charged"


Column = tuple[str, Callable[[Any, Page], Any]]

# The columns both CSVs share, before and after the side-specific ones.
_FIRST: list[Column] = [
    ("created_at", lambda row, _: fmt.iso(row.created_at)),
    ("usage_date", lambda row, _: fmt.iso(row.usage_date)),
    ("id", lambda row, _: row.id),
]
_RECORD: list[Column] = [
    ("agent_id", lambda row, _: row.ai_agent_id),
    ("agent", lambda row, found: text(found.agent_names.get(row.ai_agent_id, ""))),
    ("description", lambda row, _: text(row.description)),
    ("short_description", lambda row, _: text(row.short_description)),
    ("usage_type", lambda row, _: text(row.usage_type)),
    ("model", lambda row, _: text(row.llm_model)),
    ("provider", lambda row, _: text(row.llm_provider)),
    ("input_tokens", lambda row, _: _count(row.input_tokens)),
    ("output_tokens", lambda row, _: _count(row.output_tokens)),
    ("total_tokens", lambda row, _: _count(row.total_tokens)),
    ("total_cost_usd", lambda row, _: fmt.plain_amount(row.total_cost)),
    ("charged_usd", lambda row, _: fmt.plain_amount(row.charged_amount)),
    ("refunded_usd", lambda row, _: fmt.plain_amount(row.refunded_amount)),
]
_LAST: list[Column] = [
    ("status", lambda row, _: row.status),
    ("charge_status", lambda row, _: charge_status(row)),
    ("failure_reason", lambda row, _: row.failure_reason or ""),
    ("internal_credits", lambda row, _: fmt.plain_amount(row.internal_credits)),
]
_ACCOUNT: list[Column] = [
    *_FIRST,
    (
        "organization",
        lambda row, found: text(found.organization_names.get(row.organization_id, "")),
    ),
    *_RECORD,
    *_LAST,
]
_DEVELOPER: list[Column] = [
    *_FIRST,
    ("user_id", lambda row, _: row.user_id),
    ("user_email", lambda row, found: text(found.user_emails.get(row.user_id, ""))),
    *_RECORD,
    ("platform_fee_usd", lambda row, _: fmt.plain_amount(row.platform_fee)),
    *_LAST,
]
ACCOUNT_HEADER = [name for name, _ in _ACCOUNT]
DEVELOPER_HEADER = [name for name, _ in _DEVELOPER]


def account_row(row: Any, found: Page) -> list[Any]:
    return [value(row, found) for _, value in _ACCOUNT]


def developer_row(row: Any, found: Page) -> list[Any]:
    return [value(row, found) for _, value in _DEVELOPER]


def stream(
    database: Database, query: UsageQuery, header: list[str], make_row: Row
) -> Iterator[str]:
    """The CSV text in pieces; reads in batches on its own connection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    with database.read() as conn:
        for found in service.iter_rows(conn, query):
            for row in found.rows:
                writer.writerow(make_row(row, found))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
