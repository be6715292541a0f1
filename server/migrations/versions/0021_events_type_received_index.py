"""events indexed by (type, received_at): the bridge reads, once per batch of node messages, the
batch's nodes' media_ready events received in the last MEDIA_READY_LOOKBACK. With the type index
alone that read every media_ready ever stored, and events are kept for good, so a batch's cost
grew with the province's history; with this index it reads the recent ones only.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 04:45:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0021'
down_revision: str | Sequence[str] | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_events_type_received', 'events', ['type', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_events_type_received', table_name='events')
