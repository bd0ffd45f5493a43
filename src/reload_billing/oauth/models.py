"""Connections (a user's consent to an organization), codes and access tokens."""

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table, Text

from ..db import Timestamp, metadata

connections = Table(
    "connections",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("organization_id", ForeignKey("organizations.id"), nullable=False),
    Column("scopes", String(200), nullable=False),  # space separated
    Column("agent_ids", Text, nullable=True),  # comma separated; NULL: every agent
    # Optional spending limits, nano-dollars.
    Column("limit_per_charge", BigInteger, nullable=True),
    Column("limit_daily", BigInteger, nullable=True),
    Column("limit_monthly", BigInteger, nullable=True),
    Column("status", String(20), nullable=False),  # active | disconnected
    Column("created_at", Timestamp, nullable=False),
    Column("disconnected_at", Timestamp, nullable=True),
    Index("ix_connections_user", "user_id"),
    Index("ix_connections_org", "organization_id"),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("connection_id", ForeignKey("connections.id"), nullable=False),
    Column("organization_id", String(40), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("agent_ids", Text, nullable=True),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("connection_id", ForeignKey("connections.id"), nullable=False),
    Column("organization_id", String(40), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("agent_ids", Text, nullable=True),
    Column("code_hash", String(64), nullable=True),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("revoke_reason", String(500), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_access_tokens_connection", "connection_id"),
)
