"""Usage reports: record, charge exactly once, replay, refund, list."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, exists, func, insert, select, update

from .. import db
from ..agents import service as agents
from ..agents.models import agents as agents_table
from ..errors import Conflict, InvalidRequest, NotFound
from ..ids import hash_secret, new_id
from ..ledger import service as ledger
from ..ledger.models import transactions as transactions_table
from ..money import format_usd, from_nanos, to_nanos
from ..oauth import service as oauth
from ..oauth.models import access_tokens, connections
from ..oauth.service import TokenContext, event_data
from ..organizations import service as organizations
from ..organizations.models import organizations as organizations_table
from ..reports import analytics_rollup
from ..users.models import users
from ..webhooks import service as webhooks
from ..webhooks.models import endpoints as webhook_endpoints
from .models import usage_records
from .schemas import PreviewCharge, RefundRequest, UsageReport, request_hash

COMPLETED = "completed"
FAILED = "failed"
TRANSACTION_TYPES = {"charge": "usage", "refund": "refund", "adjustment": "adjustment"}


@dataclass(frozen=True)
class Outcome:
    """What a usage report led to: the HTTP status, the record, and whether it is
    a replay of an earlier answer."""

    status_code: int
    record: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Organization:
    id: str
    environment: str
    earnings_account_id: str


_AGENT_STATUS = select(agents_table.c.status).where(
    and_(
        agents_table.c.id == bindparam("agent_id"),
        agents_table.c.organization_id == bindparam("organization_id"),
    )
)
_BY_KEY = select(usage_records).where(
    and_(
        usage_records.c.organization_id == bindparam("organization_id"),
        usage_records.c.idempotency_key == bindparam("key"),
    )
)
_INSERT_RECORD = db.Prepared(insert(usage_records))


def _check_agent(conn: Connection, organization_id: str, agent_id: str) -> None:
    status = conn.execute(
        _AGENT_STATUS, {"agent_id": agent_id, "organization_id": organization_id}
    ).scalar()
    _agent_usable(status)


def _agent_usable(status: str | None) -> None:
    if status is None:
        raise NotFound(
            "no such agent in this organization", param="aiAgentId", code="agent_not_found"
        )
    if status != agents.ACTIVE:
        raise InvalidRequest("this agent is archived", param="aiAgentId", code="agent_archived")


@dataclass(frozen=True)
class Prefetched:
    """What the hot path's one context query already learnt (see ``authenticate``)."""

    agent_status: str | None
    existing_id: str | None
    has_webhooks: bool


# The hot path's one read: the organization by client id, the token by hash with its
# connection and user, the agent, whether the organization has webhooks, and any
# record already made with this idempotency key.
_CONTEXT = db.Prepared(
    select(
        organizations_table.c.id.label("organization_id"),
        organizations_table.c.environment,
        organizations_table.c.earnings_account_id,
        organizations_table.c.client_secret_hash,
        *oauth.TOKEN_COLUMNS,
        agents_table.c.status.label("agent_status"),
        usage_records.c.id.label("existing_id"),
        exists()
        .where(
            and_(
                webhook_endpoints.c.organization_id == organizations_table.c.id,
                webhook_endpoints.c.enabled,
            )
        )
        .label("has_webhooks"),
    )
    .select_from(organizations_table)
    .outerjoin(access_tokens, access_tokens.c.token_hash == bindparam("token_hash"))
    .outerjoin(connections, connections.c.id == access_tokens.c.connection_id)
    .outerjoin(users, users.c.id == access_tokens.c.user_id)
    .outerjoin(
        agents_table,
        and_(
            agents_table.c.id == bindparam("agent_id"),
            agents_table.c.organization_id == organizations_table.c.id,
        ),
    )
    .outerjoin(
        usage_records,
        and_(
            usage_records.c.organization_id == organizations_table.c.id,
            usage_records.c.idempotency_key == bindparam("key"),
        ),
    )
    .where(organizations_table.c.client_id == bindparam("client_id"))
)


def authenticate(
    conn: Connection,
    *,
    client_id: str,
    client_secret: str,
    access_token: str | None,
    agent_id: str,
    idempotency_key: str | None,
) -> tuple[Organization, TokenContext, Prefetched]:
    """Client credentials, access token and what a usage report needs, in one query."""
    found = _CONTEXT.first(
        conn,
        {
            "client_id": client_id,
            "token_hash": hash_secret(access_token) if access_token else "",
            "agent_id": agent_id,
            "key": idempotency_key,
        },
    )
    row = organizations.check_client_secret(found, client_secret)
    organization = Organization(row.organization_id, row.environment, row.earnings_account_id)
    if not access_token:
        raise oauth.missing_token()
    if row.token_id is None or row.token_organization_id != organization.id:
        raise oauth.invalid_token()
    token = oauth.token_context(row, db.now_us())
    return organization, token, Prefetched(row.agent_status, row.existing_id, row.has_webhooks)


