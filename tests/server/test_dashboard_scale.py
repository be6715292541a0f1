"""The dashboard at a province's size: what plays now is picked by the database, so the page
reads the nodes that play something and the first rows of its table, never every idle node
(10,000 online nodes read and their telemetry parsed on every poll)."""
from __future__ import annotations

from sqlalchemy import event, update

from server.models import Node
from server.web.dashboard import MAX_NODES
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser


def test_the_dashboard_reads_the_playing_nodes_not_every_idle_one(make_app):
    s = make_app()
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
    r = s.call("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": cluster["id"], "name": f"Loa {i:03d}"} for i in range(2 * MAX_NODES)])
    assert r.status_code == 201, r.text
    last, name = max((a["id"], a["name"]) for a in r.json()["nodes"])  # past the table's rows
    now_on = s.approved_bulletin("Thông báo cắt điện")
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": now_on["id"],
                                                  "targets": {"nodes": [last]}})
    with s.app.extensions["db_sessions"]() as db:
        db.execute(update(Node).values(online=True, last_telemetry={"volume": 80,
                                                                    "playing": None}))
        db.execute(update(Node).where(Node.id == last).values(last_telemetry={
            "volume": 80, "playing": {"item_id": f"bc-{bc['id']}", "priority": 3, "since": 0}}))
        db.commit()
    user = PageUser(s, "admin", ADMIN_PASSWORD)
    loaded: list[str] = []

    def on_load(target, context):
        loaded.append(target.id)
    event.listen(Node, "load", on_load)
    try:
        page = user.get("/").text
    finally:
        event.remove(Node, "load", on_load)
    now_part = page[page.index('id="h-now"'):page.index('id="h-next"')]
    assert "Thông báo cắt điện" in now_part and name in now_part
    assert len(set(loaded)) <= MAX_NODES + 1  # the table's rows and the one that plays
