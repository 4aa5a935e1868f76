"""custom lead attributes (leads.attributes) and custom events (custom_events)

Revision ID: 0013_custom_attributes_events
Revises: 0012_journey_definitions
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013_custom_attributes_events"
down_revision: str | None = "0012_journey_definitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "custom_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lead_id", "event_id", name="uq_custom_events_lead_event_id"),
    )
    op.create_index(
        "ix_custom_events_lead_name_at", "custom_events", ["lead_id", "name", "occurred_at"]
    )
    op.create_index("ix_custom_events_name_at", "custom_events", ["name", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_custom_events_name_at", table_name="custom_events")
    op.drop_index("ix_custom_events_lead_name_at", table_name="custom_events")
    op.drop_table("custom_events")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("attributes")
