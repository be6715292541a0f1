"""slot_deliveries: each node's delivery state of each occurrence of a series

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'slot_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.String(length=63), nullable=False),
        sa.Column('broadcast_id', sa.Integer(), nullable=False),
        sa.Column('slot_id', sa.String(length=128), nullable=False),
        sa.Column('start_at', sa.DateTime(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.String(length=100), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('slot_id', 'node_id'))
    with op.batch_alter_table('slot_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slot_deliveries_broadcast_id'), ['broadcast_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_slot_deliveries_node_id'), ['node_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_slot_deliveries_start_at'), ['start_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('slot_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slot_deliveries_start_at'))
        batch_op.drop_index(batch_op.f('ix_slot_deliveries_node_id'))
        batch_op.drop_index(batch_op.f('ix_slot_deliveries_broadcast_id'))
    op.drop_table('slot_deliveries')
