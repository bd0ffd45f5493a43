"""Webhook endpoints, their signing secrets, and the outbox of events.

Events are written to the outbox (``webhook_deliveries``) in the transaction that
causes them (:func:`enqueue`); :mod:`.worker` sends them. Signing secrets are never
stored: each is derived from the server's secret key, the endpoint id and a random
nonce kept in the row (:func:`endpoint_secret`), so that every server process that
shares ``RELOAD_SECRET_KEY`` signs alike, and a copy of the database alone cannot
forge a signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from .. import db, jsonbody
from ..errors import Conflict, InvalidRequest, NotFound
from ..ids import new_id
from .models import attempts, deliveries, endpoints

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


# --- secrets and signatures -----------------------------------------------------

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_ENDPOINTS = 20


def endpoint_secret(secret_key: str, endpoint_id: str, nonce: str) -> str:
    """The endpoint's signing secret: HMAC-SHA256 of the server key over the endpoint
    id and its nonce, base64url. Shown once; recomputed to sign each delivery."""
    digest = hmac.new(
        secret_key.encode(), f"webhook:{endpoint_id}:{nonce}".encode(), hashlib.sha256
    ).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Webhook-Signature`` header: ``sha256=`` and the hex HMAC of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- endpoints ------------------------------------------------------------------


def parse_events(raw: str | Iterable[str]) -> tuple[str, ...]:
    """Events from ``a,b`` or a list; each one of :data:`EVENTS`, at least one."""
    words = raw.replace(" ", ",").split(",") if isinstance(raw, str) else list(raw)
    chosen = [word.strip() for word in words if word and word.strip()]
    if not chosen:
        raise InvalidRequest("choose at least one event", param="events")
    unknown = [word for word in chosen if word not in EVENTS]
    if unknown:
        raise InvalidRequest(
            f"unknown event {unknown[0]!r}; use {', '.join(EVENTS)}", param="events"
        )
    return tuple(event for event in EVENTS if event in chosen)


def check_url(url: str, environment: str) -> str:
    """An absolute http(s) URL without credentials; https in production."""
    url = url.strip()
    if not url or len(url) > 2000:
        raise InvalidRequest("url must be 1-2000 characters", param="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an absolute http:// or https:// URL", param="url")
    if parts.username or parts.password:
        raise InvalidRequest("url must not contain a user name or password", param="url")
    if any(ch.isspace() for ch in url):
        raise InvalidRequest("url must not contain spaces", param="url")
    if environment == "production" and parts.scheme != "https":
        raise InvalidRequest("url must use https in production", param="url")
    return url


def create_endpoint(
    conn: Connection,
    organization_id: str,
    *,
    url: str,
    events: str | Iterable[str],
    secret_key: str,
    environment: str,
) -> tuple[Any, str]:
    """A new, enabled endpoint; returns it and its signing secret (shown once)."""
    url = check_url(url, environment)
    chosen = parse_events(events)
    count = len(list_endpoints(conn, organization_id))
    if count >= MAX_ENDPOINTS:
        raise Conflict(
            f"an organization has at most {MAX_ENDPOINTS} webhook endpoints",
            code="too_many_endpoints",
        )
    endpoint_id = new_id("whe")
    nonce = secrets.token_hex(16)
    conn.execute(
        insert(endpoints).values(
            id=endpoint_id,
            organization_id=organization_id,
            url=url,
            events=",".join(chosen),
            secret_nonce=nonce,
            enabled=True,
            created_at=db.now_us(),
        )
    )
    return get_endpoint(conn, organization_id, endpoint_id), endpoint_secret(
        secret_key, endpoint_id, nonce
    )


def list_endpoints(conn: Connection, organization_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(endpoints)
            .where(
                and_(
                    endpoints.c.organization_id == organization_id,
                    endpoints.c.deleted_at.is_(None),
                )
            )
            .order_by(endpoints.c.created_at, endpoints.c.id)
        ).all()
    )


def get_endpoint(conn: Connection, organization_id: str, endpoint_id: str) -> Any:
    row = conn.execute(
        select(endpoints).where(
            and_(
                endpoints.c.id == endpoint_id,
                endpoints.c.organization_id == organization_id,
                endpoints.c.deleted_at.is_(None),
            )
        )
    ).first()
    if row is None:
        raise NotFound("no such webhook endpoint", param="endpointId")
    return row


def set_enabled(conn: Connection, organization_id: str, endpoint_id: str, enabled: bool) -> None:
    """A disabled endpoint gets no new events; its pending deliveries wait for it to
    be enabled again, up to the end of their retry window."""
    get_endpoint(conn, organization_id, endpoint_id)
    conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(enabled=enabled))


def rotate_secret(conn: Connection, organization_id: str, endpoint_id: str, secret_key: str) -> str:
    """A new signing secret (the old one stops at once); returns it, shown once."""
    get_endpoint(conn, organization_id, endpoint_id)
    nonce = secrets.token_hex(16)
    conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(secret_nonce=nonce))
    return endpoint_secret(secret_key, endpoint_id, nonce)


def delete_endpoint(conn: Connection, organization_id: str, endpoint_id: str) -> None:
    """Remove an endpoint; its delivery history stays, its pending deliveries fail."""
    get_endpoint(conn, organization_id, endpoint_id)
    now = db.now_us()
    conn.execute(
        update(endpoints).where(endpoints.c.id == endpoint_id).values(enabled=False, deleted_at=now)
    )
    conn.execute(
        update(deliveries)
        .where(and_(deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending"))
        .values(status="failed", last_error="endpoint deleted", locked_until=None)
    )


def endpoint_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "organizationId": row.organization_id,
        "url": row.url,
        "events": row.events.split(","),
        "enabled": bool(row.enabled),
        "createdAt": db.rfc3339(row.created_at),
    }


# --- deliveries -----------------------------------------------------------------


def list_deliveries(
    conn: Connection,
    organization_id: str,
    *,
    limit: int = 50,
    endpoint_id: str | None = None,
) -> list[dict[str, Any]]:
    """The newest deliveries of an organization, each with its attempts."""
    conditions = [deliveries.c.organization_id == organization_id]
    if endpoint_id is not None:
        conditions.append(deliveries.c.endpoint_id == endpoint_id)
    rows = conn.execute(
        select(deliveries, endpoints.c.url)
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(and_(*conditions))
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        .limit(limit)
    ).all()
    tried = attempts_of(conn, [row.id for row in rows])
    return [delivery_json(row, tried[row.id]) for row in rows]


def get_delivery(conn: Connection, delivery_id: str, organization_id: str | None = None) -> Any:
    query = select(deliveries).where(deliveries.c.id == delivery_id)
    if organization_id is not None:
        query = query.where(deliveries.c.organization_id == organization_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("no such webhook delivery", param="deliveryId")
    return row


def attempts_of(conn: Connection, delivery_ids: list[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        for row in conn.execute(
            select(attempts)
            .where(attempts.c.delivery_id.in_(delivery_ids))
            .order_by(attempts.c.created_at, attempts.c.id)
        ):
            found[row.delivery_id].append(row)
    return found


def delivery_json(row: Any, tried: list[Any]) -> dict[str, Any]:
    mapping = row._mapping
    return {
        "id": row.id,
        "endpointId": row.endpoint_id,
        "url": mapping.get("url"),
        "event": row.event,
        "status": row.status,
        "attempts": [
            {
                "statusCode": attempt.status_code,
                "latencyMs": round(attempt.latency_ms, 1)
                if attempt.latency_ms is not None
                else None,
                "error": attempt.error,
                "createdAt": db.rfc3339(attempt.created_at),
            }
            for attempt in tried
        ],
        "nextAttemptAt": db.rfc3339(row.next_attempt_at) if row.status == "pending" else None,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "createdAt": db.rfc3339(row.created_at),
        "deliveredAt": db.rfc3339(row.delivered_at),
    }


def resend(
    conn: Connection, delivery_id: str, *, retry_us: int, organization_id: str | None = None
) -> Any:
    """Send a delivery again now (same id and payload, so receivers can drop it if
    they had it), with a fresh retry window."""
    row = get_delivery(conn, delivery_id, organization_id)
    endpoint = conn.execute(
        select(endpoints.c.deleted_at).where(endpoints.c.id == row.endpoint_id)
    ).first()
    if endpoint is None or endpoint.deleted_at is not None:
        raise Conflict("the endpoint of this delivery was deleted", code="endpoint_deleted")
    now = db.now_us()
    claimed = conn.execute(
        update(deliveries)
        .where(
            and_(
                deliveries.c.id == row.id,
                (deliveries.c.locked_until.is_(None)) | (deliveries.c.locked_until < now),
            )
        )
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            give_up_at=now + retry_us,
            locked_until=None,
            lock_token=None,
        )
    )
    if claimed.rowcount != 1:
        raise Conflict("this delivery is being sent right now", code="delivery_in_progress")
    return get_delivery(conn, delivery_id)
