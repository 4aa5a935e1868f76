"""segments: saved rule trees over the leads; messages indexed by open and click time

Revision ID: 0017_segments
Revises: 0016_engagement_reports
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017_segments"
down_revision: str | None = "0016_engagement_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # "opened / clicked a message within D days" over every lead reads a range of these
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_opened_at"), ["opened_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_clicked_at"), ["clicked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_clicked_at"))
        batch_op.drop_index(batch_op.f("ix_messages_opened_at"))
    op.drop_table("segments")
