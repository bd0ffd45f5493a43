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


ACCOUNT_HEADER = [
    "created_at",
    "usage_date",
    "id",
    "organization",
    "agent_id",
    "agent",
    "description",
    "short_description",
    "usage_type",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "total_cost_usd",
    "charged_usd",
    "refunded_usd",
    "status",
    "charge_status",
    "failure_reason",
    "internal_credits",
]


def account_row(row: Any, found: Page) -> list[Any]:
    return [
        fmt.iso(row.created_at),
        fmt.iso(row.usage_date),
        row.id,
        text(found.organization_names.get(row.organization_id, "")),
        row.ai_agent_id,
        text(found.agent_names.get(row.ai_agent_id, "")),
        text(row.description),
        text(row.short_description),
        text(row.usage_type),
        text(row.llm_model),
        text(row.llm_provider),
        _count(row.input_tokens),
        _count(row.output_tokens),
        _count(row.total_tokens),
        fmt.plain_amount(row.total_cost),
        fmt.plain_amount(row.charged_amount),
        fmt.plain_amount(row.refunded_amount),
        row.status,
        charge_status(row),
        row.failure_reason or "",
        fmt.plain_amount(row.internal_credits),
    ]


DEVELOPER_HEADER = [
    "created_at",
    "usage_date",
    "id",
    "user_id",
    "user_email",
    "agent_id",
    "agent",
    "description",
    "short_description",
    "usage_type",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "total_cost_usd",
    "charged_usd",
    "refunded_usd",
    "platform_fee_usd",
    "status",
    "charge_status",
    "failure_reason",
    "internal_credits",
]


def developer_row(row: Any, found: Page) -> list[Any]:
    return [
        fmt.iso(row.created_at),
        fmt.iso(row.usage_date),
        row.id,
        row.user_id,
        text(found.user_emails.get(row.user_id, "")),
        row.ai_agent_id,
        text(found.agent_names.get(row.ai_agent_id, "")),
        text(row.description),
        text(row.short_description),
        text(row.usage_type),
        text(row.llm_model),
        text(row.llm_provider),
        _count(row.input_tokens),
        _count(row.output_tokens),
        _count(row.total_tokens),
        fmt.plain_amount(row.total_cost),
        fmt.plain_amount(row.charged_amount),
        fmt.plain_amount(row.refunded_amount),
        fmt.plain_amount(row.platform_fee),
        row.status,
        charge_status(row),
        row.failure_reason or "",
        fmt.plain_amount(row.internal_credits),
    ]


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
