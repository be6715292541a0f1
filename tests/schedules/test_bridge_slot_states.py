"""Each occurrence of a series on each node, as staff see it (GET /broadcasts/{id}/slots): the
dispatcher's desired states schedule it, the node's desired_applied delivers it, its media_ready
makes it ready, its played event gives the outcome; fed through the bridge as nodes send them,
one by one and in a batch."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select, update

from schedules.dispatcher import Dispatcher
from schedules.slots import slot_id
from server.bridge import Bridge
from server.keys import load_signing_key
from server.models import Node, SlotDelivery
from tests.server.helpers import Statements
from tests.transports import NoTransport

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone


def tomorrow_at(hour: int) -> dt.datetime:
    day = dt.datetime.now(TZ).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour), TZ)


@pytest.fixture
def ward(app_only):
    s = app_only
    ward = s.area("Phường Lê Chân", "LC", "ward")
    cluster = s.area("Cụm 1", "LC-1", "cluster", ward["id"])
    nodes = [s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                 "name": f"Loa {n}"})["id"] for n in "AB"]
    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0", "start_at": tomorrow_at(6).isoformat()})
    bridge = Bridge(s.app.extensions["db_sessions"], NoTransport(), s.settings.topic_prefix,
                    tz=s.settings.timezone)
    return {"s": s, "nodes": nodes, "bc": bc, "sha": b["sha256"], "bridge": bridge,
            "cluster": cluster, "slot": slot_id(bc["id"], tomorrow_at(6))}


def build_desired(s, at: dt.datetime) -> None:
    """The dispatcher's desired-state pass, its clock at ``at`` (no broker: nothing is sent)."""
    kid, key = load_signing_key(s.settings.signing_key_file)
    Dispatcher(s.settings, s.app.extensions["db_sessions"], NoTransport(), key, kid,
               clock=lambda: int(at.timestamp() * 1000)).refresh_desired()


def event(bridge, node_id, type_, **fields):
    ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return (f"{bridge.prefix}/nodes/{node_id}/events",
            json.dumps({"v": 1, "id": str(uuid.uuid4()), "type": type_, "ts": ms,
                        **fields}).encode())


def slot_played(w, node_id):
    """The node's `played` event of tomorrow 06:00's occurrence, aired in full."""
    ms = int(tomorrow_at(6).timestamp() * 1000)
    return event(w["bridge"], node_id, "played", item_id=f"bc-{w['bc']['id']}",
                 slot_id=w["slot"], sha256=w["sha"], scheduled_at=ms, started_at=ms,
                 ended_at=ms + 60_000, result="completed")


def states(w, slot=None) -> dict[str, str]:
    """node id -> its state of the occurrence ``slot`` (default: tomorrow 06:00's)."""
    answer = w["s"].ok("GET", f"/api/v1/broadcasts/{w['bc']['id']}/slots",
                       params={"to": (tomorrow_at(6) + dt.timedelta(days=2)).isoformat()})
    (occurrence,) = [o for o in answer["occurrences"] if o["slot_id"] == (slot or w["slot"])]
    return {n["node_id"]: n["state"] for n in occurrence["nodes"]}


def test_an_occurrence_goes_scheduled_delivered_ready_played_on_each_node(ward):
    w, (a, b) = ward, ward["nodes"]
    assert states(w) == {a: "scheduled", b: "scheduled"}  # no desired state built yet
    build_desired(w["s"], tomorrow_at(5))
    assert states(w) == {a: "scheduled", b: "scheduled"}
    w["bridge"].handle(*event(w["bridge"], a, "desired_applied", version=1))
    assert states(w) == {a: "delivered", b: "scheduled"}
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=w["sha"]))
    assert states(w) == {a: "ready", b: "scheduled"}
    ms = int(tomorrow_at(6).timestamp() * 1000)
    w["bridge"].handle(*event(w["bridge"], a, "played", item_id=f"bc-{w['bc']['id']}",
                              slot_id=w["slot"], sha256=w["sha"], scheduled_at=ms,
                              started_at=ms, ended_at=ms + 60_000, result="completed"))
    assert states(w) == {a: "played", b: "scheduled"}
    # the occurrence after it was carried by the same version: delivered and ready too
    after = slot_id(w["bc"]["id"], tomorrow_at(6) + dt.timedelta(days=1))
    assert states(w, after)[a] == "ready"
    answer = w["s"].ok("GET", f"/api/v1/broadcasts/{w['bc']['id']}/slots",
                       params={"to": (tomorrow_at(6) + dt.timedelta(days=2)).isoformat()})
    first = answer["occurrences"][0]
    assert first["slot_id"] == w["slot"] and first["sha256"] == w["sha"]
    assert first["start_at"] == tomorrow_at(6).astimezone(dt.UTC).isoformat() \
        .replace("+00:00", "Z")
    assert first["counts"]["played"] == 1 and first["counts"]["scheduled"] == 1
    assert answer["counts"]["ready"] == 1 and answer["counts"]["played"] == 1


