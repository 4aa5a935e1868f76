"""re-engagement status and premium offer on leads, consent reason, lead_activities (the
re-engagement journey)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reengagement_status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True
            )
        )
        batch_op.add_column(sa.Column("reengagement_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("premium_offered_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )

    op.create_table(
        "lead_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lead_activities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_activities_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lead_activities_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lead_activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_activities_at"))
        batch_op.drop_index(batch_op.f("ix_lead_activities_lead_id"))
    op.drop_table("lead_activities")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("reason")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("premium_offered_at")
        batch_op.drop_column("reengagement_at")
        batch_op.drop_column("reengagement_status")
