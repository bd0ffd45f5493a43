"""Usage records: what an agent did for a user, and whether it was charged."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from ..db import Timestamp, metadata

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("organization_id", String(40), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("connection_id", String(40), nullable=True),
    Column("ai_agent_id", String(40), nullable=False),
    Column("description", Text, nullable=False),
    Column("short_description", String(200), nullable=True),
    Column("usage_type", String(64), nullable=True),
    # Money: nano-dollars.
    Column("total_cost", BigInteger, nullable=False),
    Column("cost_before_tax", BigInteger, nullable=True),
    Column("tax_amount", BigInteger, nullable=True),
    Column("tax_rate", String(40), nullable=True),  # exact decimal text, percent
    Column("llm_model", String(200), nullable=True),
    Column("llm_provider", String(200), nullable=True),
    Column("input_tokens", BigInteger, nullable=True),
    Column("output_tokens", BigInteger, nullable=True),
    Column("total_tokens", BigInteger, nullable=True),
    Column("processing_time_ms", Float, nullable=True),
    Column("model_parameters", Text, nullable=True),  # JSON
    # The developer's own units, scaled by 10^9 like money (exact, summable).
    Column("internal_credits", BigInteger, nullable=True),
    Column("charge_user", Boolean, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("metadata", Text, nullable=True),  # JSON
    Column("usage_date", Timestamp, nullable=False),
    Column("status", String(20), nullable=False),
    Column("charged", Boolean, nullable=False),
    Column("charged_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("platform_fee", BigInteger, nullable=False),
    Column("failure_reason", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_usage_records_org_key", "organization_id", "idempotency_key", unique=True),
    Index("ix_usage_records_org_created", "organization_id", "created_at"),
    Index("ix_usage_records_org_user_created", "organization_id", "user_id", "created_at"),
    Index("ix_usage_records_user_created", "user_id", "created_at"),
    Index("ix_usage_records_org_agent_created", "organization_id", "ai_agent_id", "created_at"),
    Index("ix_usage_records_org_usage_date", "organization_id", "usage_date"),
)
