"""Read models for the pages: usage records in keyset pages, totals per day, agent
and model, and rows for CSV files. Every query is scoped to one user (the
account) or one organization (the developer portal).

Pages are keyset pages on ``(created_at, id)``, newest first, so that the
thousandth page costs what the first one does. Totals come from daily totals kept
for past days (``rollups.py``) and from today's records.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from .. import db
from ..agents.models import agents
from ..db import Database
from ..errors import InvalidRequest
from ..organizations.models import organizations
from ..usage.models import usage_records
from ..users.models import users
from . import rollups
from .models import usage_daily
from .rollups import Scope

DAY_US = 86_400_000_000
PAGE_SIZE = 50
STATUSES = ("completed", "failed", "refunded")
CURSOR_RE = re.compile(r"^(\d{1,19})\.([A-Za-z0-9_\-]{1,40})$")

u = usage_records
# What a page or a CSV shows: everything but the JSON blobs.
LIST_COLUMNS = (
    u.c.id,
    u.c.organization_id,
    u.c.user_id,
    u.c.ai_agent_id,
    u.c.description,
    u.c.short_description,
    u.c.usage_type,
    u.c.total_cost,
    u.c.llm_model,
    u.c.llm_provider,
    u.c.input_tokens,
    u.c.output_tokens,
    u.c.total_tokens,
    u.c.internal_credits,
    u.c.charge_user,
    u.c.usage_date,
    u.c.status,
    u.c.charged,
    u.c.charged_amount,
    u.c.refunded_amount,
    u.c.platform_fee,
    u.c.failure_reason,
    u.c.created_at,
)


@dataclass(frozen=True)
class UsageQuery:
    """Which usage records: the scope (a user or an organization) and the filters.

    ``start`` and ``end`` bound ``created_at`` (microseconds, end exclusive).
    """

    user_id: str | None = None
    organization_id: str | None = None
    ai_agent_id: str | None = None
    start: int | None = None
    end: int | None = None
    status: str | None = None
    usage_type: str | None = None
    has_charges: bool | None = None

    def __post_init__(self) -> None:
        if self.user_id is None and self.organization_id is None:
            raise ValueError("a usage query is scoped to a user or an organization")

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.organization_id is not None:
            found.append(u.c.organization_id == self.organization_id)
        if self.user_id is not None:
            found.append(u.c.user_id == self.user_id)
        if self.ai_agent_id is not None:
            found.append(u.c.ai_agent_id == self.ai_agent_id)
        if self.start is not None:
            found.append(u.c.created_at >= self.start)
        if self.end is not None:
            found.append(u.c.created_at < self.end)
        if self.status == "refunded":
            found.append(u.c.refunded_amount > 0)
        elif self.status is not None:
            found.append(u.c.status == self.status)
        if self.usage_type is not None:
            found.append(u.c.usage_type == self.usage_type)
        if self.has_charges is not None:
            found.append(u.c.charged == self.has_charges)
        return found


# --- keyset pages ---------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    created_at: int
    id: str

    def __str__(self) -> str:
        return f"{self.created_at}.{self.id}"

    @classmethod
    def parse(cls, raw: str | None, param: str) -> Cursor | None:
        if not raw:
            return None
        match = CURSOR_RE.match(raw)
        if match is None:
            raise InvalidRequest(f"{param} is not a page cursor", param=param)
        return cls(int(match.group(1)), match.group(2))

    @classmethod
    def of(cls, row: Any) -> Cursor:
        return cls(int(row.created_at), str(row.id))


@dataclass
class Page:
    rows: list[Any]
    older: Cursor | None = None
    newer: Cursor | None = None
    agent_names: dict[str, str] = field(default_factory=dict)
    organization_names: dict[str, str] = field(default_factory=dict)
    user_emails: dict[str, str] = field(default_factory=dict)


def _older_than(cursor: Cursor) -> ColumnElement[bool]:
    # (created_at, id) < cursor, written so that any index on created_at bounds it.
    return and_(
        u.c.created_at <= cursor.created_at,
        or_(u.c.created_at < cursor.created_at, u.c.id < cursor.id),
    )


def _newer_than(cursor: Cursor) -> ColumnElement[bool]:
    return and_(
        u.c.created_at >= cursor.created_at,
        or_(u.c.created_at > cursor.created_at, u.c.id > cursor.id),
    )


def page(
    conn: Connection,
    query: UsageQuery,
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page, newest first: older than ``after``, or newer than ``before``."""
    base = select(*LIST_COLUMNS).where(*query.conditions())
    if before is not None:
        rows = list(
            conn.execute(
                base.where(_newer_than(before))
                .order_by(u.c.created_at.asc(), u.c.id.asc())
                .limit(limit + 1)
            ).all()
        )
        more_newer = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        found = Page(rows)
        found.newer = Cursor.of(rows[0]) if more_newer and rows else None
        found.older = Cursor.of(rows[-1]) if rows else None
    else:
        stmt = base if after is None else base.where(_older_than(after))
        rows = list(
            conn.execute(stmt.order_by(u.c.created_at.desc(), u.c.id.desc()).limit(limit + 1)).all()
        )
        more_older = len(rows) > limit
        rows = rows[:limit]
        found = Page(rows)
        found.older = Cursor.of(rows[-1]) if more_older and rows else None
        found.newer = Cursor.of(rows[0]) if after is not None and rows else None
    _names(conn, found)
    return found


