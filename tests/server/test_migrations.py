"""Schema migrations on SQLite (server/migrations): the revisions build exactly what the models
declare, a database made before migrations is adopted with its rows, a second start changes
nothing, and two programs starting at once migrate once. PostgreSQL: tests/e2e/test_postgres.py."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from server import audit
from server.models import Area, AuditEntry, init_db, make_engine, make_sessionmaker
from tests.migration_helpers import (audit_head_row, head, init_at_once,
                                     made_before_migrations, revisions, schema_differences,
                                     upgrade_from_empty)

GENESIS_HEAD = (1, 0, "0" * 64)


def _engine(tmp_path, name="loa.db"):
    return make_engine(f"sqlite:///{tmp_path / name}")


def _schema_sql(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY name")).all()


def test_the_revisions_from_an_empty_database_build_exactly_the_models(tmp_path):
    engine = _engine(tmp_path)
    upgrade_from_empty(engine)
    assert schema_differences(engine) == []
    assert revisions(engine) == [head()]
    assert audit_head_row(engine) == GENESIS_HEAD  # what create_all's listener inserts
    engine.dispose()


def test_init_db_on_an_empty_database_builds_the_models_at_head(tmp_path):
    engine = _engine(tmp_path)
    init_db(engine)
    assert schema_differences(engine) == []
    assert revisions(engine) == [head()]
    assert audit_head_row(engine) == GENESIS_HEAD
    migrated = _engine(tmp_path, "migrated.db")
    upgrade_from_empty(migrated)
    # create_all's shortcut and the revisions give the same tables, columns and indexes
    assert [row[:2] for row in _schema_sql(engine)] == [row[:2] for row in _schema_sql(migrated)]
    engine.dispose()
    migrated.dispose()


def test_a_database_made_before_migrations_is_stamped_and_keeps_its_rows(tmp_path):
    engine = _engine(tmp_path)
    made_before_migrations(engine)
    init_db(engine)
    sessions = make_sessionmaker(engine)
    assert revisions(engine) == [head()]
    assert schema_differences(engine) == []
    with sessions() as db:
        assert db.scalars(select(Area.code)).all() == ["HP-LC"]
        db.add(Area(kind="cluster", name="Cụm 1", code="HP-LC-1", group="hp-lc-1"))
        db.commit()
        assert db.scalar(select(func.count()).select_from(AuditEntry)) == 1
        assert audit.verify(db)[0] == 1  # the audit chain goes on unbroken
    engine.dispose()


def test_a_second_init_changes_nothing(tmp_path):
    engine = _engine(tmp_path)
    init_db(engine)
    with make_sessionmaker(engine)() as db:
        db.add(Area(kind="ward", name="Phường Lê Chân", code="HP-LC", group="hp-lc"))
        db.commit()
    before = _schema_sql(engine), revisions(engine), audit_head_row(engine)
    init_db(engine)
    assert (_schema_sql(engine), revisions(engine), audit_head_row(engine)) == before
    engine.dispose()


@pytest.mark.e2e  # processes of their own, as the web server's and the dispatcher's (README, Tests)
def test_web_server_and_dispatcher_starting_at_once_on_one_file_migrate_once(tmp_path):
    assert init_at_once(f"sqlite:///{tmp_path}/loa.db", tmp_path) == [(0, "")] * 3
    engine = _engine(tmp_path)
    assert revisions(engine) == [head()]
    assert schema_differences(engine) == []
    assert audit_head_row(engine) == GENESIS_HEAD
    engine.dispose()


def test_threads_of_one_process_starting_at_once_migrate_once(tmp_path):
    starters = 4
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start() -> None:
        engine = _engine(tmp_path)  # each its own engine and connections, as two processes
        try:
            barrier.wait()
            init_db(engine)
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    engine = _engine(tmp_path)
    assert revisions(engine) == [head()]
    assert schema_differences(engine) == []
    assert audit_head_row(engine) == GENESIS_HEAD
    engine.dispose()
