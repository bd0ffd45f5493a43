"""sessions end on sign-out: users.signed_out_at, organizations.signed_out_at

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("users", "organizations"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("signed_out_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in ("users", "organizations"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("signed_out_at")