def test_a_media_ready_before_the_node_holds_the_slot_does_not_make_it_ready(ward):
    w, (a, _b) = ward, ward["nodes"]
    build_desired(w["s"], tomorrow_at(5))
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=w["sha"], ts=now - 1000))
    w["bridge"].handle(*event(w["bridge"], a, "desired_applied", version=1, ts=now))
    assert states(w)[a] == "delivered"


@pytest.mark.parametrize("batched", [False, True])
def test_a_media_ready_sent_after_the_desired_state_but_recorded_first_makes_it_ready(
        ward, batched):
    """Two bridge workers on a shared subscription may record a node's events out of order:
    what counts is the order the node sent them in (its clock)."""
    w, (a, _b) = ward, ward["nodes"]
    build_desired(w["s"], tomorrow_at(5))
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    ready = event(w["bridge"], a, "media_ready", sha256=w["sha"], ts=now + 5)
    applied = event(w["bridge"], a, "desired_applied", version=1, ts=now)
    if batched:
        w["bridge"].handle_batch([ready, applied])
    else:
        w["bridge"].handle(*ready)
        assert states(w)[a] == "scheduled"
        w["bridge"].handle(*applied)
    assert states(w)[a] == "ready"


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)], ids=["in-order", "played-first"])
def test_a_node_applying_fetching_and_playing_a_slot_within_one_batch_ends_played(ward, order):
    """Its desired_applied, media_ready and played reach the bridge in one batch (a node back
    online sends what it held at once; with several bridge workers even out of order): the
    three events find the same row, the slot ends at its outcome, and the next occurrence,
    carried by the same version, is left ready."""
    w, (a, b) = ward, ward["nodes"]
    build_desired(w["s"], tomorrow_at(5))
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    sent = [event(w["bridge"], a, "desired_applied", version=1, ts=now),
            event(w["bridge"], a, "media_ready", sha256=w["sha"], ts=now + 1),
            slot_played(w, a)]
    w["bridge"].handle_batch([sent[n] for n in order])
    assert states(w) == {a: "played", b: "scheduled"}
    with w["s"].app.extensions["db_sessions"]() as db:  # stored so, not only judged so
        assert db.scalar(select(SlotDelivery.status).where(
            SlotDelivery.node_id == a, SlotDelivery.slot_id == w["slot"])) == "played"
    after = slot_id(w["bc"]["id"], tomorrow_at(6) + dt.timedelta(days=1))
    assert states(w, after) == {a: "ready", b: "scheduled"}


def test_a_node_away_when_its_slots_were_sent_catches_up_with_a_later_version(ward):
    w, (a, _b) = ward, ward["nodes"]
    build_desired(w["s"], tomorrow_at(4))
    with w["s"].app.extensions["db_sessions"]() as db:  # something changed: version 2
        db.execute(update(Node).values(volume=Node.volume - 10, desired_dirty=True))
        db.commit()
    build_desired(w["s"], tomorrow_at(5))
    assert states(w)[a] == "scheduled"
    w["bridge"].handle(*event(w["bridge"], a, "desired_applied", version=2))
    assert states(w)[a] == "delivered"


def test_a_node_added_to_the_ward_later_is_scheduled_then_delivered(ward):
    w = ward
    build_desired(w["s"], tomorrow_at(5))
    late = w["s"].ok("POST", "/api/v1/nodes", json={"cluster_id": w["cluster"]["id"],
                                                    "name": "Loa mới"})["id"]
    assert states(w)[late] == "scheduled"
    build_desired(w["s"], tomorrow_at(5))
    w["bridge"].handle(*event(w["bridge"], late, "desired_applied", version=1))
    assert states(w)[late] == "delivered"


def test_a_batch_moves_every_node_as_one_message_at_a_time_would(ward):
    w, (a, b) = ward, ward["nodes"]
    build_desired(w["s"], tomorrow_at(5))
    bridge = w["bridge"]
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)  # the nodes' clock: sent in order
    bridge.handle_batch([event(bridge, a, "desired_applied", version=1, ts=now),
                         event(bridge, b, "media_ready", sha256=w["sha"],  # before: no effect
                               ts=now + 1),
                         event(bridge, b, "desired_applied", version=1, ts=now + 2),
                         event(bridge, a, "media_ready", sha256=w["sha"], ts=now + 3)])
    assert states(w) == {a: "ready", b: "delivered"}


