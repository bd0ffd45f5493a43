"""/v1/tp usage endpoints: thin; the logic is in service.py."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection

from .. import api, db, validation
from ..errors import InvalidRequest
from ..money import MoneyError, parse_usd, to_nanos
from . import service
from .schemas import PreviewCharge, RefundRequest, UsageReport

router = APIRouter(prefix="/v1/tp", tags=["usage"])


@router.post(
    "/usage",
    status_code=201,
    openapi_extra=validation.body_schema(UsageReport),
    summary="Report usage, optionally charging the user",
)
async def report_usage(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    header_key = request.headers.get("idempotency-key")

    def merge_key(body: dict[str, Any]) -> None:
        if header_key is not None:
            if "idempotencyKey" in body and body["idempotencyKey"] != header_key:
                raise InvalidRequest(
                    "the Idempotency-Key header and idempotencyKey differ",
                    param="idempotencyKey",
                    code="idempotency_key_mismatch",
                )
            body["idempotencyKey"] = header_key

    report = await api.body(request, caller, UsageReport, prepare=merge_key)
    fee_percent = api.settings(request).platform_fee_percent

    def work(conn: Connection) -> service.Outcome:
        organization, token, prefetched = service.authenticate(
            conn,
            client_id=caller.client_id,
            client_secret=caller.client_secret,
            access_token=caller.access_token,
            agent_id=report.ai_agent_id,
            idempotency_key=report.idempotency_key,
        )
        return service.report_usage(
            conn, organization, token, report, fee_percent=fee_percent, prefetched=prefetched
        )

    outcome = await api.write(request, work)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if outcome.status_code == 402:
        reason = outcome.record["failureReason"]
        message = (
            "the user's spending limit does not allow this charge"
            if reason == "spending_limit_exceeded"
            else "the user's balance is too low for this charge"
        )
        return api.JSONResponse(
            {
                "status": "error",
                "message": message,
                "error": {"code": reason, "message": message},
                "data": outcome.record,
            },
            402,
            headers,
        )
    return api.success(outcome.record, outcome.status_code, headers)


@router.post("/preview-charge", openapi_extra=validation.body_schema(PreviewCharge))
async def preview_charge(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    preview = await api.body(request, caller, PreviewCharge)

    def work(conn: Connection) -> dict[str, Any]:
        organization = caller.organization(conn)
        return service.preview_charge(
            conn, organization, caller.user(conn, organization.id), preview
        )

    return api.success(api.read(request, work))


_FILTERS = {
    "page",
    "limit",
    "userId",
    "userEmail",
    "startDate",
    "endDate",
    "hasCharges",
    "minAmount",
    "maxAmount",
    "status",
    "aiAgentId",
    "transactionType",
    "idempotencyKey",
    "usageType",
    "sortBy",
    "sortOrder",
}
_STATUSES = ("completed", "failed", "pending", "cancelled")


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}", param=name)
    return int(raw)


def _date(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an RFC 3339 date or timestamp", param=name) from None
    return db.to_us(moment)


def _choice(params: dict[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = params.get(name)
    if raw is not None and raw not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", param=name)
    return raw


MAX_FILTER_USD = Decimal(10) ** 9


def _amount(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        # Bounded so that the nano-dollars fit the database's 64-bit integers.
        return to_nanos(parse_usd(raw, maximum=MAX_FILTER_USD))
    except MoneyError as error:
        raise InvalidRequest(f"{name} {error}", param=name) from None


def parse_filters(request: Request) -> service.UsageFilters:
    params = dict(request.query_params)
    unknown = sorted(set(params) - _FILTERS)
    if unknown:
        raise InvalidRequest(
            f"unknown filter {unknown[0]!r}", param=unknown[0], code="unknown_field"
        )
    has_charges = _choice(params, "hasCharges", ("true", "false"))
    return service.UsageFilters(
        page=_int(params, "page", 1, 1, 10_000_000),
        limit=_int(params, "limit", 20, 1, 100),
        user_id=params.get("userId"),
        user_email=params.get("userEmail"),
        start_date=_date(params, "startDate"),
        end_date=_date(params, "endDate"),
        has_charges=None if has_charges is None else has_charges == "true",
        min_amount=_amount(params, "minAmount"),
        max_amount=_amount(params, "maxAmount"),
        status=_choice(params, "status", _STATUSES),
        ai_agent_id=params.get("aiAgentId"),
        transaction_type=_choice(params, "transactionType", ("usage", "refund", "adjustment")),
        idempotency_key=params.get("idempotencyKey"),
        usage_type=params.get("usageType"),
        sort_by=_choice(params, "sortBy", tuple(service.SORT_COLUMNS)) or "createdAt",
        sort_order=_choice(params, "sortOrder", ("asc", "desc")) or "desc",
    )


@router.get("/usage-reports")
def usage_reports(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    try:
        filters = parse_filters(request)
    except InvalidRequest:
        caller.check(request, with_token=False)
        raise

    def work(conn: Connection) -> tuple[list[dict[str, Any]], int]:
        organization = caller.organization(conn)
        token = caller.optional_user(conn, organization.id)
        if token is not None:
            token.require("usage_reporting")
        return service.list_records(conn, organization.id, filters, token)

    records, total = api.read(request, work)
    pages = (total + filters.limit - 1) // filters.limit
    return api.success(
        records,
        pagination={
            "page": filters.page,
            "limit": filters.limit,
            "total": total,
            "totalPages": pages,
        },
    )


@router.get("/usage-reports/{record_id}")
def usage_report(record_id: str, request: Request) -> api.JSONResponse:
    caller = api.Caller(request)

    def work(conn: Connection) -> dict[str, Any]:
        organization = caller.organization(conn)
        token = caller.optional_user(conn, organization.id)
        if token is not None:
            token.require("usage_reporting")
        return service.get_record(conn, organization.id, record_id, token)

    return api.success(api.read(request, work))


@router.post(
    "/usage-reports/{record_id}/refund", openapi_extra=validation.body_schema(RefundRequest)
)
async def refund(record_id: str, request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    refund_request = await api.body(request, caller, RefundRequest, optional=True, with_token=False)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key has 1-255 characters", param="Idempotency-Key")

    def work(conn: Connection) -> tuple[dict[str, Any], bool]:
        organization = caller.organization(conn)
        token = caller.optional_user(conn, organization.id)
        return service.refund(conn, organization, token, record_id, refund_request, key)

    transaction, replayed = await api.write(request, work)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return api.success(transaction, 201, headers)