def _names(conn: Connection, found: Page) -> None:
    agent_ids = sorted({row.ai_agent_id for row in found.rows})
    if agent_ids:
        for row in conn.execute(
            select(agents.c.id, agents.c.name).where(agents.c.id.in_(agent_ids))
        ):
            found.agent_names[row.id] = row.name
    org_ids = sorted({row.organization_id for row in found.rows})
    if org_ids:
        for row in conn.execute(
            select(organizations.c.id, organizations.c.display_name).where(
                organizations.c.id.in_(org_ids)
            )
        ):
            found.organization_names[row.id] = row.display_name
    user_ids = sorted({row.user_id for row in found.rows})
    if user_ids:
        for row in conn.execute(select(users.c.id, users.c.email).where(users.c.id.in_(user_ids))):
            found.user_emails[row.id] = row.email


def iter_rows(conn: Connection, query: UsageQuery, batch: int = 2000) -> Iterator[Page]:
    """Every matching record, newest first, in keyset batches (for CSV files)."""
    after: Cursor | None = None
    while True:
        found = page(conn, query, after=after, limit=batch)
        if found.rows:
            yield found
        if found.older is None:
            return
        after = found.older


# --- totals ---------------------------------------------------------------------


@dataclass
class Totals:
    """Sums over a group of usage records; money in nano-dollars.

    What the organization earned from them: ``gross`` (what was charged) less the
    platform ``fee`` (net of what refunds gave back) less ``refunded``.
    """

    key: Any = None
    records: int = 0
    cost: int = 0
    charged: int = 0
    refunded: int = 0
    platform_fee: int = 0
    fee_returned: int = 0
    tokens: int = 0
    failed: int = 0
    internal_credits: int = 0
    charged_records: int = 0
    refunded_records: int = 0

    def add(self, other: Totals) -> None:
        for name in _TOTALS_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def gross(self) -> int:
        return self.charged

    @property
    def fee(self) -> int:
        return self.platform_fee - self.fee_returned

    @property
    def net(self) -> int:
        return self.charged - self.fee - self.refunded


_TOTALS_FIELDS = (
    "records",
    "cost",
    "charged",
    "refunded",
    "platform_fee",
    "fee_returned",
    "tokens",
    "failed",
    "internal_credits",
    "charged_records",
    "refunded_records",
)


