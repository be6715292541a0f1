"""broadcasts.status: 32 characters, not 20 — "awaiting_confirmation" (21) did not fit, which
PostgreSQL refuses (SQLite does not check a VARCHAR's length): an emergency waiting for a second
approver could not be stored there

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 00:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=20),
                              type_=sa.String(length=32), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=32),
                              type_=sa.String(length=20), existing_nullable=False)
