"""Helpers for the schema migration tests, on SQLite and PostgreSQL alike: run the revisions
themselves (not create_all), compare a database with the models, read its revision."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import warnings
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from server.migrations import BASELINE, alembic_config, migration_connection
from server.models import Base


def head() -> str:
    current = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current is not None, "the migrations have no head"
    return current


def upgrade_from_empty(engine: Engine) -> None:
    """Every revision from the first, as a database made today would never see them: the real
    ``upgrade head`` path, not init_db's create_all shortcut."""
    with migration_connection(engine) as conn, conn.begin():
        assert not inspect(conn).get_table_names(), "the database is not empty"
        command.upgrade(alembic_config(conn), "head")


def made_before_migrations(engine: Engine) -> None:
    """A database as init_db left it before migrations: the tables create_all made then (which
    the baseline revision builds; create_all of today's models would be ahead once a second
    revision exists), an area in them, and no ``alembic_version``."""
    with migration_connection(engine) as conn, conn.begin():
        command.upgrade(alembic_config(conn), BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO areas (kind, name, code, mqtt_group, created_at) "
                          "VALUES ('ward', 'Phường Lê Chân', 'HP-LC', 'hp-lc', :at)"),
                     {"at": dt.datetime(2026, 1, 1)})


def schema_differences(engine: Engine) -> list:
    """What ``alembic revision --autogenerate`` would write: the models against the database."""
    with engine.connect() as conn, warnings.catch_warnings():
        # SQLite's expression indexes (ix_nodes_online_playing_item) cannot be reflected, so
        # they are not compared: said once here rather than as a warning in every run
        warnings.filterwarnings("ignore", ".*expression-based index")
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT version_num FROM alembic_version")))


def audit_head_row(engine: Engine) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(text("SELECT id, last_id, last_hash FROM audit_head")).one())


# each process imports first, says so (its ready file), then waits for the go file, so their
# init_db calls overlap
_STARTER = """
import os, sys, time
from server.models import init_db, make_engine
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
init_db(make_engine(sys.argv[1]))
"""
READY_S = 60.0


def init_at_once(url: str, folder: Path, processes: int = 3) -> list[tuple[int, str]]:
    """Run init_db on ``url`` in several processes at the same moment, as the web server and
    the dispatcher do when started together; each process's (exit code, stderr). The moment
    comes once every process has imported the server (and is ready), not after a guess."""
    go = folder / "go"
    ready = [folder / f"ready-{i}" for i in range(processes)]
    starters = [subprocess.Popen([sys.executable, "-c", _STARTER, url, str(go), str(mark)],
                                 cwd=Path(__file__).resolve().parents[1],
                                 stderr=subprocess.PIPE, text=True) for mark in ready]
    deadline = time.monotonic() + READY_S

    def errors(p: subprocess.Popen) -> str:
        assert p.stderr is not None
        return p.stderr.read()

    while not all(mark.exists() for mark in ready):
        assert time.monotonic() < deadline and all(p.poll() is None for p in starters), \
            [(p.poll(), errors(p) if p.poll() is not None else "") for p in starters]
        time.sleep(0.005)
    go.touch()
    return [(p.wait(60), errors(p)) for p in starters]