@dataclass
class Summary:
    """Totals of a period: overall, per day (every day of it), per agent, per model."""

    start_day: int
    end_day: int
    total: Totals
    days: list[Totals]
    agents: list[Totals]
    models: list[Totals]
    agent_names: dict[str, str]


def _sum(column: Any) -> Any:
    return func.coalesce(func.sum(column), 0)


def empty_summary(start_day: int, end_day: int) -> Summary:
    days = [Totals(day) for day in range(start_day, end_day + 1)]
    return Summary(start_day, end_day, Totals("all"), days, [], [], {})


def _kept_conditions(scope: Scope, query: UsageQuery) -> list[ColumnElement[bool]]:
    """The query's filters, on the kept daily totals."""
    d = usage_daily
    found: list[ColumnElement[bool]] = [d.c.scope_id == scope.scope_id]
    if scope.is_user and query.organization_id is not None:
        found.append(d.c.organization_id == query.organization_id)
    if query.ai_agent_id is not None:
        found.append(d.c.ai_agent_id == query.ai_agent_id)
    if query.status == "refunded":
        found.append(d.c.refunded.is_(True))
    elif query.status is not None:
        found.append(d.c.status == query.status)
    if query.usage_type is not None:
        found.append(d.c.usage_type == query.usage_type)
    if query.has_charges is not None:
        found.append(d.c.charged.is_(query.has_charges))
    return found


def summary(
    database: Database, scope: Scope, query: UsageQuery, *, start_day: int, end_day: int
) -> Summary:
    """Totals of the records in ``query`` between two UTC days (day numbers since
    the epoch, both included): kept daily totals for past days, the records
    themselves for today."""
    rollups.ensure(database, scope, start_day, end_day)
    live_day = rollups.first_live_day()
    groups: dict[tuple[int, str, str], Totals] = {}

    def add(key: tuple[int, str, str], part: Totals) -> None:
        groups.setdefault(key, Totals(key)).add(part)

    with database.read() as conn:
        kept_end = min(end_day, live_day - 1)
        if start_day <= kept_end:
            d = usage_daily
            for row in conn.execute(
                select(
                    d.c.day,
                    d.c.ai_agent_id,
                    d.c.model,
                    _sum(d.c.records).label("records"),
                    _sum(d.c.cost).label("cost"),
                    _sum(d.c.charged_amount).label("charged"),
                    _sum(d.c.refunded_amount).label("refunded"),
                    _sum(d.c.platform_fee).label("platform_fee"),
                    _sum(d.c.fee_returned).label("fee_returned"),
                    _sum(d.c.tokens).label("tokens"),
                    _sum(case((d.c.status == "failed", d.c.records), else_=0)).label("failed"),
                    _sum(d.c.internal_credits).label("internal_credits"),
                    _sum(case((d.c.charged, d.c.records), else_=0)).label("charged_records"),
                    _sum(case((d.c.refunded, d.c.records), else_=0)).label("refunded_records"),
                )
                .where(*_kept_conditions(scope, query), d.c.day >= start_day, d.c.day <= kept_end)
                .group_by(d.c.day, d.c.ai_agent_id, d.c.model)
            ):
                part = Totals(None, **{name: int(row._mapping[name]) for name in _TOTALS_FIELDS})
                add((int(row.day), row.ai_agent_id, row.model), part)
        live_start = max(start_day, live_day)
        if live_start <= end_day:
            conditions = [
                *query.conditions(),
                u.c.created_at >= live_start * DAY_US,
                u.c.created_at < (end_day + 1) * DAY_US,
            ]
            for key, values in rollups.grouped(conn, conditions).items():
                records, cost, charged, refunded, fee, returned, tokens, credits = values
                part = Totals(
                    None,
                    records=records,
                    cost=cost,
                    charged=charged,
                    refunded=refunded,
                    platform_fee=fee,
                    fee_returned=returned,
                    tokens=tokens,
                    failed=records if key[5] == "failed" else 0,
                    internal_credits=credits,
                    charged_records=records if key[6] else 0,
                    refunded_records=records if key[7] else 0,
                )
                add((key[0], key[2], key[3]), part)
        total = Totals("all")
        days = {day: Totals(day) for day in range(start_day, end_day + 1)}
        by_agent: dict[str, Totals] = {}
        by_model: dict[str, Totals] = {}
        for (day, agent_id, model), group in groups.items():
            total.add(group)
            days.setdefault(day, Totals(day)).add(group)
            by_agent.setdefault(agent_id, Totals(agent_id)).add(group)
            by_model.setdefault(model, Totals(model)).add(group)
        names = agent_names(conn, list(by_agent))
    return Summary(
        start_day=start_day,
        end_day=end_day,
        total=total,
        days=[days[day] for day in sorted(days)],
        agents=sorted(by_agent.values(), key=lambda t: (-t.cost, -t.records, str(t.key))),
        models=sorted(by_model.values(), key=lambda t: (-t.cost, -t.records, str(t.key))),
        agent_names=names,
    )


