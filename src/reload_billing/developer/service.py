"""The developer portal's reads and writes: an organization's sign-up and sign-in,
its earnings from the ledger, and the users who connected its apps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, literal_column, select

from ..ledger.models import transactions
from ..oauth import service as oauth
from ..oauth.models import connections
from ..organizations import service as organizations
from ..reports.service import DAY_US, agent_names
from ..usage.models import usage_records
from ..users.models import users

USERS_PER_PAGE = 50


def sign_up(
    conn: Connection, *, name: str, email: str, password: str, environment: str
) -> tuple[Any, str]:
    """A new organization; the person signing up owns it. Returns it and its secret."""
    return organizations.create_organization(
        conn, name=name, email=email, password=password, environment=environment
    )


def authenticate(conn: Connection, email: str, password: str) -> Any | None:
    return organizations.authenticate_owner(conn, email, password)


def resolve_user(conn: Connection, user: str | None) -> str | None:
    """A user filter, given as an email or a user id, as a user id. An unknown
    email gives an id that matches nothing."""
    if user is None:
        return None
    if "@" not in user:
        return user
    found = conn.execute(select(users.c.id).where(users.c.email == user.strip().lower())).scalar()
    return str(found) if found is not None else "usr_none"


# --- earnings -------------------------------------------------------------------


@dataclass
class Earnings:
    """Money an organization earned, in nano-dollars: what it charged, the platform
    fee kept, what it refunded (the fee's share comes back), and the net."""

    key: Any = None
    charges: int = 0
    gross: int = 0
    platform_fee: int = 0
    refunds_count: int = 0
    refunds: int = 0
    fee_returned: int = 0

    @property
    def fee(self) -> int:
        return self.platform_fee - self.fee_returned

    @property
    def net(self) -> int:
        return self.gross - self.fee - self.refunds

    def add(self, other: Earnings) -> None:
        self.charges += other.charges
        self.gross += other.gross
        self.platform_fee += other.platform_fee
        self.refunds_count += other.refunds_count
        self.refunds += other.refunds
        self.fee_returned += other.fee_returned


@dataclass
class EarningsSummary:
    start_day: int
    end_day: int
    total: Earnings
    days: list[Earnings]
    agents: list[Earnings]
    agent_names: dict[str, str] = field(default_factory=dict)


def earnings(
    conn: Connection, organization_id: str, *, start_day: int, end_day: int,
    agent_id: str | None = None,
) -> EarningsSummary:  # fmt: skip
    """Charges and refunds from the ledger, by the day the money moved."""
    t = transactions
    u = usage_records
    day = (t.c.created_at / literal_column(str(DAY_US))).label("day")
    conditions = [
        t.c.organization_id == organization_id,
        t.c.kind.in_(("charge", "refund")),
        t.c.created_at >= start_day * DAY_US,
        t.c.created_at < (end_day + 1) * DAY_US,
    ]
    if agent_id is not None:
        conditions.append(u.c.ai_agent_id == agent_id)
    rows = conn.execute(
        select(
            day,
            u.c.ai_agent_id,
            t.c.kind,
            func.count().label("n"),
            func.coalesce(func.sum(t.c.amount), 0).label("amount"),
            func.coalesce(func.sum(t.c.platform_fee), 0).label("fee"),
        )
        .select_from(t.outerjoin(u, u.c.id == t.c.usage_record_id))
        .where(and_(*conditions))
        .group_by(day, u.c.ai_agent_id, t.c.kind)
    ).all()
    total = Earnings("all")
    days = {d: Earnings(d) for d in range(start_day, end_day + 1)}
    by_agent: dict[str, Earnings] = {}
    for row in rows:
        part = Earnings()
        if row.kind == "charge":
            part.charges, part.gross, part.platform_fee = int(row.n), int(row.amount), int(row.fee)
        else:
            part.refunds_count, part.refunds, part.fee_returned = (
                int(row.n),
                int(row.amount),
                int(row.fee),
            )
        total.add(part)
        days.setdefault(int(row.day), Earnings(int(row.day))).add(part)
        agent = row.ai_agent_id or ""
        by_agent.setdefault(agent, Earnings(agent)).add(part)
    return EarningsSummary(
        start_day=start_day,
        end_day=end_day,
        total=total,
        days=[days[d] for d in sorted(days)],
        agents=sorted(by_agent.values(), key=lambda e: (-e.gross, str(e.key))),
        agent_names=agent_names(conn, [a for a in by_agent if a]),
    )


# --- connected users ------------------------------------------------------------


@dataclass(frozen=True)
class ConnectedUser:
    connection_id: str
    user_id: str
    email: str
    name: str
    status: str
    permissions: tuple[str, ...]
    agent_ids: tuple[str, ...] | None
    connected_at: int
    disconnected_at: int | None
    records: int
    cost: int
    charged: int
    refunded: int


def connected_users(
    conn: Connection, organization_id: str, *, page: int = 1
) -> tuple[list[ConnectedUser], bool]:
    """One page of the organization's connections (newest first), each with the
    user's usage totals for this organization; and whether there is a next page."""
    rows = conn.execute(
        select(
            connections.c.id,
            connections.c.user_id,
            connections.c.scopes,
            connections.c.agent_ids,
            connections.c.status,
            connections.c.created_at,
            connections.c.disconnected_at,
            users.c.email,
            users.c.first_name,
            users.c.last_name,
        )
        .join(users, users.c.id == connections.c.user_id)
        .where(connections.c.organization_id == organization_id)
        .order_by(connections.c.created_at.desc(), connections.c.id.desc())
        .limit(USERS_PER_PAGE + 1)
        .offset((page - 1) * USERS_PER_PAGE)
    ).all()
    more = len(rows) > USERS_PER_PAGE
    rows = rows[:USERS_PER_PAGE]
    user_ids = sorted({row.user_id for row in rows})
    totals: dict[str, Any] = {}
    if user_ids:
        u = usage_records
        totals = {
            row.user_id: row
            for row in conn.execute(
                select(
                    u.c.user_id,
                    func.count().label("records"),
                    func.coalesce(func.sum(u.c.total_cost), 0).label("cost"),
                    func.coalesce(func.sum(u.c.charged_amount), 0).label("charged"),
                    func.coalesce(func.sum(u.c.refunded_amount), 0).label("refunded"),
                )
                .where(u.c.organization_id == organization_id, u.c.user_id.in_(user_ids))
                .group_by(u.c.user_id)
            )
        }
    found = []
    for row in rows:
        sums = totals.get(row.user_id)
        found.append(
            ConnectedUser(
                connection_id=row.id,
                user_id=row.user_id,
                email=row.email,
                name=f"{row.first_name} {row.last_name}",
                status=row.status,
                permissions=tuple(
                    scope for scope in oauth.SCOPES if scope in row.scopes.split()
                ),
                agent_ids=tuple(row.agent_ids.split(",")) if row.agent_ids else None,
                connected_at=row.created_at,
                disconnected_at=row.disconnected_at,
                records=int(sums.records) if sums else 0,
                cost=int(sums.cost) if sums else 0,
                charged=int(sums.charged) if sums else 0,
                refunded=int(sums.refunded) if sums else 0,
            )
        )
    return found, more


def connection_counts(conn: Connection, organization_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(connections.c.status, func.count())
        .where(connections.c.organization_id == organization_id)
        .group_by(connections.c.status)
    ).all()
    return {str(status): int(count) for status, count in rows}
