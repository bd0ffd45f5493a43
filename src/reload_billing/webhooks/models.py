"""Webhook endpoints and the outbox of deliveries."""

from sqlalchemy import Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from ..db import Timestamp, metadata

endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("organization_id", ForeignKey("organizations.id"), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("events", String(500), nullable=False),  # comma separated
    # The signing secret is never stored: it is derived from the server's secret key,
    # the endpoint id and this random nonce (see service.endpoint_secret); rotating the
    # secret is a new nonce.
    Column("secret_nonce", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp, nullable=True),
    Index("ix_webhook_endpoints_org", "organization_id"),
)

# The outbox: a row per (event, endpoint), written in the transaction that caused it.
deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("organization_id", String(40), nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(20), nullable=False),  # pending | delivered | failed
    # Attempts since the delivery was created or last re-sent (sets the backoff).
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    # A worker's claim: nobody else sends this delivery until locked_until.
    Column("locked_until", Timestamp, nullable=True),
    Column("lock_token", String(40), nullable=True),
    # When to stop retrying; NULL: created_at plus the retry window.
    Column("give_up_at", Timestamp, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    Index("ix_webhook_deliveries_org_created", "organization_id", "created_at"),
)

attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_webhook_attempts_delivery", "delivery_id"),
)
