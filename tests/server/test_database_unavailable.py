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
