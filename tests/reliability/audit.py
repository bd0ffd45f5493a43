"""Hold the database to every answer the clients were given.

After a run of :mod:`tests.reliability.traffic` clients, :func:`audit` checks that
every request answered 2xx or 402 is in the database exactly as answered, that no
idempotency key has two records or two charges, that each balance is what the
answers add up to, and that the ledger verifies (in Python and with the CLI).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from reload_billing import jsonbody
from reload_billing.db import Database
from reload_billing.ledger import service as ledger
from reload_billing.ledger.models import accounts, transactions
from reload_billing.money import to_nanos
from reload_billing.usage import service as usage
from reload_billing.usage.models import usage_records
from tests.reliability.servers import ROOT, run_cli
from tests.reliability.traffic import nanos

FIGURES = ROOT / ".reload" / "reliability"
LATER_FIELDS = {"refundedAmount", "transactions", "updatedAt"}


@dataclass
class Figures:
    requests: int = 0
    usage_completed: int = 0
    usage_failed_402: int = 0
    refunds: int = 0
    replayed: int = 0
    retried: int = 0
    shared_key_requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    records_checked: int = 0
    transactions_checked: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_answers(paths: list[Path]) -> list[dict[str, Any]]:
    answers = []
    for path in paths:
        if path.exists():
            answers.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return answers


def _data(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"], parse_float=Decimal)["data"]


def audit(
    database_url: str, answers: list[dict[str, Any]], tenants: list[Any], initial_balance: str
) -> Figures:
    figures = Figures(requests=len(answers))
    figures.statuses = dict(Counter(str(a["status"]) for a in answers))
    figures.replayed = sum(1 for a in answers if a["replayed"])
    figures.retried = sum(1 for a in answers if a["attempts"] > 1)
    unanswered = [a for a in answers if a["status"] is None]
    assert not unanswered, f"{len(unanswered)} requests never got an answer: {unanswered[:3]}"
    server_errors = [a for a in answers if a["status"] >= 500]
    assert not server_errors, f"{len(server_errors)} server errors: {server_errors[:3]}"

    database = Database(database_url)
    try:
        with database.read() as conn:
            records = {
                (row.organization_id, row.idempotency_key): row
                for row in conn.execute(select(usage_records)).all()
            }
            txns = {row.id: row for row in conn.execute(select(transactions)).all()}
            balances = dict(conn.execute(select(accounts.c.id, accounts.c.balance)).all())
            verification = ledger.verify(conn)
    finally:
        database.close()
    assert verification.ok, verification.as_dict()
    assert verification.entries_sum == 0

    by_record: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"charge": [], "refund": []})
    for txn in txns.values():
        if txn.usage_record_id is not None:
            by_record[txn.usage_record_id][txn.kind].append(txn)
    refund_keys = Counter(
        (txn.organization_id, txn.idempotency_key) for txn in txns.values() if txn.kind == "refund"
    )
    assert all(n == 1 for n in refund_keys.values()), "a refund idempotency key was used twice"

    orgs = [t.organization_id for t in tenants]
    sent_usage_keys: set[tuple[str, str]] = set()
    sent_refund_keys: set[tuple[str, str]] = set()
    charged_from_answers: dict[str, int] = {}  # record id -> charged amount, per answers
    record_owner: dict[str, int] = {}
    refunded_from_answers: dict[int, int] = defaultdict(int)  # tenant -> refunds answered
    shared: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    for answer in answers:
        org = orgs[answer["tenant"]]
        if answer["kind"] == "usage":
            sent_usage_keys.add((org, answer["key"]))
            if answer["key"].startswith("shared-"):
                figures.shared_key_requests += 1
                shared[(org, answer["key"])].append(answer)
                continue
            assert answer["status"] in (201, 402), answer
            data = _data(answer)
            row = records.get((org, answer["key"]))
            assert row is not None, f"answered {answer['status']} but not in the database: {answer}"
            assert row.id == data["id"], (row, answer)
            # Every field as answered (refunds may come later and change only those).
            stored = json.loads(
                jsonbody.dumps(usage.record_json(row._mapping, [])), parse_float=Decimal
            )
            for name in set(data) | set(stored):
                if name not in LATER_FIELDS:
                    assert stored.get(name) == data.get(name), (
                        name,
                        stored.get(name),
                        data.get(name),
                    )
            assert row.total_cost == to_nanos(Decimal(answer["cost"])) == nanos(data["totalCost"])
            charges = by_record[row.id]["charge"]
            if answer["status"] == 201:
                figures.usage_completed += 1
                assert row.status == data["status"] == "completed", (row, answer)
                assert row.charged and row.charged_amount == nanos(data["chargedAmount"])
                answered_charges = {t["id"] for t in data["transactions"] if t["type"] == "usage"}
                assert len(charges) == 1 and answered_charges == {charges[0].id}, (row, answer)
                assert charges[0].amount == row.charged_amount
                charged_from_answers[row.id] = row.charged_amount
                record_owner[row.id] = answer["tenant"]
            else:
                figures.usage_failed_402 += 1
                assert row.status == data["status"] == "failed", (row, answer)
                assert not row.charged and row.charged_amount == 0 and not charges, (row, answer)
                assert row.failure_reason == data["failureReason"] is not None
        else:
            sent_refund_keys.add((org, answer["key"]))
            assert answer["status"] == 201, answer
            figures.refunds += 1
            data = _data(answer)
            txn = txns.get(data["id"])
            assert txn is not None, f"refund answered but not in the ledger: {answer}"
            assert txn.kind == "refund" and txn.usage_record_id == answer["record"], (txn, answer)
            assert txn.idempotency_key == answer["key"] and txn.organization_id == org
            assert txn.amount == nanos(data["amount"])
            if answer["amount"] is not None:
                assert txn.amount == to_nanos(Decimal(answer["amount"]))
            refunded_from_answers[answer["tenant"]] += txn.amount

    for (org, key), group in shared.items():
        row = records.get((org, key))
        answered = [a for a in group if a["status"] in (201, 402)]
        assert all(a["status"] in (201, 402, 409) for a in group), group
        if not answered:
            continue
        assert row is not None, group
        completed = [a for a in answered if a["status"] == 201]
        assert all(_data(a)["id"] == row.id for a in answered), (row, group)
        charges = by_record[row.id]["charge"]
        assert len(charges) <= 1, f"shared key {key} charged {len(charges)} times"
        if completed:
            assert row.status == "completed" and row.charged and len(charges) == 1, (row, group)
            for a in completed:
                ids = {t["id"] for t in _data(a)["transactions"] if t["type"] == "usage"}
                assert ids == {charges[0].id}, (row, a)
            charged_from_answers[row.id] = row.charged_amount
            record_owner[row.id] = orgs.index(org)
        else:
            # Every answer said 402; a later attempt may have charged it only if it
            # was answered, so the record must still be failed.
            assert row.status == "failed" and not charges, (row, group)

    for (org, key), row in records.items():
        assert (org, key) in sent_usage_keys, f"a record nobody asked for: {row}"
        charges = by_record[row.id]["charge"]
        refunds = by_record[row.id]["refund"]
        assert len(charges) <= 1, f"record {row.id} charged {len(charges)} times"
        assert row.charged_amount == sum(t.amount for t in charges), row
        assert row.refunded_amount == sum(t.amount for t in refunds), row
        assert row.refunded_amount <= row.charged_amount, row
        figures.records_checked += 1
    for txn in txns.values():
        if txn.kind == "refund":
            assert (txn.organization_id, txn.idempotency_key) in sent_refund_keys, txn
        figures.transactions_checked += 1

    start = to_nanos(Decimal(initial_balance))
    for index, tenant in enumerate(tenants):
        charged = sum(v for r, v in charged_from_answers.items() if record_owner[r] == index)
        expected = start - charged + refunded_from_answers[index]
        assert balances[tenant.billing_account_id] == expected, (
            f"tenant {index}: balance {balances[tenant.billing_account_id]}, answers say {expected}"
        )
        assert balances[tenant.billing_account_id] >= 0

    cli = run_cli(database_url, "ledger", "verify", "--json")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["ok"] is True
    figures.extra["ledger"] = verification.as_dict()
    return figures


def write_figures(name: str, figures: Figures, **extra: Any) -> dict[str, Any]:
    """Keep the figures of the last run for docs/reliability.md."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(figures), **extra}
    payload["extra"].pop("ledger", None)
    (FIGURES / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    print(f"\n{name}: {json.dumps(payload, sort_keys=True)}")
    return payload
