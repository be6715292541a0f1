"""The outbox's looks read what they look for. Commands neither published nor given up are
what the dispatcher signs and publishes twice a second (and the heartbeat's outbox health);
with a plain index on failed_at, NULL on nearly every row, SQLite (no statistics) chose it
and read every command ever sent, and commands are kept for good (a desired state per node
per change): now failed_at is indexed only where set (what failed lately), and the look
reads published_at's few NULLs. Deliveries still at sent, what the dispatcher may send again,
get a partial index: a province's broadcast has 10,000 deliveries of one command.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 23:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | Sequence[str] | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = sa.text("failed_at IS NOT NULL")
UNACKED = sa.text("status = 'sent'")


def upgrade() -> None:
    op.drop_index('ix_commands_failed_at', table_name='commands')
    op.create_index('ix_commands_failed', 'commands', ['failed_at'],
                    sqlite_where=FAILED, postgresql_where=FAILED)
    op.create_index('ix_deliveries_sent', 'deliveries', ['command_id'],
                    sqlite_where=UNACKED, postgresql_where=UNACKED)


def downgrade() -> None:
    op.drop_index('ix_deliveries_sent', table_name='deliveries')
    op.drop_index('ix_commands_failed', table_name='commands')
    op.create_index('ix_commands_failed_at', 'commands', ['failed_at'])
