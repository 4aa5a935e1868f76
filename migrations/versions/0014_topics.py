"""topics and the preference centre: a lead's own pace for marketing messages, and each
message's topic

``leads.marketing_frequency`` (as_sent | weekly) and ``leads.marketing_paused_until``: what the
lead chose on the preference page. ``messages.topic``: what a marketing message is about. The
topic choices themselves are rows of the consent ledger (``consents``, channel ``all``, purpose
``topic:<key>``): no new table.

Revision ID: 0014_topics
Revises: 0013_custom_attributes_events
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014_topics"
down_revision: str | None = "0013_custom_attributes_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "marketing_frequency",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="as_sent",
            )
        )
        batch_op.add_column(
            sa.Column("marketing_paused_until", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("topic")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("marketing_paused_until")
        batch_op.drop_column("marketing_frequency")
