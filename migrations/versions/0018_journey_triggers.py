"""journey triggers: the date triggers fired (once per lead and occurrence), the segment-entered
triggers' last evaluation and members

Revision ID: 0018_journey_triggers
Revises: 0017_segments
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0018_journey_triggers"
down_revision: str | None = "0017_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trigger_fires",
        sa.Column("fire_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("fire_key"),
    )
    with op.batch_alter_table("trigger_fires", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trigger_fires_lead_id"), ["lead_id"], unique=False)
    op.create_table(
        "segment_trigger_states",
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("segment_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("journey", "segment_id"),
    )
    op.create_table(
        "segment_trigger_members",
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("segment_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("journey", "segment_id", "lead_id"),
    )


def downgrade() -> None:
    op.drop_table("segment_trigger_members")
    op.drop_table("segment_trigger_states")
    with op.batch_alter_table("trigger_fires", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trigger_fires_lead_id"))
    op.drop_table("trigger_fires")
