"""The query of ``GET /v1/tp/reports/usage``: group keys, filters and format, read
from the query string; every bad value is a 400 naming its parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .. import db
from ..errors import InvalidRequest

GROUP_KEYS = (
    "aiAgentId",
    "userId",
    "llmModel",
    "llmProvider",
    "usageType",
    "hour",
    "day",
    "month",
)
TIME_KEYS = ("hour", "day", "month")
MAX_GROUP_KEYS = 3
STATUSES = ("completed", "failed", "pending", "cancelled")
FORMATS = ("json", "csv")
PARAMS = {"groupBy", "startDate", "endDate", "aiAgentId", "userId", "status", "format"}
METRICS = (
    "records",
    "totalCost",
    "chargedAmount",
    "refundedAmount",
    "platformFee",
    "netEarnings",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "internalTokensOrCredits",
    "avgProcessingTimeMs",
    "failedCharges",
)


@dataclass(frozen=True)
class UsageReportQuery:
    """Which usage records (by ``usageDate``, ``start`` included, ``end`` excluded,
    in microseconds) and how to group them."""

    group_by: tuple[str, ...] = ()
    start: int | None = None
    end: int | None = None
    ai_agent_id: str | None = None
    user_id: str | None = None
    status: str | None = None
    format: str = "json"


def _group_by(values: list[str]) -> tuple[str, ...]:
    keys = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise InvalidRequest(
            f"groupBy: unknown key {unknown[0]!r}; use up to {MAX_GROUP_KEYS} of "
            + ", ".join(GROUP_KEYS),
            param="groupBy",
        )
    if len(set(keys)) != len(keys):
        raise InvalidRequest("groupBy names a key twice", param="groupBy")
    if len(keys) > MAX_GROUP_KEYS:
        raise InvalidRequest(f"groupBy takes at most {MAX_GROUP_KEYS} keys", param="groupBy")
    return tuple(keys)


def _moment(raw: str, name: str, *, end: bool) -> int:
    """A date (``2026-01-31``: the whole day) or an RFC 3339 timestamp, as a bound in
    microseconds: the start of it, or (for ``end``) just after it."""
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return db.to_us(moment + timedelta(days=1) if end else moment)
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be a date (YYYY-MM-DD) or an RFC 3339 timestamp", param=name
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return db.to_us(parsed) + (1 if end else 0)


def _text(params: dict[str, list[str]], name: str, limit: int = 64) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"{name} is given more than once", param=name)
    value = values[0].strip()
    if not value or len(value) > limit:
        raise InvalidRequest(f"{name} must be 1-{limit} characters", param=name)
    return value


def _choice(params: dict[str, list[str]], name: str, choices: tuple[str, ...]) -> str | None:
    value = _text(params, name)
    if value is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", param=name)
    return value


def parse_query(params: dict[str, list[str]]) -> UsageReportQuery:
    """``params``: every value of every query parameter, as given."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter {unknown[0]!r}", param=unknown[0], code="unknown_field"
        )
    start_raw = _text(params, "startDate")
    end_raw = _text(params, "endDate")
    start = _moment(start_raw, "startDate", end=False) if start_raw else None
    end = _moment(end_raw, "endDate", end=True) if end_raw else None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("endDate must not be before startDate", param="endDate")
    return UsageReportQuery(
        group_by=_group_by(params.get("groupBy", [])),
        start=start,
        end=end,
        ai_agent_id=_text(params, "aiAgentId"),
        user_id=_text(params, "userId"),
        status=_choice(params, "status", STATUSES),
        format=_choice(params, "format", FORMATS) or "json",
    )