def report_usage(
    conn: Connection,
    organization: Organization,
    token: TokenContext,
    report: UsageReport,
    *,
    fee_percent: Decimal,
    prefetched: Prefetched | None = None,
) -> Outcome:
    token.require("usage_reporting")
    if report.charge_user:
        token.require("payment")
    token.require_agent(report.ai_agent_id)
    body_hash = None  # only a report with an idempotency key is compared with another
    if report.idempotency_key is not None:
        body_hash = request_hash(report, token.user_id)
        if prefetched is None or prefetched.existing_id:
            existing = conn.execute(
                _BY_KEY, {"organization_id": organization.id, "key": report.idempotency_key}
            ).first()
            if existing is not None:
                return _repeat(conn, organization, token, existing, body_hash, fee_percent)
    if prefetched is None:
        _check_agent(conn, organization.id, report.ai_agent_id)
    else:
        _agent_usable(prefetched.agent_status)
    now = db.now_us()
    record_id = new_id("use")
    total = to_nanos(report.total_cost)
    values = _record_values(report)
    values.update(
        id=record_id,
        organization_id=organization.id,
        user_id=token.user_id,
        connection_id=token.connection_id,
        request_hash=body_hash,
        usage_date=db.to_us(report.usage_date) if report.usage_date else now,
        status=COMPLETED,
        charged=False,
        charged_amount=0,
        refunded_amount=0,
        platform_fee=0,
        failure_reason=None,
        attempts=1,
        created_at=now,
        updated_at=now,
    )
    if report.usage_date is not None and values["usage_date"] > now + 60_000_000:
        raise InvalidRequest("usageDate must not be in the future", param="usageDate")
    transactions: list[dict[str, Any]] = []
    if report.charge_user and total > 0:
        try:
            posted = _charge(
                conn, organization, token, record_id, total, report.description, fee_percent
            )
        except ledger.ChargeRefused as refused:
            values.update(status=FAILED, failure_reason=refused.reason)
        else:
            values.update(charged=True, charged_amount=total, platform_fee=posted.platform_fee)
            transactions.append(transaction_json(posted))
    _INSERT_RECORD.execute(conn, values).close()
    analytics_rollup.record_added(conn, values)
    record = record_json(values, transactions)
    if prefetched is None or prefetched.has_webhooks:
        _announce(conn, organization, token.user_id, values, transactions)
    return Outcome(402 if values["status"] == FAILED else 201, record)


def _record_values(report: UsageReport) -> dict[str, Any]:
    total_tokens = report.total_tokens
    if total_tokens is None and (
        report.input_tokens is not None or report.output_tokens is not None
    ):
        total_tokens = (report.input_tokens or 0) + (report.output_tokens or 0)
    return {
        "ai_agent_id": report.ai_agent_id,
        "description": report.description,
        "short_description": report.short_description,
        "usage_type": report.usage_type,
        "total_cost": to_nanos(report.total_cost),
        "cost_before_tax": _nanos_or_none(report.cost_before_tax),
        "tax_amount": _nanos_or_none(report.tax_amount),
        "tax_rate": format_usd(report.tax_rate) if report.tax_rate is not None else None,
        "llm_model": report.llm_model,
        "llm_provider": report.llm_provider,
        "input_tokens": report.input_tokens,
        "output_tokens": report.output_tokens,
        "total_tokens": total_tokens,
        "processing_time_ms": float(report.processing_time_ms)
        if report.processing_time_ms is not None
        else None,
        "model_parameters": _json_text(report.model_parameters),
        "internal_credits": _nanos_or_none(report.internal_tokens_or_credits),
        "charge_user": report.charge_user,
        "idempotency_key": report.idempotency_key,
        "metadata": _json_text(report.metadata),
    }


def _nanos_or_none(amount: Decimal | None) -> int | None:
    return to_nanos(amount) if amount is not None else None


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, default=lambda d: orjson.Fragment(format_usd(d))).decode()


