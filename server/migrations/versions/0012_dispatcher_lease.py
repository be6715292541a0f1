"""leases: which of several dispatcher processes acts; nodes: the digest of the last desired
state built (a rebuild that comes out the same is not sent as a new version)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('renewed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.add_column('nodes', sa.Column('desired_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('nodes', 'desired_digest')
    op.drop_table('leases')
