"""reports: human or machine opens and clicks, the message's human stamps, journey runs

``tracking_events.machine`` / ``machine_reason``: a proxy's or a scanner's hit, and why;
``messages.human_opened_at`` / ``human_clicked_at`` / ``unsubscribed_at``: what its reader did;
``journey_runs``: each run of a journey, entered and ended (outcome, goal, checkpoints). Indexes
for the reports over a date range.

Revision ID: 0016_engagement_reports
Revises: 0015_broadcasts
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_engagement_reports"
down_revision: str | None = "0015_broadcasts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("machine", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("machine_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for column in ("human_opened_at", "human_clicked_at", "unsubscribed_at"):
            batch_op.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_messages_journey_created", "messages", ["journey", "created_at"])
    op.create_index("ix_messages_template_created", "messages", ["template", "created_at"])
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("goal", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("checkpoints", sa.JSON(), nullable=False),
        sa.Column("arms", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id", "run_id", name="uq_journey_runs_run"),
    )
    op.create_index("ix_journey_runs_journey_entered", "journey_runs", ["journey", "entered_at"])
    op.create_index("ix_journey_runs_lead", "journey_runs", ["lead_id", "entered_at"])


def downgrade() -> None:
    op.drop_index("ix_journey_runs_lead", table_name="journey_runs")
    op.drop_index("ix_journey_runs_journey_entered", table_name="journey_runs")
    op.drop_table("journey_runs")
    op.drop_index("ix_messages_template_created", table_name="messages")
    op.drop_index("ix_messages_journey_created", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for column in ("unsubscribed_at", "human_clicked_at", "human_opened_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_column("machine_reason")
        batch_op.drop_column("machine")
