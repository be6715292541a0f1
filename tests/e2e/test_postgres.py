"""The same walking skeleton on PostgreSQL, when DATABASE_URL points at one (each test gets its
own schema, dropped afterwards)."""
import os
import uuid

import pytest
from sqlalchemy import create_engine, text

DATABASE_URL = os.environ.get("DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not DATABASE_URL.startswith("postgresql"),
                                reason="DATABASE_URL does not point at PostgreSQL")


def _driver_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def pg_url():
    schema = f"loa_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_driver_url(DATABASE_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in DATABASE_URL else "?"
    yield f"{DATABASE_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_broadcast_on_postgresql_is_played_and_reported(tmp_path, broker, pg_url):
    from tests.system import System
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
        system.wait(lambda: system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["summary"]["played"] == 1,
                    what="played on PostgreSQL")
        r = system.call("POST", "/api/v1/broadcasts",
                        json={"bulletin_id": 999, "targets": {"areas": [ward["id"]]}})
        assert r.status_code == 404
    finally:
        system.stop()
