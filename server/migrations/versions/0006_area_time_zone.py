"""areas: an optional IANA time zone (tz), inherited down the tree; none: the configured zone

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tz', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.drop_column('tz')
