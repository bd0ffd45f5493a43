"""Daily totals of usage records, kept for the pages' totals and charts.

A day's totals are made from the records the first time a page needs them, once
the day is over, and kept: the records of a past day change only by a charge or a
refund, which writes ledger entries, and a page that sees such entries made since
it last looked recomputes the days they touch (see ``rollups.py``).
"""

from sqlalchemy import BigInteger, Boolean, Column, PrimaryKeyConstraint, String, Table

from ..db import Timestamp, metadata

# One row per scope (an organization or a user), day and combination of the
# dimensions the pages filter or group by; sums in nano-dollars and tokens.
USAGE_DAILY_DIMENSIONS = (
    "organization_id",
    "ai_agent_id",
    "model",
    "usage_type",
    "status",
    "charged",
    "refunded",
)
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("scope_id", String(40), nullable=False),
    Column("day", BigInteger, nullable=False),  # days since 1970-01-01, UTC
    Column("organization_id", String(40), nullable=False),
    Column("ai_agent_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),  # "" when none was reported
    Column("usage_type", String(64), nullable=False),  # "" when none was reported
    Column("status", String(20), nullable=False),
    Column("charged", Boolean, nullable=False),
    Column("refunded", Boolean, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("charged_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("platform_fee", BigInteger, nullable=False),
    Column("fee_returned", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("internal_credits", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope_id", "day", *USAGE_DAILY_DIMENSIONS),
)

# Which days of a scope are in usage_daily (a day without records has no rows).
usage_daily_days = Table(
    "usage_daily_days",
    metadata,
    Column("scope_id", String(40), primary_key=True),
    Column("day", BigInteger, primary_key=True),
    Column("computed_at", Timestamp, nullable=False),
)

# The newest ledger entry a scope's days were checked against.
usage_daily_watermarks = Table(
    "usage_daily_watermarks",
    metadata,
    Column("scope_id", String(40), primary_key=True),
    Column("entry_id", BigInteger, nullable=False),
)

# Analytics (GET /v1/tp/reports/usage): per organization, UTC day of ``usage_date``
# and combination of dimensions, the sums of the usage records; kept exact in the
# transaction that inserts, charges or refunds each record (see analytics_rollup.py).
# ``dims`` is a digest of the dimension values (some may be NULL, which a primary
# key cannot hold).
usage_analytics_daily = Table(
    "usage_analytics_daily",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("day", BigInteger, nullable=False),  # days since 1970-01-01, UTC
    Column("dims", String(64), nullable=False),
    Column("ai_agent_id", String(40), nullable=False),
    Column("llm_model", String(200), nullable=True),
    Column("llm_provider", String(200), nullable=True),
    Column("usage_type", String(64), nullable=True),
    Column("status", String(20), nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("total_cost", BigInteger, nullable=False),
    Column("charged_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("platform_fee", BigInteger, nullable=False),
    Column("fee_returned", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("internal_credits", BigInteger, nullable=False),
    Column("processing_us", BigInteger, nullable=False),  # microseconds, rounded per record
    Column("processing_count", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    PrimaryKeyConstraint("organization_id", "day", "dims"),
)