def agent_names(conn: Connection, agent_ids: list[str]) -> dict[str, str]:
    if not agent_ids:
        return {}
    return {
        row.id: row.name
        for row in conn.execute(
            select(agents.c.id, agents.c.name).where(agents.c.id.in_(sorted(agent_ids)))
        )
    }


def today() -> int:
    """Today's UTC day number (days since 1970-01-01)."""
    return db.now_us() // DAY_US


def today_text() -> str:
    return db.from_us(db.now_us()).strftime("%Y-%m-%d")


# --- the account ----------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionView:
    """A connected app as the account shows it."""

    id: str
    organization_id: str
    organization_display_name: str
    status: str
    scopes: tuple[str, ...]
    permission_words: tuple[str, ...]
    agent_names: tuple[str, ...]
    limit_per_charge: int | None
    limit_daily: int | None
    limit_monthly: int | None
    created_at: int
    disconnected_at: int | None


def user_connections(conn: Connection, user_id: str) -> list[ConnectionView]:
    from ..oauth import service as oauth

    rows = oauth.user_connections(conn, user_id)
    wanted = sorted({a for row in rows if row.agent_ids for a in row.agent_ids.split(",")})
    names = agent_names(conn, wanted)
    views = []
    for row in rows:
        scopes = tuple(row.scopes.split())
        views.append(
            ConnectionView(
                id=row.id,
                organization_id=row.organization_id,
                organization_display_name=row.organization_display_name,
                status=row.status,
                scopes=scopes,
                permission_words=tuple(oauth.SCOPE_WORDS.get(s, s) for s in scopes),
                agent_names=tuple(
                    names.get(a, a) for a in (row.agent_ids.split(",") if row.agent_ids else ())
                ),
                limit_per_charge=row.limit_per_charge,
                limit_daily=row.limit_daily,
                limit_monthly=row.limit_monthly,
                created_at=row.created_at,
                disconnected_at=row.disconnected_at,
            )
        )
    # Active connections first, newest first within each group.
    return sorted(views, key=lambda v: (v.status != "active", -v.created_at))


@dataclass(frozen=True)
class AgentChoice:
    id: str
    name: str
    organization: str


def user_agent_choices(conn: Connection, user_id: str) -> list[AgentChoice]:
    """The agents of every organization the user has connected (for a filter)."""
    from ..oauth.models import connections

    org_ids = select(connections.c.organization_id).where(connections.c.user_id == user_id)
    rows = conn.execute(
        select(agents.c.id, agents.c.name, organizations.c.display_name)
        .join(organizations, organizations.c.id == agents.c.organization_id)
        .where(agents.c.organization_id.in_(org_ids))
        .order_by(organizations.c.display_name, agents.c.name)
    ).all()
    return [AgentChoice(row.id, row.name, row.display_name) for row in rows]