def _charge(
    conn: Connection,
    organization: Organization,
    token: TokenContext,
    record_id: str,
    amount: int,
    description: str,
    fee_percent: Decimal,
) -> ledger.Posted:
    return ledger.charge(
        conn,
        billing_account_id=token.billing_account_id,
        earnings_account_id=organization.earnings_account_id,
        amount=amount,
        fee_percent=fee_percent,
        usage_record_id=record_id,
        organization_id=organization.id,
        user_id=token.user_id,
        description=description[:500],
        connection_id=token.connection_id,
        limits=token.limits,
    )


def _announce(
    conn: Connection,
    organization: Organization,
    user_id: str,
    values: dict[str, Any],
    transactions: list[dict[str, Any]],
) -> None:
    """payment.success / payment.failed into the outbox, same transaction."""
    if values["status"] == FAILED:
        event, extra = "payment.failed", {"failureReason": values["failure_reason"]}
    elif transactions:
        event, extra = "payment.success", {}
    else:
        return
    extra["usageRecordId"] = values["id"]
    if transactions:
        extra["transaction"] = transactions[-1]
    else:
        extra["amount"] = from_nanos(values["total_cost"])
    webhooks.enqueue(
        conn,
        organization.id,
        event,
        lambda: event_data(
            conn, user_id, organization.id, environment=organization.environment, **extra
        ),
    )


def _repeat(
    conn: Connection,
    organization: Organization,
    token: TokenContext,
    existing: Any,
    body_hash: str,
    fee_percent: Decimal,
) -> Outcome:
    """The same idempotency key again: replay, or retry a failed charge."""
    if existing.request_hash != body_hash:
        raise Conflict(
            "this idempotency key was used with a different request",
            code="idempotency_key_reused",
            param="idempotencyKey",
        )
    if existing.status != FAILED:
        return Outcome(201, get_record(conn, organization.id, existing.id), replayed=True)
    values = dict(existing._mapping)
    values["attempts"] = existing.attempts + 1
    values["updated_at"] = db.now_us()
    transactions: list[dict[str, Any]] = []
    try:
        posted = _charge(
            conn,
            organization,
            token,
            existing.id,
            existing.total_cost,
            existing.description,
            fee_percent,
        )
    except ledger.ChargeRefused as refused:
        values["failure_reason"] = refused.reason
    else:
        values.update(
            status=COMPLETED,
            charged=True,
            charged_amount=existing.total_cost,
            platform_fee=posted.platform_fee,
            failure_reason=None,
        )
        transactions.append(transaction_json(posted))
    conn.execute(
        update(usage_records)
        .where(usage_records.c.id == existing.id)
        .values(
            status=values["status"],
            charged=values["charged"],
            charged_amount=values["charged_amount"],
            platform_fee=values["platform_fee"],
            failure_reason=values["failure_reason"],
            attempts=values["attempts"],
            updated_at=values["updated_at"],
        )
    )
    analytics_rollup.record_changed(conn, existing._mapping, values)
    _announce(conn, organization, existing.user_id, values, transactions)
    record = get_record(conn, organization.id, existing.id)
    return Outcome(402 if values["status"] == FAILED else 201, record)


# --- preview and refund ---------------------------------------------------------


def preview_charge(
    conn: Connection, organization: Organization, token: TokenContext, preview: PreviewCharge
) -> dict[str, Any]:
    token.require("payment")
    token.require_agent(preview.ai_agent_id)
    _check_agent(conn, organization.id, preview.ai_agent_id)
    amount = to_nanos(preview.amount)
    balance = ledger.balance(conn, token.billing_account_id)
    reason: str | None = None
    limit: str | None = None
    if preview.idempotency_key is not None:
        charged = conn.execute(
            select(usage_records.c.charged).where(
                and_(
                    usage_records.c.organization_id == organization.id,
                    usage_records.c.idempotency_key == preview.idempotency_key,
                )
            )
        ).scalar()
        if charged:
            reason = "already_charged"
    if reason is None:
        limit = ledger.check_limits(conn, token.connection_id, token.limits, amount)
        if limit is not None:
            reason = "spending_limit_exceeded"
        elif balance < amount:
            reason = "insufficient_balance"
    return {
        "canCharge": reason is None,
        "amount": from_nanos(amount),
        "balance": from_nanos(balance),
        "reason": reason,
        "limit": limit,
    }


