"""the tracking outbox tells each journey only what it can use, isolates journeys that refuse,
and can be shared by several API processes (PostgreSQL)

``signal_key``: what a hit would tell its journey (hits with the same key tell it nothing new);
``signal_outcome``: set on the one hit that told the journey (or found it closed, or was refused
for good); ``retry_at``: a journey that refused a hit is left alone until then.

Revision ID: 0011_outbox_coalescing
Revises: 0010_send_failures
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011_outbox_coalescing"
down_revision: str | None = "0010_send_failures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _where(condition: str) -> dict:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("signal_key", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        batch_op.add_column(
            sa.Column("signal_outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_tracking_events_pending",
        "tracking_events",
        ["id", "workflow_id"],
        unique=False,
        **_where("delivered_at IS NULL"),
    )
    op.create_index(
        "ix_tracking_events_told",
        "tracking_events",
        ["workflow_id", "signal_key"],
        unique=False,
        **_where("signal_outcome IS NOT NULL"),
    )
    op.create_index(
        "ix_tracking_events_retry_at",
        "tracking_events",
        ["retry_at"],
        unique=False,
        **_where("retry_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tracking_events_retry_at", table_name="tracking_events")
    op.drop_index("ix_tracking_events_told", table_name="tracking_events")
    op.drop_index("ix_tracking_events_pending", table_name="tracking_events")
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
        batch_op.drop_column("signal_outcome")
        batch_op.drop_column("signal_key")
