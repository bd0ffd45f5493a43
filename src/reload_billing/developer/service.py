"""The developer portal's reads and writes: an organization's sign-up and sign-in,
the scope of its usage pages, and the users who connected its apps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from ..oauth import service as oauth
from ..oauth.models import connections
from ..organizations import service as organizations
from ..reports.rollups import Scope
from ..usage.models import usage_records
from ..users.models import users

USERS_PER_PAGE = 25


def sign_up(
    conn: Connection, *, name: str, email: str, password: str, environment: str
) -> tuple[Any, str]:
    """A new organization; the person signing up owns it. Returns it and its secret."""
    return organizations.create_organization(
        conn, name=name, email=email, password=password, environment=environment
    )


def authenticate(conn: Connection, email: str, password: str) -> Any | None:
    return organizations.authenticate_owner(conn, email, password)


NO_USER = "usr_none"


def find_user(conn: Connection, user: str) -> Any | None:
    """A user named in a filter by email or by id."""
    column = users.c.email if "@" in user else users.c.id
    value = user.strip().lower() if "@" in user else user.strip()
    return conn.execute(select(users).where(column == value)).first()


def usage_scope(conn: Connection, organization: Any, user: str | None) -> tuple[Scope, str | None]:
    """Whose totals a usage page sums, and the user id its records are filtered
    by: the organization's, or (with a user filter) that user's with it. A user
    who does not exist gets an id that matches nothing."""
    if user is None:
        return Scope.of_organization(organization), None
    found = find_user(conn, user)
    if found is None:
        return Scope(NO_USER, NO_USER, True), NO_USER
    return Scope.of_user(found), str(found.id)


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
                permissions=tuple(scope for scope in oauth.SCOPES if scope in row.scopes.split()),
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
