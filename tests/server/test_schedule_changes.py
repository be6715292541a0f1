"""Changing a series without breaking it: one occurrence cancelled (no ghost in the desired
state, the area's listing or its calendar), moved (its slot keeps its id) or given another
approved bulletin; a one-off interrupting a series for one day; a series edited from now on (its
past slots unchanged); quiet hours per area in the nodes' desired states."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.slots import slot_id
from server.cli import main as cli
from tests.server.helpers import TZ
from tests.server.series_helpers import (desired, dispatcher, played, playlogs, prepared_ward,
                                         series, tomorrow_at)


PREPARED = {"ward": prepared_ward}  # made once, copied for each test (tests/server/conftest.py)


@pytest.fixture
def ward(app_only):
    """A ward with one cluster and node, and an approved bulletin (the ``ward`` the helpers of
    tests/server/series_helpers.py take)."""
    return {"s": app_only, **app_only.prepared}


def change(w, bc, token="default", **body):
    return w["s"].call("POST", f"/api/v1/broadcasts/{bc['id']}/occurrences", token=token,
                       json={k: v.isoformat() if isinstance(v, dt.datetime) else v
                             for k, v in body.items()})


def listing(w, start=None, days=3):
    start = start or tomorrow_at(0)
    return w["s"].ok("GET", f"/api/v1/areas/{w['ward']['id']}/schedule", params={
        "from": start.isoformat(), "to": (start + dt.timedelta(days=days)).isoformat()})["slots"]


def schedule_of(w, at):
    dispatcher(w["s"], at).refresh_desired()
    return desired(w["s"], w["node"]["id"])["body"]["schedule"]


def utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- one occurrence ------------------------------------------------------------------------------

def test_a_cancelled_occurrence_leaves_no_ghost(ward):
    s = ward["s"]
    bc = series(ward).json()
    first, second = tomorrow_at(6), tomorrow_at(6) + dt.timedelta(days=1)
    schedule_of(ward, tomorrow_at(5))  # the node holds both
    r = change(ward, bc, original_start=first, cancelled=True)
    assert r.status_code == 200, r.text
    assert r.json()["occurrences"] == [{"original_start": utc(first), "cancelled": True,
                                        "start_at": None, "bulletin_id": None, "sha256": None}]
    # the node gets a new desired state at once: no need to wait for its window to run short
    with s.app.extensions["db_sessions"]() as db:
        from server.models import Node
        assert db.get(Node, ward["node"]["id"]).desired_dirty
    assert [e["slot_id"] for e in schedule_of(ward, tomorrow_at(5))] == [slot_id(bc["id"], second)]
    assert [x["slot_id"] for x in listing(ward)] == [
        slot_id(bc["id"], second), slot_id(bc["id"], second + dt.timedelta(days=1))]
    ics = s.call("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule.ics",
                 params={"from": tomorrow_at(0).isoformat()}).text
    assert slot_id(bc["id"], first) not in ics and slot_id(bc["id"], second) in ics
    assert ics.count("BEGIN:VEVENT") == 6


def test_a_cancelled_occurrence_frees_its_time_for_another_broadcast(ward):
    bc = series(ward).json()
    assert series(ward, rule="FREQ=DAILY;COUNT=1").status_code == 409
    change(ward, bc, original_start=tomorrow_at(6), cancelled=True)
    assert series(ward, rule="FREQ=DAILY;COUNT=1").status_code == 201


def test_an_empty_change_gives_the_occurrence_back(ward):
    bc = series(ward).json()
    change(ward, bc, original_start=tomorrow_at(6), cancelled=True)
    r = change(ward, bc, original_start=tomorrow_at(6))
    assert r.status_code == 200 and r.json()["occurrences"] == []
    assert listing(ward)[0]["slot_id"] == slot_id(bc["id"], tomorrow_at(6))


def test_a_moved_occurrence_keeps_its_slot_id(ward):
    s = ward["s"]
    bc = series(ward).json()
    first, moved = tomorrow_at(6), tomorrow_at(7, 30)
    r = change(ward, bc, original_start=first, start_at=moved)
    assert r.status_code == 200, r.text
    entry = schedule_of(ward, tomorrow_at(5))[0]
    assert entry["slot_id"] == slot_id(bc["id"], first)
    assert entry["start_at"] == int(moved.timestamp() * 1000)
    slot = listing(ward)[0]
    assert slot["slot_id"] == slot_id(bc["id"], first) and slot["start_at"] == utc(moved)
    ics = s.call("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule.ics",
                 params={"from": tomorrow_at(0).isoformat()}).text
    assert f"DTSTART:{moved.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}" in ics
    # a later change replaces the earlier one
    change(ward, bc, original_start=first, start_at=tomorrow_at(8))
    assert listing(ward)[0]["start_at"] == utc(tomorrow_at(8))
    # proof of play under its own id
    played(s, ward["node"]["id"], slot_id(bc["id"], first), bc["approval"]["sha256"])
    assert playlogs(s, ward["node"]["id"])[0]["result"] == "completed"


def test_an_occurrence_moved_into_another_series_slot_is_a_conflict(ward):
    bc = series(ward).json()
    series(ward, rule="FREQ=DAILY;BYHOUR=17;BYMINUTE=0", start=tomorrow_at(17))
    r = change(ward, bc, original_start=tomorrow_at(6), start_at=tomorrow_at(17))
    assert r.status_code == 409 and r.json()["error"]["code"] == "schedule_conflict"
    assert change(ward, bc, original_start=tomorrow_at(6), start_at=tomorrow_at(17),
                  override=True).status_code == 200


def test_an_occurrence_with_another_bulletin_airs_that_bulletins_media(ward):
    s = ward["s"]
    bc = series(ward).json()
    other = s.approved_bulletin("Bản tin khác", "Phường thông báo lịch cắt điện.")
    r = change(ward, bc, original_start=tomorrow_at(6), bulletin_id=other["id"])
    assert r.status_code == 200, r.text
    first, second = schedule_of(ward, tomorrow_at(5))
    assert first["item"]["media"]["sha256"] == other["sha256"]
    assert second["item"]["media"]["sha256"] == bc["approval"]["sha256"]
    prefetch = {m["sha256"] for m in desired(s, ward["node"]["id"])["body"]["prefetch"]}
    assert prefetch == {other["sha256"], bc["approval"]["sha256"]}
    # the other bulletin's audio is proof of play for that occurrence
    played(s, ward["node"]["id"], first["slot_id"], other["sha256"])
    assert playlogs(s, ward["node"]["id"])[0]["result"] == "completed"


def test_an_occurrence_given_a_longer_bulletin_into_another_series_is_a_conflict(ward):
    s = ward["s"]
    bc = series(ward).json()
    short = ward["bulletin"]
    after = series(ward, rule="FREQ=DAILY", start=tomorrow_at(6) + dt.timedelta(
        seconds=-(-short["duration_ms"] // 1000) + 1)).json()
    longer = s.approved_bulletin("Bản tin dài", "Ủy ban nhân dân phường thông báo lịch cắt "
                                 "điện, lịch tiêm chủng và lịch thu gom rác của tuần tới.")
    assert longer["duration_ms"] > short["duration_ms"] + 1000
    r = change(ward, bc, original_start=tomorrow_at(6), bulletin_id=longer["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "schedule_conflict"
    assert r.json()["error"]["clashes"][0]["existing"]["broadcast_id"] == after["id"]
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["occurrences"] == []
    assert change(ward, bc, original_start=tomorrow_at(6), bulletin_id=longer["id"],
                  override=True).status_code == 200


def test_an_unapproved_bulletin_for_an_occurrence_is_refused(ward):
    s = ward["s"]
    bc = series(ward).json()
    draft = s.ok("POST", "/api/v1/bulletins", json={"title": "Nháp", "text": "Chưa duyệt.",
                                                    "category": "other"})
    r = change(ward, bc, original_start=tomorrow_at(6), bulletin_id=draft["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_approved"


def test_only_a_real_occurrence_can_change(ward):
    s = ward["s"]
    bc = series(ward).json()
    r = change(ward, bc, original_start=tomorrow_at(7), cancelled=True)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_an_occurrence"
    r = change(ward, bc, original_start=tomorrow_at(6), cancelled=True, start_at=tomorrow_at(7))
    assert r.status_code == 400
    one_off = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": tomorrow_at(9).isoformat()})
    r = change(ward, one_off, original_start=tomorrow_at(9), cancelled=True)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_a_series"
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/cancel")
    r = change(ward, bc, original_start=tomorrow_at(6), cancelled=True)
    assert r.status_code == 409 and r.json()["error"]["code"] == "cannot_edit"


def test_changing_an_occurrence_is_scoped_as_creating_a_broadcast(app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    start = tomorrow_at(6)

    def make(areas, priority="normal"):
        return s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"areas": areas}, "priority": priority,
            "recurrence": "FREQ=DAILY", "start_at": start.isoformat(), "override": True})
    body = {"original_start": start.isoformat(), "cancelled": True}
    theirs = make([wards["other"]["id"]])
    r = s.call("POST", f"/api/v1/broadcasts/{theirs['id']}/occurrences", token=wards["approver"],
               json=body)
    assert r.status_code == 404
    both = make([wards["mine"]["id"], wards["other"]["id"]])
    r = s.call("POST", f"/api/v1/broadcasts/{both['id']}/occurrences", token=wards["approver"],
               json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_area"
    r = s.call("PATCH", f"/api/v1/broadcasts/{both['id']}", token=wards["approver"],
               json={"volume": 20})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_area"
    assert s.call("PATCH", f"/api/v1/broadcasts/{theirs['id']}", token=wards["approver"],
                  json={"volume": 20}).status_code == 404
    assert s.call("POST", f"/api/v1/broadcasts/{both['id']}/occurrences",
                  token=wards["technician"], json=body).status_code == 403
    emergency = make([wards["mine"]["id"]], priority="emergency")
    assert cli(["--instance", str(s.instance), "user", "nhanvien-lc", "--role", "staff",
                "--password", "mat-khau-123", "--area-id", str(wards["mine"]["id"])]) == 0
    staff = s.login("nhanvien-lc", "mat-khau-123")
    r = s.call("POST", f"/api/v1/broadcasts/{emergency['id']}/occurrences", token=staff,
               json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "emergency_forbidden"
    assert s.call("POST", f"/api/v1/broadcasts/{emergency['id']}/occurrences",
                  token=wards["approver"], json=body).status_code == 200


# --- a one-off interrupting a series -------------------------------------------------------------

def one_off(w, at, **extra):
    return w["s"].call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": w["bulletin"]["id"], "targets": {"nodes": [w["node"]["id"]]},
        "start_at": at.isoformat(), **extra})


def test_a_one_off_interrupts_the_series_for_one_day(ward):
    s = ward["s"]
    bc = series(ward).json()
    schedule_of(ward, tomorrow_at(5))
    assert one_off(ward, tomorrow_at(6)).status_code == 409  # the conflict rule asks first
    r = one_off(ward, tomorrow_at(6), override=True)
    assert r.status_code == 201, r.text
    after = tomorrow_at(6) + dt.timedelta(days=1)
    assert [e["slot_id"] for e in schedule_of(ward, tomorrow_at(5))] == [slot_id(bc["id"], after)]
    # the listing shows what was planned: the one-off and the series' slot it covers
    assert sorted(x["broadcast_id"] for x in listing(ward, days=1)) == [bc["id"], r.json()["id"]]
    # cancelled, the one-off gives the slot back
    s.ok("POST", f"/api/v1/broadcasts/{r.json()['id']}/cancel")
    assert [e["slot_id"] for e in schedule_of(ward, tomorrow_at(5))] == [
        slot_id(bc["id"], tomorrow_at(6)), slot_id(bc["id"], after)]


def test_a_higher_priority_one_off_interrupts_and_a_lower_one_does_not(ward):
    bc = series(ward).json()
    assert one_off(ward, tomorrow_at(6), priority="priority").status_code == 201
    assert [e["slot_id"] for e in schedule_of(ward, tomorrow_at(5))] == [
        slot_id(bc["id"], tomorrow_at(6) + dt.timedelta(days=1))]
    low = series(ward, start=tomorrow_at(6) + dt.timedelta(days=1), rule="FREQ=DAILY",
                 priority="priority", override=True).json()
    assert one_off(ward, tomorrow_at(6) + dt.timedelta(days=1), priority=1,
                   override=True).status_code == 201
    assert slot_id(low["id"], tomorrow_at(6) + dt.timedelta(days=1)) in [
        e["slot_id"] for e in schedule_of(ward, tomorrow_at(5))]


# --- a series edited from now on -----------------------------------------------------------------

def test_an_edit_changes_only_the_future_slots(ward):
    s = ward["s"]
    today = dt.datetime.now(TZ).date()
    anchor = dt.datetime.combine(today - dt.timedelta(days=3), dt.time(6), TZ)
    old = series(ward, start=anchor).json()
    before = listing(ward, start=anchor, days=5)
    past = [x for x in before if x["start_at"] < utc(dt.datetime.now(TZ))]
    assert len(past) >= 3
    r = s.call("PATCH", f"/api/v1/broadcasts/{old['id']}", json={
        "recurrence": "FREQ=DAILY;BYHOUR=17;BYMINUTE=0", "priority": "priority", "volume": 60})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != old["id"] and new["previous_id"] == old["id"]
    assert new["recurrence"] == "FREQ=DAILY;BYHOUR=17;BYMINUTE=0" and new["priority"] == 5
    assert new["volume"] == 60 and new["begins_at"] is not None
    ended = s.ok("GET", f"/api/v1/broadcasts/{old['id']}")
    assert ended["ends_at"] == new["begins_at"] and ended["next_id"] == new["id"]
    after = listing(ward, start=anchor, days=5)
    now = utc(dt.datetime.now(TZ))
    assert [x for x in after if x["start_at"] < now and x["broadcast_id"] == old["id"]] == past
    future = [x for x in after if x["start_at"] >= now]
    assert future and all(x["broadcast_id"] == new["id"] and x["priority"] == 5
                          and x["start_at"].endswith("T10:00:00Z") for x in future)
    entries = schedule_of(ward, dt.datetime.now(TZ))
    assert entries and all(e["slot_id"].startswith(f"b{new['id']}-") and e["volume"] == 60
                           for e in entries)
    # the ended series is history: it cannot be edited again
    r = s.call("PATCH", f"/api/v1/broadcasts/{old['id']}", json={"volume": 10})
    assert r.status_code == 409 and r.json()["error"]["code"] == "cannot_edit"


def test_an_edit_keeps_the_changed_occurrences_still_to_come(ward):
    s = ward["s"]
    old = series(ward).json()
    change(ward, old, original_start=tomorrow_at(6), cancelled=True)
    new = s.ok("PATCH", f"/api/v1/broadcasts/{old['id']}", json={"volume": 30})
    assert [o["original_start"] for o in new["occurrences"]] == [utc(tomorrow_at(6))]
    assert slot_id(new["id"], tomorrow_at(6)) not in [x["slot_id"] for x in listing(ward)]


def test_an_edit_cannot_change_the_bulletin_and_is_checked_as_a_new_broadcast(ward):
    s = ward["s"]
    old = series(ward).json()
    r = s.call("PATCH", f"/api/v1/broadcasts/{old['id']}", json={"bulletin_id": 1})
    assert r.status_code == 400 and "bulletin_id" in r.json()["error"]["message"]
    r = s.call("PATCH", f"/api/v1/broadcasts/{old['id']}", json={"recurrence": "FREQ=SECONDLY"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_recurrence"
    other = series(ward, rule="FREQ=DAILY;BYHOUR=17;BYMINUTE=0", start=tomorrow_at(17)).json()
    r = s.call("PATCH", f"/api/v1/broadcasts/{old['id']}",
               json={"recurrence": "FREQ=DAILY;BYHOUR=17;BYMINUTE=0"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "schedule_conflict"
    assert r.json()["error"]["clashes"][0]["existing"]["broadcast_id"] == other["id"]
    # nothing was split by a refused edit
    assert s.ok("GET", f"/api/v1/broadcasts/{old['id']}")["ends_at"] is None


# --- quiet hours ---------------------------------------------------------------------------------

def test_quiet_hours_of_the_nearest_area_reach_the_desired_state(ward):
    s, node = ward["s"], ward["node"]
    schedule_of(ward, tomorrow_at(5))
    assert desired(s, node["id"])["body"]["quiet_hours"] == []
    night = [{"from": "22:00", "to": "05:00"}]
    area = s.ok("PATCH", f"/api/v1/areas/{ward['ward']['id']}", json={"quiet_hours": night})
    assert area["quiet_hours"] == night
    schedule_of(ward, tomorrow_at(5))  # the cluster inherits the ward's
    assert desired(s, node["id"])["body"]["quiet_hours"] == night
    noon = [{"from": "11:30", "to": "13:30"}, {"from": "22:00", "to": "05:00"}]
    s.ok("PATCH", f"/api/v1/areas/{ward['cluster']['id']}", json={"quiet_hours": noon})
    schedule_of(ward, tomorrow_at(5))
    assert desired(s, node["id"])["body"]["quiet_hours"] == noon
    s.ok("PATCH", f"/api/v1/areas/{ward['cluster']['id']}", json={"quiet_hours": []})
    schedule_of(ward, tomorrow_at(5))  # [] is "none here", not "as above"
    assert desired(s, node["id"])["body"]["quiet_hours"] == []
    s.ok("PATCH", f"/api/v1/areas/{ward['cluster']['id']}", json={"quiet_hours": None})
    schedule_of(ward, tomorrow_at(5))
    assert desired(s, node["id"])["body"]["quiet_hours"] == night


def test_bad_quiet_hours_are_refused(ward):
    s = ward["s"]
    for bad in ([{"from": "22:00"}], [{"from": "24:00", "to": "05:00"}], "22:00-05:00",
                [{"from": "22:00", "to": "05:00", "days": "all"}]):
        r = s.call("PATCH", f"/api/v1/areas/{ward['ward']['id']}", json={"quiet_hours": bad})
        assert r.status_code == 400, bad
        assert "quiet_hours" in r.json()["error"]["message"], bad


def test_times_no_calendar_holds_are_refused_not_crashed_on(ward):
    bc = series(ward).json()
    far = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC)
    r = change(ward, bc, original_start=far, cancelled=True)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_an_occurrence"
    r = change(ward, bc, original_start=tomorrow_at(6), start_at=far)
    assert r.status_code == 422 and "start_at" in r.json()["error"]["message"]
    r = change(ward, bc, original_start=dt.datetime(1, 1, 1, tzinfo=dt.UTC), cancelled=True)
    assert r.status_code == 422
