"""A programme over the real stack: two approved bulletins joined into one media play on a real
agent as one item, now (a play command) and at a series' slot (its desired state); the file the
agent played is the programme's media, byte for byte, and the play logs name it."""
import datetime as dt
import hashlib

from schedules.slots import slot_id
from tests.system import played_events, sink_files

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
LEAD = dt.timedelta(seconds=20)  # time for the one-off to finish and the slot to be prefetched


def test_a_programme_plays_on_a_real_agent_as_its_one_media(system):
    s = system
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    _proc, sink = s.start_agent(node)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="agent online")
    one = s.approved_bulletin("Tin sáng", "Phường Lê Chân thông báo lịch tiêm chủng.")
    two = s.approved_bulletin("Tin vệ sinh", "Bà con giữ gìn vệ sinh môi trường.")
    p = s.ok("POST", "/api/v1/programmes", json={"title": "Chương trình sáng",
                                                 "items": [one["id"], two["id"]]})
    assert abs(p["duration_ms"] - one["duration_ms"] - two["duration_ms"]) < 300

    # now: one play command whose item is the programme's media
    bc = s.ok("POST", "/api/v1/broadcasts", json={"programme_id": p["id"],
                                                  "targets": {"areas": [ward["id"]]}})
    report = s.wait(lambda: (r := s.ok("GET", f"/api/v1/broadcasts/{bc['id']}"))["summary"]
                    ["played"] == 1 and r["nodes"][0]["status"] == "finished" and r,
                    timeout=30, what="the programme played")
    assert report["nodes"][0]["played"] == "completed"
    (played_file,) = sink_files(sink, p["sha256"])
    assert hashlib.sha256(played_file.read_bytes()).hexdigest() == p["sha256"]
    assert [e["sha256"] for e in played_events(sink)] == [p["sha256"]]

    # a series: its slot in the desired state plays the same media at its time
    start = (dt.datetime.now(TZ) + LEAD).replace(microsecond=0)
    daily = s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat()})
    slot = slot_id(daily["id"], start)
    logs = s.wait(lambda: [x for x in s.ok("GET", "/api/v1/playlogs")["playlogs"]
                           if x["slot_id"] == slot],
                  timeout=LEAD.total_seconds() + 30, what="the series' slot played")
    (log,) = logs
    assert log["broadcast_id"] == daily["id"] and log["bulletin_id"] is None
    assert log["result"] == "completed" and log["sha256"] == p["sha256"]
    assert [e["sha256"] for e in played_events(sink)] == [p["sha256"], p["sha256"]]
    assert s.ok("GET", f"/api/v1/nodes/{node['id']}")["rejected"]["messages"] == 0