def test_an_occurrence_given_other_audio_starts_over_with_the_version_that_carries_it(ward):
    w, (a, _b) = ward, ward["nodes"]
    s = w["s"]
    build_desired(s, tomorrow_at(5))
    w["bridge"].handle(*event(w["bridge"], a, "desired_applied", version=1))
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=w["sha"]))
    other = s.approved_bulletin("Tin khác", "Phường Lê Chân thông báo lịch họp tổ dân phố.")
    s.ok("POST", f"/api/v1/broadcasts/{w['bc']['id']}/occurrences", json={
        "original_start": tomorrow_at(6).isoformat(), "bulletin_id": other["id"]})
    build_desired(s, tomorrow_at(5))
    assert states(w)[a] == "scheduled"
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=w["sha"]))
    w["bridge"].handle(*event(w["bridge"], a, "desired_applied", version=2))
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=w["sha"]))
    assert states(w)[a] == "delivered"  # the old audio is not this occurrence's
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256=other["sha256"]))
    assert states(w)[a] == "ready"


def test_a_malformed_media_ready_is_refused_and_counted(ward):
    w, (a, _b) = ward, ward["nodes"]
    w["bridge"].handle(*event(w["bridge"], a, "media_ready", sha256="NOT-HEX"))
    w["bridge"].handle(*event(w["bridge"], a, "media_ready"))
    rejected = w["s"].ok("GET", f"/api/v1/nodes/{a}")["rejected"]
    assert rejected["messages"] == 2 and rejected["last_reason"] == "malformed"


def test_a_desired_state_rebuilt_for_a_ward_records_each_slot_once(ward):
    """Rebuilding keeps the version that first carried a slot (it is delivered at that one)."""
    from server.models import SlotDelivery
    w = ward
    build_desired(w["s"], tomorrow_at(4))
    with w["s"].app.extensions["db_sessions"]() as db:
        db.execute(update(Node).values(desired_dirty=True))
        db.commit()
    build_desired(w["s"], tomorrow_at(5))
    with w["s"].app.extensions["db_sessions"]() as db:
        rows = db.execute(select(SlotDelivery.node_id, SlotDelivery.slot_id,
                                 SlotDelivery.version)).all()
    assert sorted(rows) == sorted((n, slot_id(w["bc"]["id"], tomorrow_at(6) + dt.timedelta(days=d)),
                                   1) for n in w["nodes"] for d in (0, 1))


def test_a_wards_played_events_in_one_batch_read_the_series_once_not_once_a_node(ward):
    """A slot airs on every node of a province at once and their `played` events come in
    together: the series, its occurrence and the nodes' areas are read once for the batch
    (10,000 events at one slot took minutes when each read them again)."""
    w = ward
    s = w["s"]
    more = s.call("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": w["cluster"]["id"], "name": f"Loa {i}"} for i in range(28)])
    assert more.status_code == 201, more.text
    nodes = w["nodes"] + [a["id"] for a in more.json()["nodes"]]
    build_desired(s, tomorrow_at(5))
    reads: list[list[str]] = []
    for batch in (nodes[:3], nodes[3:]):
        with Statements(s.app.extensions["db_engine"]) as statements:
            w["bridge"].handle_batch([slot_played(w, n) for n in batch])
        reads.append([q for q in statements.seen if "FROM broadcasts" in q or "FROM areas" in q
                      or "FROM occurrence_overrides" in q])
    assert len(reads[1]) == len(reads[0])  # 27 nodes' events read what 3 nodes' read
    assert set(states(w).values()) == {"played"} and len(states(w)) == 30


def test_played_events_from_many_clusters_in_one_batch_read_the_area_tree_a_level_at_a_time(
        ward):
    """A batch holds the `played` events of nodes in many clusters: whether the series reaches
    each node is worked out from the area tree read once for all their clusters, a query per
    level, not once per cluster; a node of another ward is still refused."""
    w = ward
    s = w["s"]
    ward_id = w["cluster"]["parent_id"]
    nodes = list(w["nodes"])
    for n in range(2, 6):
        cluster = s.area(f"Cụm {n}", f"LC-{n}", "cluster", ward_id)
        nodes.append(s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                        "name": f"Loa {n}"})["id"])
    other_ward = s.area("Phường Ngô Quyền", "NQ", "ward")
    other_cluster = s.area("Cụm 1", "NQ-1", "cluster", other_ward["id"])
    outsider = s.ok("POST", "/api/v1/nodes", json={"cluster_id": other_cluster["id"],
                                                   "name": "Loa NQ"})["id"]
    build_desired(s, tomorrow_at(5))
    with Statements(s.app.extensions["db_engine"]) as statements:
        w["bridge"].handle_batch([slot_played(w, n) for n in nodes + [outsider]])
    assert len([q for q in statements.seen if "FROM areas" in q]) <= 3  # 6 clusters, 2 levels
    assert states(w) == {n: "played" for n in nodes}
    node = s.ok("GET", f"/api/v1/nodes/{outsider}")
    assert (node["rejected"]["messages"], node["rejected"]["last_reason"]) == (1, "unknown_command")
