"""broadcasts: the lunar holidays a series skips (skip_holidays, with the days around Tết)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:35:03.535776
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('skip_holidays', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_column('skip_holidays')
