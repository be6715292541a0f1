"""nodes indexed for the dashboard at a province's size: (online, cluster_id, id) for its table
(offline first; the first rows by LIMIT off the index) and its online and total counts (the
index alone), last_rejected_at for its in-alarm count, and (online, what a node plays: its
last telemetry's ``playing.item_id``, server.models.playing_item) so it reads the few online
nodes that play, not every node's report. At 10,000 nodes a dashboard render cost 79-88 ms
of CPU without them, 15-17 ms with them and the view's changes (docs/benchmarks.md).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 04:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# written out as server.models.playing_item compiles it (the models may change; a revision not)
PLAYING_ITEM = {"sqlite": "json_extract(last_telemetry, '$.playing.item_id')",
                "postgresql": "((last_telemetry -> 'playing') ->> 'item_id')"}


def upgrade() -> None:
    op.create_index('ix_nodes_online_cluster_id_id', 'nodes', ['online', 'cluster_id', 'id'])
    op.create_index('ix_nodes_last_rejected_at', 'nodes', ['last_rejected_at'])
    op.create_index('ix_nodes_online_playing_item', 'nodes',
                    ['online', sa.text(PLAYING_ITEM[op.get_bind().dialect.name])])


def downgrade() -> None:
    op.drop_index('ix_nodes_online_playing_item', table_name='nodes')
    op.drop_index('ix_nodes_last_rejected_at', table_name='nodes')
    op.drop_index('ix_nodes_online_cluster_id_id', table_name='nodes')