def refund(
    conn: Connection,
    organization: Organization,
    token: TokenContext | None,
    record_id: str,
    request: RefundRequest,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """A refund of a charged record; returns the transaction and whether it is a replay."""
    if token is not None:
        token.require("payment")
    record = _owned_record(conn, organization.id, token, record_id)
    if idempotency_key is not None:
        earlier = ledger.transaction_by_key(conn, organization.id, idempotency_key)
        if earlier is not None:
            if earlier.usage_record_id != record_id or (
                request.amount is not None and to_nanos(request.amount) != earlier.amount
            ):
                raise Conflict(
                    "this idempotency key was used with a different request",
                    code="idempotency_key_reused",
                )
            return transaction_json(earlier), True
    if not record.charged:
        raise InvalidRequest("this usage record was not charged", code="not_charged")
    left = record.charged_amount - record.refunded_amount
    amount = to_nanos(request.amount) if request.amount is not None else left
    if left == 0:
        raise InvalidRequest("this usage record is fully refunded", code="already_refunded")
    if amount > left:
        raise InvalidRequest(
            f"amount exceeds what is left to refund ({format_usd(from_nanos(left))} USD)",
            param="amount",
            code="refund_exceeds_charge",
        )
    if amount == 0:
        raise InvalidRequest("amount must be greater than zero", param="amount")
    billing_account_id = conn.execute(
        select(users.c.billing_account_id).where(users.c.id == record.user_id)
    ).scalar_one()
    posted = ledger.refund(
        conn,
        billing_account_id=billing_account_id,
        earnings_account_id=organization.earnings_account_id,
        charged=record.charged_amount,
        charge_fee=record.platform_fee,
        refunded_before=record.refunded_amount,
        amount=amount,
        usage_record_id=record.id,
        organization_id=organization.id,
        user_id=record.user_id,
        reason=request.reason,
        idempotency_key=idempotency_key,
        connection_id=record.connection_id,
        charged_at=ledger.charged_at(conn, record.id),
    )
    claimed = conn.execute(
        update(usage_records)
        .where(
            and_(
                usage_records.c.id == record.id,
                usage_records.c.refunded_amount == record.refunded_amount,
            )
        )
        .values(refunded_amount=record.refunded_amount + amount, updated_at=db.now_us())
    )
    if claimed.rowcount != 1:
        raise Conflict(
            "a concurrent refund changed this record; try again", code="refund_in_progress"
        )
    analytics_rollup.record_refunded(conn, record._mapping, amount, posted.platform_fee)
    return transaction_json(posted), False


# --- reading --------------------------------------------------------------------


def _owned_record(
    conn: Connection, organization_id: str, token: TokenContext | None, record_id: str
) -> Any:
    query = select(usage_records).where(
        and_(usage_records.c.id == record_id, usage_records.c.organization_id == organization_id)
    )
    if token is not None:
        query = query.where(usage_records.c.user_id == token.user_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("no such usage record", param="id")
    return row


def get_record(
    conn: Connection, organization_id: str, record_id: str, token: TokenContext | None = None
) -> dict[str, Any]:
    row = _owned_record(conn, organization_id, token, record_id)
    found = ledger.transactions_of_usage(conn, [row.id])
    return record_json(row._mapping, [transaction_json(txn) for txn in found[row.id]])


def records_json(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    found = ledger.transactions_of_usage(conn, [row.id for row in rows])
    return [
        record_json(row._mapping, [transaction_json(txn) for txn in found[row.id]]) for row in rows
    ]


def transaction_json(txn: Any) -> dict[str, Any]:
    amount = txn.amount
    fee = txn.platform_fee
    return {
        "id": txn.id,
        "type": TRANSACTION_TYPES.get(txn.kind, txn.kind),
        "status": "completed",
        "amount": from_nanos(amount),
        "platformFee": from_nanos(fee),
        "netAmount": from_nanos(amount - fee),
        "description": getattr(txn, "description", None),
        "idempotencyKey": getattr(txn, "idempotency_key", None),
        "createdAt": db.rfc3339(txn.created_at),
    }


def _money_or_none(nanos: int | None) -> Decimal | None:
    return from_nanos(nanos) if nanos is not None else None


def record_json(row: Any, transactions: list[dict[str, Any]]) -> dict[str, Any]:
    processing = row["processing_time_ms"]
    return {
        "id": row["id"],
        "userId": row["user_id"],
        "organizationId": row["organization_id"],
        "aiAgentId": row["ai_agent_id"],
        "description": row["description"],
        "shortDescription": row["short_description"],
        "usageType": row["usage_type"],
        "totalCost": from_nanos(row["total_cost"]),
        "costBeforeTax": _money_or_none(row["cost_before_tax"]),
        "taxRate": Decimal(row["tax_rate"]) if row["tax_rate"] is not None else None,
        "taxAmount": _money_or_none(row["tax_amount"]),
        "llmModel": row["llm_model"],
        "llmProvider": row["llm_provider"],
        "inputTokens": row["input_tokens"],
        "outputTokens": row["output_tokens"],
        "totalTokens": row["total_tokens"],
        "processingTimeMs": _plain_number(processing),
        "modelParameters": orjson.loads(row["model_parameters"])
        if row["model_parameters"]
        else None,
        "internalTokensOrCredits": _money_or_none(row["internal_credits"]),
        "chargeUser": bool(row["charge_user"]),
        "idempotencyKey": row["idempotency_key"],
        "metadata": orjson.loads(row["metadata"]) if row["metadata"] else None,
        "usageDate": db.rfc3339(row["usage_date"]),
        "status": row["status"],
        "charged": bool(row["charged"]),
        "chargedAmount": from_nanos(row["charged_amount"]),
        "refundedAmount": from_nanos(row["refunded_amount"]),
        "platformFee": from_nanos(row["platform_fee"]),
        "failureReason": row["failure_reason"],
        "transactions": transactions,
        "createdAt": db.rfc3339(row["created_at"]),
        "updatedAt": db.rfc3339(row["updated_at"]),
    }


def _plain_number(value: float | None) -> Decimal | int | None:
    if value is None:
        return None
    return int(value) if value == int(value) else Decimal(repr(value))


SORT_COLUMNS = {
    "createdAt": usage_records.c.created_at,
    "usageDate": usage_records.c.usage_date,
    "amount": usage_records.c.charged_amount,
    "totalCost": usage_records.c.total_cost,
}


@dataclass(frozen=True)
class UsageFilters:
    page: int = 1
    limit: int = 20
    user_id: str | None = None
    user_email: str | None = None
    start_date: int | None = None
    end_date: int | None = None
    has_charges: bool | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    status: str | None = None
    ai_agent_id: str | None = None
    transaction_type: str | None = None
    idempotency_key: str | None = None
    usage_type: str | None = None
    sort_by: str = "createdAt"
    sort_order: str = "desc"


def list_records(
    conn: Connection, organization_id: str, filters: UsageFilters, token: TokenContext | None
) -> tuple[list[dict[str, Any]], int]:
    conditions: list[Any] = [usage_records.c.organization_id == organization_id]
    if token is not None:
        conditions.append(usage_records.c.user_id == token.user_id)
    if filters.user_id is not None:
        conditions.append(usage_records.c.user_id == filters.user_id)
    if filters.user_email is not None:
        conditions.append(
            usage_records.c.user_id.in_(
                select(users.c.id).where(users.c.email == filters.user_email.strip().lower())
            )
        )
    if filters.start_date is not None:
        conditions.append(usage_records.c.usage_date >= filters.start_date)
    if filters.end_date is not None:
        conditions.append(usage_records.c.usage_date <= filters.end_date)
    if filters.has_charges is not None:
        conditions.append(usage_records.c.charged == filters.has_charges)
    if filters.min_amount is not None:
        conditions.append(usage_records.c.total_cost >= filters.min_amount)
    if filters.max_amount is not None:
        conditions.append(usage_records.c.total_cost <= filters.max_amount)
    if filters.status is not None:
        conditions.append(usage_records.c.status == filters.status)
    if filters.ai_agent_id is not None:
        conditions.append(usage_records.c.ai_agent_id == filters.ai_agent_id)
    if filters.idempotency_key is not None:
        conditions.append(usage_records.c.idempotency_key == filters.idempotency_key)
    if filters.usage_type is not None:
        conditions.append(usage_records.c.usage_type == filters.usage_type)
    if filters.transaction_type is not None:
        kind = {v: k for k, v in TRANSACTION_TYPES.items()}[filters.transaction_type]
        conditions.append(
            exists().where(
                and_(
                    transactions_table.c.usage_record_id == usage_records.c.id,
                    transactions_table.c.kind == kind,
                )
            )
        )
    where = and_(*conditions)
    total = int(
        conn.execute(select(func.count()).select_from(usage_records).where(where)).scalar() or 0
    )
    column = SORT_COLUMNS[filters.sort_by]
    order = (
        [column.desc(), usage_records.c.id.desc()]
        if filters.sort_order == "desc"
        else [
            column.asc(),
            usage_records.c.id.asc(),
        ]
    )
    rows = list(
        conn.execute(
            select(usage_records)
            .where(where)
            .order_by(*order)
            .limit(filters.limit)
            .offset((filters.page - 1) * filters.limit)
        ).all()
    )
    return records_json(conn, rows), total
