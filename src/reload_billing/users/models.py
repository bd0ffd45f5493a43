from sqlalchemy import Column, String, Table

from ..db import Timestamp, metadata

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("billing_account_id", String(40), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Sessions signed in before this moment are over (set by signing out).
    Column("signed_out_at", Timestamp, nullable=True),
)
