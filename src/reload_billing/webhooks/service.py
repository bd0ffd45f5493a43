"""Webhook events: written to the outbox in the transaction that causes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select

from .. import db, jsonbody
from ..ids import new_id
from .models import deliveries, endpoints

_SUBSCRIBERS = select(endpoints.c.id, endpoints.c.events).where(
    and_(endpoints.c.organization_id == bindparam("organization_id"), endpoints.c.enabled)
)
EVENTS = ("user.connected", "user.disconnected", "payment.success", "payment.failed")


def enqueue(
    conn: Connection,
    organization_id: str,
    event: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
) -> int:
    """One outbox row per enabled endpoint of the organization that wants ``event``.

    ``data`` may be a function, called only when some endpoint wants the event, so
    that an organization without webhooks costs the hot path one indexed query.
    """
    subscribed = [
        row.id
        for row in conn.execute(_SUBSCRIBERS, {"organization_id": organization_id})
        if event in row.events.split(",")
    ]
    if not subscribed:
        return 0
    if callable(data):
        data = data()
    now = db.now_us()
    rows = []
    for endpoint_id in subscribed:
        delivery_id = new_id("whd")
        payload = {
            "id": delivery_id,
            "event": event,
            "timestamp": db.rfc3339(now),
            "data": data,
        }
        rows.append(
            {
                "id": delivery_id,
                "endpoint_id": endpoint_id,
                "organization_id": organization_id,
                "event": event,
                "payload": jsonbody.dumps(payload).decode(),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    conn.execute(insert(deliveries), rows)
    return len(rows)
