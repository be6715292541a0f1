"""The same walking skeleton on PostgreSQL, on a schema the migrations built, and the migrations
themselves there, when DATABASE_URL points at one (each test gets its own schema, dropped
afterwards)."""

import pytest
from sqlalchemy import func, select

from server import audit
from tests import database
from server.models import Area, AuditEntry, init_db, make_engine, make_sessionmaker
from tests.migration_helpers import (audit_head_row, head, init_at_once,
                                     made_before_migrations, revisions, schema_differences,
                                     upgrade_from_empty)

DATABASE_URL = database.POSTGRES_URL  # DATABASE_URL, or LOA_TEST_DATABASE_URL
pytestmark = pytest.mark.skipif(not DATABASE_URL.startswith("postgresql"),
                                reason="DATABASE_URL does not point at PostgreSQL")


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def test_the_revisions_on_postgresql_build_exactly_the_models(pg_engine):
    upgrade_from_empty(pg_engine)
    assert schema_differences(pg_engine) == []
    assert revisions(pg_engine) == [head()]
    assert audit_head_row(pg_engine) == (1, 0, "0" * 64)


def test_init_db_on_an_empty_postgresql_database_builds_the_models_at_head(pg_engine):
    init_db(pg_engine)
    assert schema_differences(pg_engine) == []
    assert revisions(pg_engine) == [head()]
    init_db(pg_engine)  # the second start changes nothing
    assert revisions(pg_engine) == [head()]


def test_a_postgresql_database_made_before_migrations_is_stamped_and_keeps_its_rows(pg_engine):
    made_before_migrations(pg_engine)
    init_db(pg_engine)
    sessions = make_sessionmaker(pg_engine)
    assert revisions(pg_engine) == [head()]
    assert schema_differences(pg_engine) == []
    with sessions() as db:
        assert db.scalars(select(Area.code)).all() == ["HP-LC"]
        db.add(Area(kind="cluster", name="Cụm 1", code="HP-LC-1", group="hp-lc-1"))
        db.commit()
        assert db.scalar(select(func.count()).select_from(AuditEntry)) == 1
        assert audit.verify(db)[0] == 1


def test_programs_starting_at_once_on_postgresql_migrate_once(tmp_path, pg_engine, pg_url):
    assert init_at_once(pg_url, tmp_path) == [(0, "")] * 3
    assert revisions(pg_engine) == [head()]
    assert schema_differences(pg_engine) == []


def test_broadcast_on_postgresql_is_played_and_reported(tmp_path, broker, pg_engine, pg_url):
    from tests.system import System
    upgrade_from_empty(pg_engine)  # the skeleton runs on what the revisions built
    system = System(tmp_path, broker, database_url=pg_url)
    try:
        assert system.settings.database_url.startswith("postgresql")
        province = system.area("Thành phố Hải Phòng", "HP", "province")
        ward = system.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
        cluster = system.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
        node = system.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
        system.start_agent(node)
        system.wait(lambda: system.ok("GET", f"/api/v1/nodes/{node['id']}")["online"],
                    what="agent online")
        b = system.approved_bulletin()
        bc = system.ok("POST", "/api/v1/broadcasts",
                       json={"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]}})
        system.wait(lambda: system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["summary"]
                    ["played"] == 1, what="played on PostgreSQL")
        r = system.call("POST", "/api/v1/broadcasts",
                        json={"bulletin_id": 999, "targets": {"areas": [ward["id"]]}})
        assert r.status_code == 404
    finally:
        system.stop()
