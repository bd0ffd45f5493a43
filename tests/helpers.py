"""Small helpers shared by tests."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from reload_billing.db import Database
from reload_billing.ledger import service as ledger
from reload_billing.ledger.models import accounts, entries
from reload_billing.money import from_nanos
from reload_billing.usage.models import usage_records

_keys = itertools.count()


def usage_body(agent_id: str, cost: str | float | int = "1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "aiAgentId": agent_id,
        "description": "Answered a question about invoices",
        "totalCost": Decimal(str(cost)) if isinstance(cost, str) else cost,
        "chargeUser": True,
    }
    body.update(fields)
    return body


def balance(database: Database, account_id: str) -> Decimal:
    with database.read() as conn:
        return from_nanos(ledger.balance(conn, account_id))


def entries_balance(database: Database, account_id: str) -> Decimal:
    with database.read() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(entries.c.amount), 0)).where(
                entries.c.account_id == account_id
            )
        ).scalar()
    return from_nanos(int(total or 0))


def assert_ledger_ok(database: Database) -> ledger.Verification:
    with database.read() as conn:
        result = ledger.verify(conn)
    assert result.ok, result.as_dict()
    assert result.entries_sum == 0
    return result


def failed_records(database: Database) -> int:
    """How many usage records hold a failed charge."""
    with database.read() as conn:
        found = conn.execute(
            select(func.count())
            .select_from(usage_records)
            .where(usage_records.c.status == "failed")
        ).scalar()
    return int(found or 0)


def account_balances(database: Database) -> dict[str, int]:
    with database.read() as conn:
        return dict(conn.execute(select(accounts.c.id, accounts.c.balance)).all())


def post(client: Any, path: str, body: Any, **kwargs: Any) -> Any:
    """POST a body with exact decimal numbers (stdlib json cannot write Decimal)."""
    from reload_billing import jsonbody

    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(path, content=jsonbody.dumps(body), headers=headers, **kwargs)


def parse(response: Any) -> Any:
    """An answer's JSON with every number as exact Decimal or int."""
    import json

    return json.loads(response.text, parse_float=Decimal)
