"""The Reports page and a series' page at a province's size, in small: the reports page shows
every area's row (each linking to its own report) and a page of the nodes' table at a time, with
every node still in the CSV; a series' page counts every node's state of each occurrence as the
API's slot listing judges it, without a report line per node. Both cost the same statements at
6 nodes as at 60 (at 10,000 nodes: docs/benchmarks.md)."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import insert, update

from server.models import Broadcast, Node, PlayLog
from server.web import reports as web_reports
from tests.server.helpers import Statements
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
TODAY = dt.datetime.now(TZ).date()
# tomorrow and the day after: two occurrences of the series on every node, whatever the hour
PERIOD = "from={}&to={}".format(*(TODAY + dt.timedelta(days=d) for d in (1, 2)))
PAST = (dt.datetime.now(TZ) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


class Ward:
    """A ward of two clusters and a daily series on it that started three hours ago (made two
    days ago), so one occurrence is past its end and grace and the next ones to come."""

    def __init__(self, make_app):
        self.s = s = make_app()
        self.ward = s.area("Phường Lê Chân", "HP-LC", "ward")
        self.clusters = [s.area(f"Cụm {c}", f"HP-LC-{c}", "cluster", self.ward["id"])["id"]
                         for c in range(2)]
        self.nodes: list[str] = []
        self.bc: dict = {}
        self.engine = s.app.extensions["db_engine"]
        self.user = PageUser(s, "admin", ADMIN_PASSWORD)

    def grow(self, n: int) -> None:
        """``n`` more nodes (provisioned two days ago, so the past occurrence planned them),
        one in three of them with a play of it: aired, cut, failed in turn."""
        r = self.s.call("POST", "/api/v1/nodes/bulk", json=[
            {"cluster_id": self.clusters[i % 2], "name": f"Loa {len(self.nodes) + i:03d}"}
            for i in range(n)])
        assert r.status_code == 201, r.text
        new = [a["id"] for a in r.json()["nodes"]]
        self.nodes = sorted(self.nodes + new)
        if not self.bc:  # once the ward has nodes to target
            b = self.s.approved_bulletin("Thời sự phường")
            self.bc = self.s.ok("POST", "/api/v1/broadcasts", json={
                "bulletin_id": b["id"], "targets": {"areas": [self.ward["id"]]},
                "recurrence": f"FREQ=DAILY;BYHOUR={PAST.hour};BYMINUTE=0",
                "start_at": PAST.isoformat()})
            self.sha = b["sha256"]
        two_days_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=2)
        with self.engine.begin() as conn:
            conn.execute(update(Broadcast).where(Broadcast.id == self.bc["id"])
                         .values(created_at=two_days_ago))
            conn.execute(update(Node).where(Node.id.in_(new)).values(created_at=two_days_ago))
        slots = self.s.ok("GET", f"/api/v1/broadcasts/{self.bc['id']}/slots")["occurrences"]
        past = next(o for o in slots if o["start_at"] <= dt.datetime.now(dt.UTC).isoformat())
        start = int(dt.datetime.fromisoformat(past["start_at"]).timestamp() * 1000)
        plays = [{"node_id": node_id, "broadcast_id": self.bc["id"], "item_id": past["slot_id"],
                  "slot_id": past["slot_id"], "sha256": self.sha, "started_at_ms": start,
                  "ended_at_ms": None if k % 3 == 2 else start + (60_000 if k % 3 else 1000),
                  "result": ("completed", "preempted", "failed")[k % 3],
                  "reason": "media_unavailable" if k % 3 == 2 else None}
                 for k, node_id in enumerate(new) if k % 3 == 0 or k % 7 == 1]
        if plays:
            with self.engine.begin() as conn:
                conn.execute(insert(PlayLog), plays)

    def get(self, path: str) -> tuple[str, list[str]]:
        with Statements(self.engine) as st:
            r = self.user.get(path)
        assert r.status_code == 200, r.text
        return r.text, st.seen


def test_the_reports_page_shows_every_area_and_a_page_of_nodes_the_csv_every_node(
        make_app, monkeypatch):
    monkeypatch.setattr(web_reports, "NODE_PAGE", 4)  # a page of 50 rows, in small
    w = Ward(make_app)
    w.grow(10)
    first, _ = w.get(f"/reports?{PERIOD}")
    assert re.findall(r'<tr id="node-([^"]+)"', first) == w.nodes[:4]
    assert "Thiết bị 1–4 trong tổng số 10" in first and "Trang 1/3" in first
    for cluster in w.clusters:  # each area's row: all its nodes' counts, a link to its report
        row = re.search(rf'<tr id="area-{cluster}" data-planned="(\d+)"(.*?)</tr>', first, re.S)
        assert row is not None and int(row.group(1)) == 2 * 5  # two days to come, five nodes
        assert f"area={cluster}" in row.group(2)
    last_link = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert last_link is not None and "page=2" in last_link.group(1)
    last, _ = w.get(f"/reports?{PERIOD}&page=3")
    assert re.findall(r'<tr id="node-([^"]+)"', last) == w.nodes[8:]
    assert "Thiết bị 9–10 trong tổng số 10" in last and 'rel="next"' not in last
    beyond, _ = w.get(f"/reports?{PERIOD}&page=99")  # past the last page: the last one
    assert re.findall(r'<tr id="node-([^"]+)"', beyond) == w.nodes[8:]
    csv_text = w.user.get(f"/reports/download.csv?{PERIOD}").text
    assert all(f"({node_id})" in csv_text for node_id in w.nodes)


def test_the_reports_page_costs_the_same_statements_at_6_nodes_as_at_60(make_app):
    w = Ward(make_app)
    w.grow(6)
    _, small = w.get(f"/reports?{PERIOD}")
    w.grow(54)
    page, big = w.get(f"/reports?{PERIOD}")
    assert len(re.findall(r'<tr id="node-', page)) == web_reports.NODE_PAGE
    assert len(big) == len(small), "\n".join(big)
    # nor a bind parameter per node of the ward: SQLite refuses more than 32,766 a statement
    assert max(st.count("?") for st in big) < 60


def _states(html: str) -> dict[str, tuple[dict[str, str], list[tuple[str, str]]]]:
    """Per occurrence row of the page: its counts by state and the nodes it names."""
    out = {}
    for sid, row in re.findall(r'<tr id="slot-([^"]+)">(.*?)</tr>', html, re.S):
        counts = dict(re.findall(r'<td class="count-(\w+)">(\d*)</td>', row))
        out[sid] = ({k: v for k, v in counts.items() if v},
                    re.findall(r'data-node="([^"]+)" data-state="(\w+)"', row))
    return out


def test_a_series_page_counts_each_occurrence_as_the_api_lists_it_in_the_same_statements(
        make_app):
    w = Ward(make_app)
    w.grow(6)
    _, small = w.get(f"/broadcasts/{w.bc['id']}")
    w.grow(54)
    html, big = w.get(f"/broadcasts/{w.bc['id']}")
    assert len(big) == len(small), "\n".join(big)
    shown = _states(html)
    listed = w.s.ok("GET", f"/api/v1/broadcasts/{w.bc['id']}/slots")["occurrences"]
    assert set(shown) == {o["slot_id"] for o in listed}
    for o in listed:
        counts, named = shown[o["slot_id"]]
        assert counts == {k: str(v) for k, v in o["counts"].items() if v}
        # 60 nodes: only those to look at are named, in the API's order (the first 50)
        assert named == [(n["node_id"], n["state"]) for n in o["nodes"]
                         if n["state"] not in ("scheduled", "delivered", "ready",
                                               "played")][:50]
    past = next(counts for counts, _ in shown.values() if "played" in counts)
    assert {"played", "failed", "missed"} <= set(past)  # the plays judged, the rest missed
