"""Double-entry ledger tables. Amounts are signed integer nano-dollars."""

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table

from ..db import Timestamp, metadata

# kind: user_billing | org_earnings | platform_fees | external_funding
accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("owner_id", String(40), nullable=True),
    # Cache of the sum of this account's entries, updated in the same transaction.
    Column("balance", BigInteger, nullable=False, default=0),
    # The lowest balance a debit may leave (0: prepaid, no overdraft).
    Column("floor", BigInteger, nullable=False, default=0),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_ledger_accounts_kind_owner", "kind", "owner_id", unique=True),
)

# kind: topup | charge | refund | adjustment
transactions = Table(
    "ledger_transactions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("platform_fee", BigInteger, nullable=False, default=0),
    Column("usage_record_id", String(40), nullable=True),
    Column("organization_id", String(40), nullable=True),
    Column("user_id", String(40), nullable=True),
    Column("billing_account_id", String(40), nullable=True),
    Column("description", String(500), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_ledger_transactions_usage", "usage_record_id"),
    Index("ix_ledger_transactions_account", "billing_account_id", "created_at"),
    Index("ix_ledger_transactions_org_key", "organization_id", "idempotency_key", unique=True),
)

entries = Table(
    "ledger_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("transaction_id", ForeignKey("ledger_transactions.id"), nullable=False),
    Column("account_id", ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_ledger_entries_account", "account_id"),
    Index("ix_ledger_entries_transaction", "transaction_id"),
)

# Money spent through a connection per period ("d:2026-11-26", "m:2026-11"), kept
# so that spending limits are checked by one conditional UPDATE, atomically.
spending_counters = Table(
    "spending_counters",
    metadata,
    Column("connection_id", String(40), primary_key=True),
    Column("period", String(12), primary_key=True),
    Column("spent", BigInteger, nullable=False, default=0),
)
