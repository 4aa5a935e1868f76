"""sales hand-off tasks, counters, lead country (the lead-nurturing journey)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True)
        )

    op.create_table(
        "sales_tasks",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("task_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("lead_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("assignee", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("territory", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_key"),
    )
    with op.batch_alter_table("sales_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sales_tasks_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sales_tasks_assignee"), ["assignee"], unique=False)
        batch_op.create_index(batch_op.f("ix_sales_tasks_status"), ["status"], unique=False)

    op.create_table(
        "counters",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("counters")
    with op.batch_alter_table("sales_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sales_tasks_status"))
        batch_op.drop_index(batch_op.f("ix_sales_tasks_assignee"))
        batch_op.drop_index(batch_op.f("ix_sales_tasks_lead_id"))
    op.drop_table("sales_tasks")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("country")
