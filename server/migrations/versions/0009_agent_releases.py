"""Agent releases (uploaded loaphuong-agent wheels) and their staged rollouts to nodes, with
each node's stage and update command (server/releases.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:26:43.161329
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agent_releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('uploaded_by', sa.Integer(), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )
    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('target_areas', sa.JSON(), nullable=False),
    sa.Column('target_nodes', sa.JSON(), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('auto_advance', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['release_id'], ['agent_releases.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollouts_release_id'), ['release_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rollouts_status'), ['status'], unique=False)

    op.create_table('rollout_nodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.String(length=63), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('command_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['command_id'], ['commands.id'], ),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rollout_id', 'node_id')
    )
    with op.batch_alter_table('rollout_nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_nodes_node_id'), ['node_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rollout_nodes_rollout_id'), ['rollout_id'],
                              unique=False)



def downgrade() -> None:
    with op.batch_alter_table('rollout_nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_nodes_rollout_id'))
        batch_op.drop_index(batch_op.f('ix_rollout_nodes_node_id'))

    op.drop_table('rollout_nodes')
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollouts_status'))
        batch_op.drop_index(batch_op.f('ix_rollouts_release_id'))

    op.drop_table('rollouts')
    op.drop_table('agent_releases')
