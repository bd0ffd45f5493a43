"""The usage pages' filters, read from a query string: what the forms send, checked
and turned into a :class:`~reload_billing.reports.service.UsageQuery`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode

from ..errors import InvalidRequest
from .service import DAY_US, STATUSES, Cursor, UsageQuery, today

PERIOD_DAYS = 30
MAX_PERIOD_DAYS = 366


def _day(raw: str, param: str) -> int:
    try:
        moment = date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{param} must be a date (YYYY-MM-DD)", param=param) from None
    return (moment - date(1970, 1, 1)).days


def day_text(day: int) -> str:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()


@dataclass
class UsageFilters:
    """Filters as the form shows them (strings), and what they mean."""

    values: dict[str, str] = field(default_factory=dict)
    agent_id: str | None = None
    user: str | None = None
    start_day: int | None = None
    end_day: int | None = None
    status: str | None = None
    usage_type: str | None = None
    has_charges: bool | None = None
    after: Cursor | None = None
    before: Cursor | None = None

    def query(
        self,
        *,
        user_id: str | None = None,
        organization_id: str | None = None,
        filter_user_id: str | None = None,
    ) -> UsageQuery:
        return UsageQuery(
            user_id=user_id or filter_user_id,
            organization_id=organization_id,
            ai_agent_id=self.agent_id,
            start=self.start_day * DAY_US if self.start_day is not None else None,
            end=(self.end_day + 1) * DAY_US if self.end_day is not None else None,
            status=self.status,
            usage_type=self.usage_type,
            has_charges=self.has_charges,
        )

    def period(self) -> tuple[int, int]:
        """The days the totals and charts cover: the chosen dates, else the last 30."""
        end = self.end_day if self.end_day is not None else today()
        start = self.start_day if self.start_day is not None else end - PERIOD_DAYS + 1
        if end - start + 1 > MAX_PERIOD_DAYS:
            start = end - MAX_PERIOD_DAYS + 1
        return start, end

    def link(self, **changes: str | None) -> str:
        """The query string of these filters with some values changed (None: dropped)."""
        merged = {k: v for k, v in self.values.items() if k not in ("after", "before")}
        merged.update({k: v for k, v in changes.items() if v is not None})
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
        query = urlencode({k: v for k, v in merged.items() if v})
        return f"?{query}" if query else ""

    @property
    def active(self) -> bool:
        return any(v for k, v in self.values.items() if k not in ("after", "before"))


def parse(params: Mapping[str, str], *, developer: bool = False) -> UsageFilters:
    allowed = {"agent", "from", "to", "status", "after", "before"}
    if developer:
        allowed |= {"user", "type", "charged"}
    values = {k: params[k].strip() for k in params if k in allowed and params[k].strip()}
    found = UsageFilters(values=values)
    found.agent_id = values.get("agent")
    if found.agent_id is not None and len(found.agent_id) > 64:
        raise InvalidRequest("agent is not an agent id", param="agent")
    if "from" in values:
        found.start_day = _day(values["from"], "from")
    if "to" in values:
        found.end_day = _day(values["to"], "to")
    if found.start_day is not None and found.end_day is not None:
        if found.start_day > found.end_day:
            raise InvalidRequest("from must not be after to", param="from")
    status = values.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", param="status")
    found.status = status
    found.user = values.get("user")
    if found.user is not None and len(found.user) > 320:
        raise InvalidRequest("user is an email or a user id", param="user")
    found.usage_type = values.get("type")
    if found.usage_type is not None and len(found.usage_type) > 64:
        raise InvalidRequest("type has at most 64 characters", param="type")
    charged = values.get("charged")
    if charged is not None:
        if charged not in ("yes", "no"):
            raise InvalidRequest("charged must be yes or no", param="charged")
        found.has_charges = charged == "yes"
    found.after = Cursor.parse(values.get("after"), "after")
    found.before = Cursor.parse(values.get("before"), "before")
    return found
