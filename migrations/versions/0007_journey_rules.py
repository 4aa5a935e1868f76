"""journeys that behave well together: frequency cap bookkeeping on messages,
per lead+channel lock rows, journey enrollments (chains, exits), lead activity categories

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deferred_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_messages_counted_at", ["counted_at"], unique=False)

    with op.batch_alter_table("lead_activities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )

    op.create_table(
        "frequency_locks",
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("lead_id", "channel"),
    )


def downgrade() -> None:
    op.drop_table("frequency_locks")
    with op.batch_alter_table("lead_activities", schema=None) as batch_op:
        batch_op.drop_column("category")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_counted_at")
        batch_op.drop_column("deferred_until")
        batch_op.drop_column("counted_at")
