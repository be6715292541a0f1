"""A recurring broadcast over the real stack: its daily rule reaches the ward's agents in their
desired states and plays at its time on each, from the approved audio, with a play log naming the
slot; a node provisioned into the ward after the broadcast was created gets the slot too. Staff
see the slot on each node go delivered, ready (before its time), then played."""
import datetime as dt
import hashlib

from schedules.slots import slot_id
from tests.system import played_events, sink_files

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
LEAD = dt.timedelta(seconds=15)  # time for a late agent to start, connect and prefetch


def test_daily_rule_reaches_the_agents_and_plays_at_its_time_also_on_a_node_added_later(system):
    s = system
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    first = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    sinks = {first["id"]: s.start_agent(first)[1]}
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{first['id']}")["online"], what="agent online")
    b = s.approved_bulletin("Bản tin buổi sáng", "Phường Lê Chân thông báo lịch tiêm chủng.")

    start = (dt.datetime.now(TZ) + LEAD).replace(microsecond=0)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat()})
    assert bc["status"] == "scheduled" and bc["recurrence"] == "FREQ=DAILY"
    slot = slot_id(bc["id"], start)

    # provisioned into the ward after the broadcast was made
    later = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 2"})
    sinks[later["id"]] = s.start_agent(later)[1]

    def holds_slot(node_id):
        d = s.ok("GET", f"/api/v1/nodes/{node_id}/desired")
        return d["body"] and any(e["slot_id"] == slot for e in d["body"]["schedule"]) \
            and d["desired_applied"] == d["version"] and d

    def slot_states():
        """node id -> its delivery state of the slot, as staff see it."""
        answer = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}/slots")
        (occurrence,) = [o for o in answer["occurrences"] if o["slot_id"] == slot]
        return {n["node_id"]: n["state"] for n in occurrence["nodes"]}

    for node_id in sinks:
        held = s.wait(lambda n=node_id: holds_slot(n), timeout=15,
                      what=f"{node_id} holds the slot")
        # it applied the version that carries the slot: delivered (ready once its media is)
        assert slot_states()[node_id] in ("delivered", "ready")
        entry = next(e for e in held["body"]["schedule"] if e["slot_id"] == slot)
        assert entry["start_at"] == int(start.timestamp() * 1000)
        assert entry["item"]["media"]["sha256"] == b["sha256"]
        # tomorrow's occurrence is in the window too
        assert slot_id(bc["id"], start + dt.timedelta(days=1)) in \
            [e["slot_id"] for e in held["body"]["schedule"]]

    # each node said the slot's media is in its cache before the slot's time
    before_start = (start - dt.datetime.now(TZ)).total_seconds()
    assert before_start > 0, "the nodes took the whole lead to take the slot"
    s.wait(lambda: set(slot_states().values()) == {"ready"}, timeout=before_start,
           what="both nodes ready before the slot")
    assert dt.datetime.now(TZ) < start

    logs = s.wait(lambda: len(r := [p for p in s.ok("GET", "/api/v1/playlogs")["playlogs"]
                                    if p["slot_id"] == slot]) == 2 and r,
                  timeout=LEAD.total_seconds() + 30, what="both nodes played the slot")
    assert sorted(p["node_id"] for p in logs) == sorted(sinks)
    for log in logs:
        assert log["broadcast_id"] == bc["id"] and log["bulletin_id"] == b["id"]
        assert log["result"] == "completed" and log["sha256"] == b["sha256"]
        started = dt.datetime.fromisoformat(log["started_at"].replace("Z", "+00:00"))
        assert abs(started - start) < dt.timedelta(seconds=2), (started, start)
    for node_id, sink in sinks.items():
        assert [p["sha256"] for p in played_events(sink)] == [b["sha256"]]
        (played_file,) = sink_files(sink, b["sha256"])
        assert hashlib.sha256(played_file.read_bytes()).hexdigest() == b["sha256"]
        assert s.ok("GET", f"/api/v1/nodes/{node_id}")["rejected"]["messages"] == 0
    assert slot_states() == {node_id: "played" for node_id in sinks}
    # a series stays scheduled: it was never dispatched as a play command
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["status"] == "scheduled"
