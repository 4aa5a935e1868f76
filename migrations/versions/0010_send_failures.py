"""messages: the attempts of a send and those that certainly did not reach the provider, so a
retried send is recorded as what happened (sent again after an uncertain attempt, or sent on a
later attempt after the earlier ones failed before the provider accepted anything)

Revision ID: 0010_send_failures
Revises: 0009_enrollment_refusals
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_send_failures"
down_revision: str | None = "0009_enrollment_refusals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("attempts_not_delivered", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("attempts_not_delivered")
        batch_op.drop_column("attempts")
