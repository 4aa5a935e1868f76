"""sales tasks: a description (a defined journey's task node says what to do)

Revision ID: 0020_task_description
Revises: 0019_promo_expiry
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_task_description"
down_revision: str | None = "0019_promo_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sales_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sales_tasks", schema=None) as batch_op:
        batch_op.drop_column("description")
