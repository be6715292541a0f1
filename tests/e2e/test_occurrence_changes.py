"""One occurrence of a series changed over the real stack: a real agent already holding today's
slot gets a new desired state when that occurrence is cancelled and does not play it, while the
next occurrence (tomorrow's, moved to a few seconds after today's, keeping its slot id) plays.

A rule may fire at most once a minute, so "the next occurrence" comes from a move: tomorrow's
occurrence moved to today is the honest short way to have one right after the cancelled one."""
import datetime as dt

from schedules.slots import slot_id
from tests.system import played_events

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
LEAD = dt.timedelta(seconds=15)  # time for the agent to hold the slot before it is cancelled
GAP = dt.timedelta(seconds=8)    # the moved occurrence plays this long after the cancelled one


def test_a_cancelled_occurrence_does_not_play_and_the_next_one_does(system):
    s = system
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    sink = s.start_agent(node)[1]
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="agent online")
    b = s.approved_bulletin("Bản tin buổi sáng", "Phường Lê Chân thông báo.")

    today = (dt.datetime.now(TZ) + LEAD).replace(microsecond=0)
    tomorrow = today + dt.timedelta(days=1)
    moved = today + GAP
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": today.isoformat()})
    cancelled_slot, next_slot = slot_id(bc["id"], today), slot_id(bc["id"], tomorrow)

    def held(predicate):
        d = s.ok("GET", f"/api/v1/nodes/{node['id']}/desired")
        return (d["body"] and d["desired_applied"] == d["version"]
                and predicate({e["slot_id"]: e["start_at"] for e in d["body"]["schedule"]}))

    s.wait(lambda: held(lambda slots: cancelled_slot in slots), timeout=10,
           what="the agent holds today's slot")
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/occurrences",
         json={"original_start": today.isoformat(), "cancelled": True})
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/occurrences",
         json={"original_start": tomorrow.isoformat(), "start_at": moved.isoformat()})
    s.wait(lambda: held(lambda slots: cancelled_slot not in slots
                        and slots.get(next_slot) == int(moved.timestamp() * 1000)),
           timeout=5, what="the agent holds the changed schedule")
    assert dt.datetime.now(TZ) < today, "the change must reach the agent before the slot"

    logs = s.wait(lambda: [p for p in s.ok("GET", "/api/v1/playlogs")["playlogs"]
                           if p["slot_id"] == next_slot],
                  timeout=(LEAD + GAP).total_seconds() + 20, what="the moved occurrence played")
    (log,) = logs
    assert log["result"] == "completed" and log["sha256"] == b["sha256"]
    started = dt.datetime.fromisoformat(log["started_at"].replace("Z", "+00:00"))
    assert abs(started - moved) < dt.timedelta(seconds=2), (started, moved)
    # the cancelled occurrence, due before the moved one, never played
    assert [p for p in s.ok("GET", "/api/v1/playlogs")["playlogs"]
            if p["slot_id"] == cancelled_slot] == []
    (sunk,) = played_events(sink)  # the player played once: the moved occurrence
    assert sunk["sha256"] == b["sha256"] and sunk["item_id"] == f"bc-{bc['id']}"
