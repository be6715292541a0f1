"""A series on a whole ward marks each of its nodes for a new schedule and counts them by their
clusters, not with a bind parameter per node: a province's 10,000 node ids in one statement
come near SQLite's limit of 32,766 (reached at about 33,000 nodes)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from server.models import Node
from tests.server.helpers import Statements

NODES = 60


def test_a_series_on_a_ward_marks_every_node_without_a_parameter_per_node(make_app):
    s = make_app()
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    clusters = [s.area(f"Cụm {c}", f"HP-LC-{c}", "cluster", ward["id"])["id"] for c in range(2)]
    r = s.call("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": clusters[i % 2], "name": f"Loa {i:03d}"} for i in range(NODES)])
    assert r.status_code == 201, r.text
    revoked = r.json()["nodes"][0]["id"]
    assert s.call("POST", f"/api/v1/nodes/{revoked}/revoke").status_code in (200, 204)
    engine = s.app.extensions["db_engine"]
    with engine.begin() as conn:
        conn.execute(update(Node).values(desired_dirty=False))
    b = s.approved_bulletin("Thời sự phường")
    with Statements(engine) as st:
        s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
            "recurrence": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
            "start_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()})
    with engine.connect() as conn:
        dirty = dict(conn.execute(select(Node.id, Node.desired_dirty)).all())
    assert dirty.pop(revoked) is False
    assert all(dirty.values()) and len(dirty) == NODES - 1
    assert max(statement.count("?") for statement in st.seen) < NODES // 2
