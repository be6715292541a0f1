"""Alembic's environment. Programs reach it through ``server.migrations`` with a connection it
already holds; the ``alembic`` command line (alembic.ini at the repository root) gets the
database from ``-x url=...``, else from the instance's settings (``LOA_INSTANCE``, default
``instance``; ``LOA_DATABASE_URL`` overrides as everywhere)."""
from __future__ import annotations

import os
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import context
from sqlalchemy.engine import Connection

from server.migrations import migration_connection
from server.models import Base, make_engine

if TYPE_CHECKING:
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.migration import MigrationContext

config = context.config
if config.config_file_name:  # the alembic command line
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from server.config import load_settings
    return load_settings(Path(os.environ.get("LOA_INSTANCE", "instance"))).database_url


def _skip_empty_revision(ctx: MigrationContext, _revision: object,
                         directives: list[MigrationScript]) -> None:
    """``alembic revision --autogenerate`` that finds no change writes no file."""
    ops = directives[0].upgrade_ops
    if getattr(config.cmd_opts, "autogenerate", False) and ops is not None and ops.is_empty():
        directives[:] = []
        print("No change between the models and the database: no revision written.")


def _run(connection: Connection) -> None:
    # batch operations: SQLite's ALTERs by copying the table, plain ALTERs elsewhere, so a
    # revision generated against either database runs on both
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      process_revision_directives=_skip_empty_revision)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """``alembic upgrade head --sql``: the SQL, printed."""
    url = _database_url()
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_database_url())
    try:
        with migration_connection(engine) as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
