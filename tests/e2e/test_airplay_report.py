"""The airplay report over the real stack: after a real agent plays a one-off broadcast and a
series slot, the report says `aired` for both, from the agent's own `played` events; the same
slot on a node whose agent was stopped is `missed` with reason `no_report` once its end and the
(here tiny) grace have passed."""
import datetime as dt
import signal
from urllib.parse import quote

import pytest

from schedules.slots import slot_id

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
LEAD = dt.timedelta(seconds=15)  # time for the agent to get its desired state and prefetch


@pytest.fixture
def quick_system(tmp_path, broker):
    """A running server whose airplay report waits only 1 s for a node's report."""
    from tests.system import System
    s = System(tmp_path, broker, airplay_grace_s=1)
    yield s
    s.stop()


def test_the_report_says_aired_for_what_an_agent_played_and_no_report_for_a_stopped_one(
        quick_system):
    s = quick_system
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    live = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    gone = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 2"})
    s.start_agent(live)
    stopped, _sink = s.start_agent(gone)
    for node in (live, gone):
        s.wait(lambda n=node: s.ok("GET", f"/api/v1/nodes/{n['id']}")["online"],
               what=f"{node['id']} online")
    stopped.send_signal(signal.SIGTERM)
    stopped.wait(10)

    b = s.approved_bulletin("Bản tin buổi sáng", "Phường Lê Chân thông báo lịch tiêm chủng.")
    start = (dt.datetime.now(TZ) + LEAD).replace(microsecond=0)
    series = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat()})
    once = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"nodes": [live["id"]]}, "override": True})
    slot = slot_id(series["id"], start)

    span = (f"?from={quote((start - dt.timedelta(minutes=2)).isoformat())}"
            f"&to={quote((start + dt.timedelta(minutes=1)).isoformat())}")

    def settled():
        got = s.ok("GET", f"/api/v1/reports/airplay{span}")
        return got if got["items"] and not any(i["status"] == "pending"
                                                for i in got["items"]) else None

    got = s.wait(settled, timeout=LEAD.total_seconds() + 40, what="every item settled")
    lines = sorted((i["node_id"], i["broadcast_id"], i["slot_id"], i["status"], i["reason"])
                   for i in got["items"])
    assert lines == sorted([
        (live["id"], once["id"], None, "aired", None),
        (live["id"], series["id"], slot, "aired", None),
        (gone["id"], series["id"], slot, "missed", "no_report")])
    aired = next(i for i in got["items"] if i["slot_id"] == slot and i["node_id"] == live["id"])
    started = dt.datetime.fromisoformat(aired["started_at"].replace("Z", "+00:00"))
    assert abs(started - start) < dt.timedelta(seconds=2)
    one_off = next(i for i in got["items"] if i["broadcast_id"] == once["id"])
    assert one_off["cmd_id"] and one_off["slot_id"] is None
    assert got["totals"] == [{"area_id": cluster["id"], "area_name": "Cụm loa khu phố 3",
                              "planned": 3, "aired": 2, "partial": 0, "missed": 1,
                              "pending": 0}]
    csv = s.call("GET", f"/api/v1/reports/airplay{span}", headers={"Accept": "text/csv"})
    assert csv.text.count("\n") == 4 and "missed,no_report" in csv.text
