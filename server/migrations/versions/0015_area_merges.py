"""areas: merged_into_id and merged_at, set when an area is merged into another of its kind
(POST /api/v1/areas/{id}/merge); the merged area's row stays for its history

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 00:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('merged_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key('fk_areas_merged_into_id_areas', 'areas',
                                    ['merged_into_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.drop_constraint('fk_areas_merged_into_id_areas', type_='foreignkey')
        batch_op.drop_column('merged_at')
        batch_op.drop_column('merged_into_id')
