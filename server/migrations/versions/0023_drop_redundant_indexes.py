"""Indexes that only cost the bridge: every event, telemetry sample and delivery written updates
each index of its table, and events are kept for good. Gone: events' node_id (the unique
(node_id, event_id) index's prefix serves it), type (the (type, received_at) index's prefix) and
event_id (a random id: each insert touched a page of its own; the bridge's batch peek now looks
up (node, event) pairs in the unique index), telemetry's node_id (ix_telemetry_node_ts's prefix)
and deliveries' broadcast_id (the unique (broadcast_id, node_id) index's prefix). A batch of 500
events into a 165 MB database: 61 ms with them, 28 ms without (bench/bridge_ingest.py's note in
docs/benchmarks.md).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 02:10:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0023'
down_revision: str | Sequence[str] | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = (("events", "ix_events_node_id", "node_id"), ("events", "ix_events_type", "type"),
           ("events", "ix_events_event_id", "event_id"),
           ("telemetry", "ix_telemetry_node_id", "node_id"),
           ("deliveries", "ix_deliveries_broadcast_id", "broadcast_id"))


def upgrade() -> None:
    for table, name, _ in DROPPED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name, column in DROPPED:
        op.create_index(name, table, [column])
