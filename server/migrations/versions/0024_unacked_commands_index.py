"""The dispatcher's look for what to send again (once a second) starts from the few rows it is
about: commands not acked, not retained and not expired get a partial index by expiry (node
commands and a broadcast's commands; never the desired states, one per node per change, kept
for good). Without it SQLite read every command of no broadcast, each desired state ever sent,
and through the nodes every delivery ever made: 40-280 ms a second at 10,000 nodes and growing
with the province's history (docs/benchmarks.md).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 08:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | Sequence[str] | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # each as the models' expression renders it, so the looks' terms match it
    op.create_index('ix_commands_unacked', 'commands', ['exp_ms'],
                    sqlite_where=sa.text("status IS NULL AND retain IS 0"),
                    postgresql_where=sa.text("status IS NULL AND retain IS false"))


def downgrade() -> None:
    op.drop_index('ix_commands_unacked', table_name='commands')
