"""broadcasts: a campaign sent once to an audience in waves, and its audience frozen at start

Revision ID: 0015_broadcasts
Revises: 0014_topics
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015_broadcasts"
down_revision: str | None = "0014_topics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", _text(32), nullable=False),
        sa.Column("audience_kind", _text(16), nullable=False),
        sa.Column("audience_id", _text(64), nullable=False),
        sa.Column("template", _text(128), nullable=False),
        sa.Column("channel", _text(16), nullable=False),
        sa.Column("topic", _text(64), nullable=True),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("per_hour", sa.Integer(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("audience_size", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped_by_reason", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", _text(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("lead_id", _text(32), nullable=False),
        sa.Column("outcome", _text(32), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", _text(32), nullable=True),
        sa.ForeignKeyConstraint(["broadcast_id"], ["broadcasts.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("broadcast_id", "position"),
    )
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_broadcast_recipients_lead_id"), ["lead_id"], unique=False
        )
        batch_op.create_index(
            "ix_broadcast_recipients_outcome", ["broadcast_id", "outcome", "position"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcast_recipients_outcome")
        batch_op.drop_index(batch_op.f("ix_broadcast_recipients_lead_id"))
    op.drop_table("broadcast_recipients")
    op.drop_table("broadcasts")
