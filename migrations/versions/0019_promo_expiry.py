"""promo codes: when they expire (a definition's message gives its code a validity)

Revision ID: 0019_promo_expiry
Revises: 0018_journey_triggers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_promo_expiry"
down_revision: str | None = "0018_journey_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("promo_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promo_codes", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
