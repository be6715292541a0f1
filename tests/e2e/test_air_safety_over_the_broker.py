"""Air safety with the dispatcher publishing through Mosquitto to a real agent: a slot plays the
approved audio even after an edit, and a row that cannot be signed is failed while an emergency
still goes out (the rules that need no broker: tests/server/test_air_safety.py)."""
import datetime as dt
import hashlib
import json

import pytest

from server.models import Command, utcnow
from tests.server.helpers import approved, db, later, ward_with_users


@pytest.fixture
def ward(app_only):
    return ward_with_users(app_only)


def test_an_edit_after_scheduling_never_airs_the_scheduled_slot_plays_the_approved_audio(
        app_only, ward):
    s = app_only
    _, sink = s.start_agent(ward["node"])
    b = approved(s)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": later(3)})
    edited = s.ok("PATCH", f"/api/v1/bulletins/{b['id']}",
                  json={"text": "Nội dung khác chưa được duyệt."})
    assert edited["status"] == "pending" and edited["sha256"] != b["sha256"]
    assert edited["revision"] == b["revision"] + 1
    s.start_dispatcher()  # the dispatcher reaches the slot only after the edit
    report = s.wait(lambda: (r := s.ok("GET", f"/api/v1/broadcasts/{bc['id']}"))["summary"]
                    ["played"] == 1 and r, timeout=30, what="the slot played")
    assert report["approval"]["sha256"] == b["sha256"]
    played = [json.loads(line) for line in (sink / "played.jsonl").read_text().splitlines()]
    assert [p["sha256"] for p in played] == [b["sha256"]]
    files = [p for p in sink.iterdir() if p.suffix != ".jsonl"]
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == [b["sha256"]]
    # the edit itself cannot be broadcast until it has its own approval
    r = s.call("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"],
                                                   "targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_approved"




def test_a_row_that_cannot_be_signed_is_failed_and_an_emergency_still_goes_out(system):
    s = system
    province = s.area("Tỉnh", "P", "province")
    cluster = s.area("Cụm", "P-1", "cluster", province["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    with db(s) as session:  # a row written before validation existed, or by a faulty writer
        session.add(Command(id="bad-row", type="test", target=f"node:{node['id']}",
                            topic=f"loa/v1/nodes/{node['id']}/cmd", ttl_ms=600_000,
                            body={"kind": "tone", "x": {"y": 1.5}}, node_id=node["id"],
                            created_at=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"], "priority": "emergency",
                                                  "targets": {"areas": [province["id"]]}})
    s.wait(lambda: s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["summary"]["sent"] == 1,
           what="the emergency published")
    cmd = s.ok("POST", f"/api/v1/nodes/{node['id']}/commands",
               json={"type": "set_volume", "body": {"volume": 40}})
    s.wait(lambda: s.ok("GET", f"/api/v1/commands/{cmd['id']}")["published_at"],
           what="a later command published")
    with db(s) as session:
        bad = session.get(Command, "bad-row")
        assert bad.failed_at is not None and bad.payload is None
        assert "signed" in bad.last_error and "floating-point" in bad.last_error
    health = s.call("GET", "/healthz", token=None).json()
    assert health["checks"]["outbox"]["ok"] and health["checks"]["outbox"]["failed_last_hour"] == 1
