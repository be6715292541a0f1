"""audit_log.target_type indexed: the audit page filters by it and lists its values, which
without an index is a scan of the whole log (0.6 s for a million entries on SQLite)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 00:30:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_audit_log_target_type', 'audit_log', ['target_type'])


def downgrade() -> None:
    op.drop_index('ix_audit_log_target_type', table_name='audit_log')
