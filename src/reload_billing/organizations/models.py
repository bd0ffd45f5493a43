from sqlalchemy import Column, ForeignKey, Index, String, Table

from ..db import Timestamp, metadata

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("owner_email", String(320), nullable=False, unique=True),
    Column("owner_password_hash", String(200), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("client_secret_hash", String(64), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("earnings_account_id", String(40), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Portal sessions signed in before this moment are over (set by signing out).
    Column("signed_out_at", Timestamp, nullable=True),
)

redirect_uris = Table(
    "redirect_uris",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("organization_id", ForeignKey("organizations.id"), nullable=False),
    Column("uri", String(2000), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_redirect_uris_org_uri", "organization_id", "uri", unique=True),
)
