"""leads: a lifecycle stage floor (a defined journey's update raises the stage; facts may raise it
further, nothing lowers it)

Revision ID: 0021_stage_floor
Revises: 0020_task_description
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_stage_floor"
down_revision: str | None = "0020_task_description"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_floor", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("stage_floor")
