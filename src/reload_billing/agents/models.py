from sqlalchemy import Column, ForeignKey, Index, String, Table

from ..db import Timestamp, metadata

agents = Table(
    "agents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("organization_id", ForeignKey("organizations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False, default="active"),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_agents_org", "organization_id"),
)
