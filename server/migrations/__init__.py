"""Schema migrations (Alembic): ``upgrade_to_head(engine)`` brings any database the project made
to the newest revision in ``versions/``; every schema change is a revision there."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from ..models import Base

HERE = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema as create_all made it before migrations existed
# one number for every LoaPhuong database on a PostgreSQL server (session-level advisory lock)
_PG_LOCK_KEY = 0x4C6F615068756F6E  # "LoaPhuon"
# Alembic's ``context`` and ``op`` are module globals: one migration at a time in a process
_IN_PROCESS = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built here so no alembic.ini is needed at run time; env.py runs
    the revisions on ``connection`` when one is given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection that only one process at a time holds for migrating this database.

    PostgreSQL: a session-level ``pg_advisory_lock``. SQLite: an exclusive ``flock`` on the file
    ``<database>.migrate-lock`` beside the database (an in-memory database has one user), and the
    foreign keys off while the revisions run, since a batch ALTER copies the table and a
    cascade would follow the copy. Other processes wait until the holder is done, and so do
    other threads of this one (Alembic keeps its state in module globals)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_IN_PROCESS)
        if engine.dialect.name == "sqlite":
            path = engine.url.database or ""
            if path and path != ":memory:" and not path.startswith("file:"):
                fd = os.open(path + ".migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
                stack.callback(os.close, fd)
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
        conn = stack.enter_context(engine.connect())
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
            stack.callback(_pg_unlock, conn)
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            stack.callback(_sqlite_foreign_keys_on, conn)
        yield conn


def _pg_unlock(conn: Connection) -> None:
    conn.rollback()  # after a failed migration the session must leave its aborted transaction
    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
    conn.commit()


def _sqlite_foreign_keys_on(conn: Connection) -> None:
    conn.rollback()
    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    conn.commit()


@functools.cache
def _script_heads() -> frozenset[str]:
    """The newest revisions in ``versions/`` (read once per process: Alembic loads every
    revision file to find them)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _at_head(conn: Connection) -> bool:
    """Whether the database already has the newest revisions, so ``upgrade head`` would run
    nothing (it would still load every revision file and the environment to find that out)."""
    return set(MigrationContext.configure(conn).get_current_heads()) == _script_heads()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database's schema to the newest revision. Safe when the web server and the
    dispatcher start on the same database at once: all of it runs under a lock
    (``migration_connection``: a file lock beside a SQLite file, ``pg_advisory_lock`` on
    PostgreSQL), so the second to start finds the work done.

    - empty: ``create_all`` then stamp head (Alembic's cookbook; one step, fast for tests);
    - has ``alembic_version``: ``upgrade head``, unless it is there already;
    - has the project's tables but no ``alembic_version`` (made before migrations): stamp the
      baseline, then ``upgrade head``. Its rows stay as they are.
    """
    with migration_connection(engine) as conn:
        cfg = alembic_config(conn)
        with conn.begin():
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" in tables:
                if not _at_head(conn):
                    command.upgrade(cfg, "head")
            elif tables & set(Base.metadata.tables):
                command.stamp(cfg, BASELINE)
                command.upgrade(cfg, "head")
            else:
                Base.metadata.create_all(conn)
                command.stamp(cfg, "head")
