"""The web while the database cannot take a request (server/errors.py): a clear 503 in the
caller's language with a Retry-After, not a 500 traceback; and the same request works once the
database is back. PostgreSQL stopped outright: tests/e2e/test_faults_postgres.py."""
from __future__ import annotations

import sqlite3

import pytest

from server.i18n import t


@pytest.mark.sqlite  # a lock on the SQLite file is the fault
def test_database_locked_past_the_busy_timeout_answers_503_saying_so_and_works_after(make_app):
    s = make_app(database_busy_timeout_s=0.3)
    url = s.settings.database_url
    lock = sqlite3.connect(url[len("sqlite:///"):], timeout=5, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the file past the busy timeout
    area = {"name": "Phường Lê Chân", "code": "HP-LC", "kind": "ward", "parent_id": None}
    try:
        r = s.call("POST", "/api/v1/areas", json=area)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "5"
        assert r.json() == {"error": {"code": "database_unavailable",
                                      "message": t("err.database_unavailable", "vi")}}
        assert "Cơ sở dữ liệu tạm thời không sẵn sàng" in r.json()["error"]["message"]
    finally:
        lock.rollback()
        lock.close()
    assert s.call("POST", "/api/v1/areas", json=area).status_code == 201


@pytest.mark.sqlite  # SQLite's own error classes are the subject
def test_a_statement_sqlite_will_not_run_is_a_fault_not_the_database_unavailable(tmp_path):
    """SQLite raises OperationalError both for a database locked past the busy timeout and for
    a statement it refuses (too deep, a missing table): only the first is waited out (503, the
    bridge holding its batch); the second would never mend by waiting."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from server.errors import unavailable
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url, connect_args={"timeout": 0})
    other = create_engine(url, connect_args={"timeout": 0})
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    refused = []
    for sql in (" OR ".join(["a = 1"] * 1100), "nothing = 1"):
        try:
            with engine.connect() as conn:
                conn.execute(text(f"SELECT a FROM t WHERE {sql}"))
        except OperationalError as err:
            refused.append(err)
    with engine.connect() as conn:  # a missing table
        try:
            conn.execute(text("SELECT a FROM missing"))
        except OperationalError as err:
            refused.append(err)
    assert len(refused) == 3 and not any(unavailable(err) for err in refused)
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN EXCLUSIVE")
        try:
            with other.connect() as conn:
                conn.execute(text("SELECT a FROM t"))
        except OperationalError as err:
            locked = err
        holder.exec_driver_sql("ROLLBACK")
    assert "locked" in str(locked.orig) and unavailable(locked)
