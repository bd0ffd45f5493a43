"""AI agents: the id every usage report carries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from .. import db
from ..errors import InvalidRequest, NotFound
from ..ids import new_id
from .models import agents

ACTIVE = "active"
ARCHIVED = "archived"


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("an agent's name has 1-200 characters", param="name")
    return name


def create_agent(conn: Connection, organization_id: str, name: str) -> Any:
    agent_id = new_id("agt")
    conn.execute(
        insert(agents).values(
            id=agent_id,
            organization_id=organization_id,
            name=_check_name(name),
            status=ACTIVE,
            created_at=db.now_us(),
        )
    )
    return get_agent(conn, organization_id, agent_id)


def get_agent(conn: Connection, organization_id: str, agent_id: str) -> Any:
    row = conn.execute(
        select(agents).where(
            and_(agents.c.id == agent_id, agents.c.organization_id == organization_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such agent in this organization", param="aiAgentId")
    return row


def rename_agent(conn: Connection, organization_id: str, agent_id: str, name: str) -> Any:
    get_agent(conn, organization_id, agent_id)
    conn.execute(update(agents).where(agents.c.id == agent_id).values(name=_check_name(name)))
    return get_agent(conn, organization_id, agent_id)


def set_archived(conn: Connection, organization_id: str, agent_id: str, archived: bool) -> Any:
    get_agent(conn, organization_id, agent_id)
    conn.execute(
        update(agents)
        .where(agents.c.id == agent_id)
        .values(status=ARCHIVED if archived else ACTIVE)
    )
    return get_agent(conn, organization_id, agent_id)


def list_agents(
    conn: Connection, organization_id: str, *, include_archived: bool = True
) -> list[Any]:
    query = select(agents).where(agents.c.organization_id == organization_id)
    if not include_archived:
        query = query.where(agents.c.status == ACTIVE)
    return list(conn.execute(query.order_by(agents.c.created_at)).all())


def agent_names(conn: Connection, agent_ids: list[str]) -> dict[str, str]:
    if not agent_ids:
        return {}
    rows = conn.execute(select(agents.c.id, agents.c.name).where(agents.c.id.in_(agent_ids))).all()
    return {row.id: row.name for row in rows}


def agent_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "createdAt": db.rfc3339(row.created_at),
    }
