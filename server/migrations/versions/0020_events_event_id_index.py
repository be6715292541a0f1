"""events indexed by event_id: the bridge looks up, once per batch of node messages, which of the
batch's events are stored already (``event_id IN (...)``, a node may send one again after a
reconnect). The unique (node_id, event_id) index cannot serve that lookup, so it was a scan of
every event, and events are kept for good: about 30 ms a batch of 500 at 70,000 events, growing
with the table (bench/bridge_ingest.py); a few index probes with it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 04:15:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0020'
down_revision: str | Sequence[str] | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f('ix_events_event_id'), 'events', ['event_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_events_event_id'), table_name='events')
