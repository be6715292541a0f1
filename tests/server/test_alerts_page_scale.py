"""The alerts page at a province's size, in small: a page of the newest alerts at a time with
how many there are of each kind, every alert reachable through the pages and the filters, a
technician's step bringing them back to the page they acted from, and the same statements at 6
alerts as at 60 (at 10,000 nodes: docs/benchmarks.md)."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import insert

from server.models import Alert, utcnow
from server.web import alerts as web_alerts
from tests.server.helpers import Statements
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

KINDS = ("node_offline", "disk_low")


class Ward:
    def __init__(self, make_app):
        self.s = s = make_app()
        ward = s.area("Phường Lê Chân", "HP-LC", "ward")
        self.cluster = s.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])["id"]
        self.engine = s.app.extensions["db_engine"]
        self.user = PageUser(s, "admin", ADMIN_PASSWORD)
        self.ids: list[int] = []  # the open alerts, oldest first

    def grow(self, n: int) -> None:
        """``n`` more nodes, each with an open alert (offline and disk low in turn)."""
        r = self.s.call("POST", "/api/v1/nodes/bulk", json=[
            {"cluster_id": self.cluster, "name": f"Loa {len(self.ids) + i:03d}"}
            for i in range(n)])
        assert r.status_code == 201, r.text
        now = utcnow()
        rows = [{"kind": KINDS[(len(self.ids) + i) % 2], "node_id": node["id"],
                 "area_id": self.cluster, "severity": "warning", "state": "open",
                 "detail_class": "x", "episodes": [], "count": 1,
                 "detail": {"key": "alertd.node_offline",
                            "params": {"since": "2026-03-01T01:30:00Z"}},
                 "first_seen": now - dt.timedelta(minutes=20), "last_seen": now,
                 "opened_at": now} for i, node in enumerate(r.json()["nodes"])]
        with self.engine.begin() as conn:
            self.ids += [row.id for row in conn.execute(insert(Alert).returning(Alert.id),
                                                         rows)]

    def get(self, path: str) -> tuple[str, list[str]]:
        with Statements(self.engine) as st:
            r = self.user.get(path)
        assert r.status_code == 200, r.text
        return r.text, st.seen


def _shown(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="alert-(\d+)"', html)]


def test_the_alerts_page_shows_the_newest_alerts_a_page_at_a_time_with_counts_by_kind(
        make_app, monkeypatch):
    monkeypatch.setattr(web_alerts, "PAGE", 4)  # a page of 50, in small
    w = Ward(make_app)
    w.grow(10)
    newest = sorted(w.ids, reverse=True)
    first, _ = w.get("/alerts")
    assert _shown(first) == newest[:4]
    assert "Cảnh báo 1–4 trong tổng số 10" in first and "Trang 1/3" in first
    assert "Thiết bị mất kết nối (5)" in first and "(5)</a>" in first  # both kinds counted
    last, _ = w.get("/alerts?page=3")
    assert _shown(last) == newest[8:] and 'rel="next"' not in last
    beyond, _ = w.get("/alerts?page=99")  # past the last page: the last one
    assert _shown(beyond) == newest[8:]
    disk, _ = w.get("/alerts?kind=disk_low&page=2")
    assert _shown(disk) == [i for i in newest if i in w.ids[1::2]][4:]
    assert "trong tổng số 5" in disk and "Trang 2/2" in disk
    # acknowledging from the second page of a filter comes back to it
    token = re.search(r'name="csrf_token" value="([^"]+)"', disk)
    assert token is not None
    r = w.user.post(f"/alerts/{_shown(disk)[0]}/ack",
                    data={"csrf_token": token.group(1), "state": "open", "kind": "disk_low",
                          "page": "2", "comment": ""})
    assert r.status_code == 302
    assert "kind=disk_low" in r.headers["Location"] and "page=2" in r.headers["Location"]
    after, _ = w.get("/alerts?state=acknowledged")
    assert _shown(after) == [_shown(disk)[0]]


def test_the_alerts_page_costs_the_same_statements_at_6_alerts_as_at_60(make_app):
    w = Ward(make_app)
    w.grow(6)
    _, small = w.get("/alerts")
    w.grow(54)
    html, big = w.get("/alerts")
    assert len(_shown(html)) == web_alerts.PAGE
    assert len(big) == len(small), "\n".join(big)
