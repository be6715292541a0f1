"""The dashboard at a province's size: what plays now is picked by the database, so the page
reads the nodes that play something and the first rows of its table, never every idle node
(10,000 online nodes read and their telemetry parsed on every poll); its counts, what plays and
the slots still to come cost the same statements at 6 nodes as at 60, and a programme playing
on the whole fleet names its first nodes and counts the rest."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import event, select, update

from server.models import Node
from server.web.dashboard import MAX_NODES, MAX_PLAYING_NAMES
from tests.server.helpers import Statements, noon_zone
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


class Province:
    """A ward of two clusters, a programme that plays on some of its nodes and one slot still to
    come today on one single node; ``grow`` adds nodes, a third of them playing, one in ten
    offline."""

    def __init__(self, make_app):
        self.s = s = make_app(timezone=noon_zone())
        province = s.area("Thành phố Hải Phòng", "HP", "province")
        ward = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
        self.clusters = [s.area(f"Cụm {c}", f"HP-LC-{c}", "cluster", ward["id"])["id"]
                         for c in range(2)]
        self.nodes: list[str] = []
        self.grow(1)
        news = s.approved_bulletin("Thời sự phường")
        self.playing = s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": news["id"], "targets": {"areas": [ward["id"]]}})
        later = s.approved_bulletin("Lịch tiêm chủng")
        start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
        s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": later["id"], "targets": {"nodes": [self.nodes[0]]},
            "start_at": start.isoformat().replace("+00:00", "Z")})

    def grow(self, n: int) -> None:
        r = self.s.call("POST", "/api/v1/nodes/bulk", json=[
            {"cluster_id": self.clusters[i % 2], "name": f"Loa {len(self.nodes) + i:03d}"}
            for i in range(n)])
        assert r.status_code == 201, r.text
        self.nodes = sorted(self.nodes + [a["id"] for a in r.json()["nodes"]])

    def present(self) -> None:
        """Every node reporting: one in three playing the programme, one in ten offline."""
        with self.s.app.extensions["db_sessions"]() as db:
            for i, node in enumerate(self.nodes):
                playing = {"item_id": f"bc-{self.playing['id']}", "priority": 3,
                           "since": 0} if i % 3 == 0 else None
                db.execute(update(Node).where(Node.id == node).values(
                    online=i % 10 != 9, last_telemetry={"volume": 80, "playing": playing}))
            db.commit()


def _dashboard(p: Province, user: PageUser, path: str) -> tuple[str, list[str]]:
    with Statements(p.s.app.extensions["db_engine"]) as st:
        r = user.get(path)
    assert r.status_code == 200, r.text
    return r.text, st.seen


def test_the_dashboard_costs_the_same_statements_at_6_nodes_as_at_60(make_app):
    p = Province(make_app)
    p.grow(5)
    p.present()
    user = PageUser(p.s, "admin", ADMIN_PASSWORD)
    small = {path: _dashboard(p, user, path) for path in ("/", "/partials/dashboard")}
    p.grow(54)
    p.present()
    big = {path: _dashboard(p, user, path) for path in ("/", "/partials/dashboard")}
    for path in small:
        assert len(big[path][1]) == len(small[path][1]), path
    page = big["/"][0]
    assert 'data-online="54" data-offline="6" data-alarm="0" data-total="60"' in page
    assert 'class="playing" data-nodes="18"' in page  # 20 of the 60 play, 2 of them offline
    next_part = page[page.index('id="h-next"'):page.index('id="h-alarms"')]
    assert "Lịch tiêm chủng" in next_part and p.nodes[0] in next_part  # its one node


def test_a_programme_on_the_whole_fleet_names_its_first_nodes_and_counts_the_rest(make_app):
    p = Province(make_app)
    p.grow(3 * MAX_PLAYING_NAMES + 10)
    with p.s.app.extensions["db_sessions"]() as db:
        db.execute(update(Node).values(online=True, last_telemetry={"volume": 80, "playing": {
            "item_id": f"bc-{p.playing['id']}", "priority": 3, "since": 0}}))
        db.commit()
        names = list(db.scalars(select(Node.name).order_by(Node.id)))
    page = PageUser(p.s, "admin", ADMIN_PASSWORD).get("/").text
    now_part = page[page.index('id="h-now"'):page.index('id="h-next"')]
    total = len(p.nodes)
    assert "Thời sự phường" in now_part and f"trên {total} thiết bị" in now_part
    assert all(n in now_part for n in names[:MAX_PLAYING_NAMES])
    assert not any(n in now_part for n in names[MAX_PLAYING_NAMES:])
    assert f"… và {total - MAX_PLAYING_NAMES} thiết bị khác." in now_part
