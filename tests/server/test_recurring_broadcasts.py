"""Recurring broadcasts through the API: a series is stored with its rule, a bad rule is a 400
naming the problem, overlapping slots on one node are a 409 unless outranked or overridden, and
the expanded schedule of an area lists them. A rule the body carries well-formed but that cannot
be accepted (out of range, too frequent, never occurring) is a 422 naming the problem."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.slots import slot_id
from server.models import Broadcast
from tests.server.helpers import TZ, Statements
from tests.server.series_helpers import (desired, dispatcher, played, playlogs, prepared_ward,
                                         series, tomorrow_at)


PREPARED = {"ward": prepared_ward}  # made once, copied for each test (tests/server/conftest.py)


@pytest.fixture
def ward(app_only):
    """A ward with one cluster and node, and an approved bulletin (the ``ward`` the helpers of
    tests/server/series_helpers.py take)."""
    return {"s": app_only, **app_only.prepared}


def test_a_daily_series_is_stored_with_its_rule_and_skipped_days(ward):
    start = tomorrow_at(6)
    skipped = start + dt.timedelta(days=2)
    r = series(ward, exdates=[skipped.isoformat()])
    assert r.status_code == 201, r.text
    bc = r.json()
    assert bc["recurrence"] == "FREQ=DAILY;BYHOUR=6;BYMINUTE=0"
    assert bc["status"] == "scheduled"
    assert bc["exdates"] == [skipped.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert bc["start_at"] == start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ward["s"].ok("GET", f"/api/v1/broadcasts/{bc['id']}")["recurrence"] == bc["recurrence"]


def test_a_lunar_series_is_accepted(ward):
    r = series(ward, rule="FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6;BYMINUTE=0")
    assert r.status_code == 201, r.text


def test_a_series_is_never_dispatched_as_a_play_command(ward):
    """Its start already past is its anchor, not "now": no due play command is made of it."""
    s = ward["s"]
    start = dt.datetime.now(TZ).replace(microsecond=0) - dt.timedelta(hours=1)
    bc = series(ward, rule="FREQ=DAILY", start=start).json()
    assert bc["start_at"] is not None
    with s.app.extensions["db_sessions"]() as db:
        row = db.get(Broadcast, bc["id"])
        assert row.recurrence == "FREQ=DAILY" and row.status == "scheduled"


def test_a_series_needs_its_start(ward):
    s = ward["s"]
    r = s.call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "recurrence": "FREQ=DAILY"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_field"
    assert "start_at" in r.json()["error"]["message"]


@pytest.mark.parametrize("rule, problem, part", [
    ("FREQ=MINUTELY", "too_frequent", "FREQ"),
    ("FREQ=DAILY;BYHOUR=25", "invalid_value", "BYHOUR"),
    ("every day at six", "unparsable", None),
    ("BYHOUR=6", "missing_freq", "FREQ"),
    ("FREQ=DAILY;COUNT=3;UNTIL=20300101", "count_and_until", None),
    ("FREQ=DAILY;UNTIL=20200101T000000Z", "never_occurs", None),
    ("FREQ=DAILY;RDATE=20300101", "unsupported_part", "RDATE"),
    ("FREQ=LUNARMONTHLY;BYMONTHDAY=31", "invalid_value", "BYMONTHDAY"),
])
def test_a_bad_rule_is_refused_naming_the_problem(ward, rule, problem, part):
    r = series(ward, rule=rule)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_recurrence"
    assert error["problem"] == problem
    if part is not None:
        assert error["part"] == part


def test_the_refusal_reads_in_both_languages(ward):
    s = ward["s"]
    start = tomorrow_at(6).isoformat()
    body = {"bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
            "recurrence": "FREQ=MINUTELY", "start_at": start}
    vi = s.call("POST", "/api/v1/broadcasts", json=body).json()["error"]["message"]
    en = s.call("POST", "/api/v1/broadcasts?lang=en", json=body).json()["error"]["message"]
    assert "quá dày" in vi
    assert "too frequent" in en


def test_overlapping_series_on_one_node_is_a_conflict(ward):
    first = series(ward).json()
    r = series(ward)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "schedule_conflict"
    clash = error["clashes"][0]
    assert clash["node_id"] == ward["node"]["id"]
    assert clash["existing"]["broadcast_id"] == first["id"]
    assert clash["existing"]["slot_id"] == slot_id(first["id"], tomorrow_at(6))
    assert clash["slot"]["start_at"] == clash["existing"]["start_at"]


def test_a_slot_over_the_ward_clashes_only_on_the_nodes_whose_series_it_meets(ward):
    """Nodes under different series are told apart, however many share each set of series."""
    s = ward["s"]
    east = s.area("Cụm 2", "LC-2", "cluster", ward["ward"]["id"])
    west = s.area("Cụm 3", "LC-3", "cluster", ward["ward"]["id"])
    east_nodes = [s.ok("POST", "/api/v1/nodes", json={"cluster_id": east["id"],
                                                      "name": f"Loa đông {i}"})["id"]
                  for i in range(3)]
    west_nodes = [s.ok("POST", "/api/v1/nodes", json={"cluster_id": west["id"],
                                                      "name": f"Loa tây {i}"})["id"]
                  for i in range(2)]
    body = {"bulletin_id": ward["bulletin"]["id"], "recurrence": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
            "start_at": tomorrow_at(6).isoformat()}
    morning = s.ok("POST", "/api/v1/broadcasts", json={**body, "targets": {"areas": [east["id"]]}})
    evening = {**body, "recurrence": "FREQ=DAILY;BYHOUR=18;BYMINUTE=0",
               "start_at": tomorrow_at(18).isoformat()}
    s.ok("POST", "/api/v1/broadcasts", json={**evening, "targets": {"areas": [west["id"]]}})
    s.ok("POST", "/api/v1/broadcasts", json={**evening, "targets": {"nodes": [east_nodes[0]]},
                                             "override": True})

    # one slot over the whole ward, at the east's morning series
    r = s.call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": tomorrow_at(6).isoformat()})
    assert r.status_code == 409, r.text
    clashes = r.json()["error"]["clashes"]
    assert sorted(c["node_id"] for c in clashes) == sorted(east_nodes)
    assert {c["existing"]["broadcast_id"] for c in clashes} == {morning["id"]}
    assert not set(west_nodes) & {c["node_id"] for c in clashes}


def test_a_one_off_in_a_series_slot_is_a_conflict_too(ward):
    s = ward["s"]
    series(ward)
    r = s.call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["bulletin"]["id"], "targets": {"nodes": [ward["node"]["id"]]},
        "start_at": tomorrow_at(6).isoformat()})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "schedule_conflict"


def test_override_or_a_higher_priority_allows_the_overlap(ward):
    series(ward)
    assert series(ward, override=True).status_code == 201
    assert series(ward, priority="priority").status_code == 201


def test_series_at_other_times_do_not_conflict(ward):
    series(ward)
    assert series(ward, rule="FREQ=DAILY;BYHOUR=17;BYMINUTE=0",
                  start=tomorrow_at(17)).status_code == 201


def test_one_offs_at_the_same_time_still_do_not_conflict(ward):
    s = ward["s"]
    body = {"bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
            "start_at": tomorrow_at(9).isoformat()}
    assert s.call("POST", "/api/v1/broadcasts", json=body).status_code == 201
    assert s.call("POST", "/api/v1/broadcasts", json=body).status_code == 201


# --- desired states ------------------------------------------------------------------------------

def test_a_series_fills_the_desired_state_of_every_node_it_reaches(ward):
    s, node = ward["s"], ward["node"]
    start = tomorrow_at(6)
    bc = series(ward).json()
    now = start - dt.timedelta(hours=1)
    dispatcher(s, now).refresh_desired()
    held = desired(s, node["id"])
    assert held["node_id"] == node["id"] and held["desired_applied"] is None
    body = held["body"]
    assert body["version"] == held["version"] >= 1
    # a 48 h window from an hour before the first: tomorrow's and the day after's
    assert [e["slot_id"] for e in body["schedule"]] == [
        slot_id(bc["id"], start), slot_id(bc["id"], start + dt.timedelta(days=1))]
    entry = body["schedule"][0]
    assert entry["start_at"] == int(start.timestamp() * 1000)
    assert entry["priority"] == 3
    media = entry["item"]["media"]
    assert media["sha256"] == bc["approval"]["sha256"] == ward["bulletin"]["sha256"]
    assert media["url"].endswith(f"/media/{media['sha256']}.mp3")
    assert entry["item"]["id"] == f"bc-{bc['id']}"
    assert body["prefetch"] == [media]


def test_a_wards_desired_states_take_a_few_statements_not_some_for_every_node(ward):
    """A province's pass builds thousands of desired states: the statements it runs grow with
    its batches, not with its nodes (a flush and a key look-up for every node made a 10,000-node
    pass take 17 s instead of 4)."""
    s = ward["s"]
    more = s.ok("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": ward["cluster"]["id"], "name": f"Loa {i}"} for i in range(2, 81)])
    nodes = [ward["node"]["id"]] + [n["id"] for n in more["nodes"]]
    series(ward)
    with Statements(s.app.extensions["db_engine"]) as statements:
        dispatcher(s, tomorrow_at(5)).refresh_desired()
    assert all(desired(s, node_id)["version"] == 1 for node_id in nodes)
    assert len(statements.seen) < len(nodes) // 2, len(statements.seen)


def test_a_node_added_to_the_ward_later_gets_its_future_slots(ward):
    s = ward["s"]
    bc = series(ward).json()
    now = tomorrow_at(5)
    dispatcher(s, now).refresh_desired()
    late = s.ok("POST", "/api/v1/nodes", json={"cluster_id": ward["cluster"]["id"],
                                               "name": "Loa mới"})
    dispatcher(s, now).refresh_desired()
    assert [e["slot_id"] for e in desired(s, late["id"])["body"]["schedule"]][0] == \
        slot_id(bc["id"], tomorrow_at(6))


def test_a_cancelled_series_leaves_the_desired_states(ward):
    s, node = ward["s"], ward["node"]
    bc = series(ward).json()
    now = tomorrow_at(5)
    dispatcher(s, now).refresh_desired()
    assert desired(s, node["id"])["body"]["schedule"]
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/cancel")
    dispatcher(s, now).refresh_desired()
    held = desired(s, node["id"])
    assert held["body"]["schedule"] == [] and held["body"]["prefetch"] == []


def test_a_node_outside_the_targets_gets_no_slot(ward):
    s = ward["s"]
    other = s.area("Phường Khác", "PK", "ward")
    cluster = s.area("Cụm 9", "PK-1", "cluster", other["id"])
    stranger = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    series(ward)
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    assert desired(s, stranger["id"])["body"]["schedule"] == []


# --- proof of play for slots ---------------------------------------------------------------------

def test_a_played_slot_of_a_series_targeting_the_node_is_proof_of_play(ward):
    s, node = ward["s"], ward["node"]
    bc = series(ward).json()
    slot = slot_id(bc["id"], tomorrow_at(6))
    played(s, node["id"], slot, bc["approval"]["sha256"])
    (log,) = playlogs(s, node["id"])
    assert log["slot_id"] == slot and log["broadcast_id"] == bc["id"]
    assert log["bulletin_id"] == bc["bulletin_id"] and log["result"] == "completed"
    assert s.ok("GET", f"/api/v1/nodes/{node['id']}")["rejected"]["messages"] == 0


@pytest.mark.parametrize("which", ["not_an_occurrence", "unknown_broadcast", "not_a_slot_id",
                                   "other_node"])
def test_a_played_slot_that_is_not_the_nodes_is_refused(ward, which):
    s, node = ward["s"], ward["node"]
    bc = series(ward).json()
    slot = {"not_an_occurrence": slot_id(bc["id"], tomorrow_at(7)),
            "unknown_broadcast": slot_id(bc["id"] + 100, tomorrow_at(6)),
            "not_a_slot_id": "s-0600",
            "other_node": slot_id(bc["id"], tomorrow_at(6))}[which]
    target = node["id"]
    if which == "other_node":
        other = s.area("Phường Khác", "PK", "ward")
        cluster = s.area("Cụm 9", "PK-1", "cluster", other["id"])
        target = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                     "name": "Loa"})["id"]
    played(s, target, slot, bc["approval"]["sha256"])
    assert playlogs(s, target) == []
    rejected = s.ok("GET", f"/api/v1/nodes/{target}")["rejected"]
    assert rejected["messages"] == 1 and rejected["last_reason"] == "unknown_command"


def test_a_slot_played_with_other_audio_is_no_proof(ward):
    s, node = ward["s"], ward["node"]
    bc = series(ward).json()
    played(s, node["id"], slot_id(bc["id"], tomorrow_at(6)), "0" * 64)
    (log,) = playlogs(s, node["id"])
    assert log["result"] == "failed" and log["reason"] == "sha256_mismatch"


# --- the schedule of an area ---------------------------------------------------------------------

def test_the_schedule_of_an_area_lists_the_slots_of_it_and_below(ward):
    s = ward["s"]
    daily = series(ward).json()
    evening = series(ward, rule="FREQ=DAILY;BYHOUR=17;BYMINUTE=0", start=tomorrow_at(17),
                     priority="priority").json()
    start, end = tomorrow_at(0), tomorrow_at(0) + dt.timedelta(days=2)
    got = s.ok("GET", f"/api/v1/areas/{ward['cluster']['id']}/schedule",
               params={"from": start.isoformat(), "to": end.isoformat()})
    assert [(x["broadcast_id"], x["slot_id"]) for x in got["slots"]] == [
        (daily["id"], slot_id(daily["id"], tomorrow_at(6))),
        (evening["id"], slot_id(evening["id"], tomorrow_at(17))),
        (daily["id"], slot_id(daily["id"], tomorrow_at(6) + dt.timedelta(days=1))),
        (evening["id"], slot_id(evening["id"], tomorrow_at(17) + dt.timedelta(days=1)))]
    first = got["slots"][0]
    assert first["start_at"] == tomorrow_at(6).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["end_at"] > first["start_at"] and first["priority"] == 3
    assert first["targets"] == {"areas": [ward["ward"]["id"]], "nodes": []}
    assert got["slots"][1]["priority"] == 5


def test_the_schedule_leaves_out_other_areas_and_cancelled_series(ward):
    s = ward["s"]
    other = s.area("Phường Khác", "PK", "ward")
    s.area("Cụm 9", "PK-1", "cluster", other["id"])
    bc = series(ward).json()
    assert s.ok("GET", f"/api/v1/areas/{other['id']}/schedule")["slots"] == []
    assert s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule")["slots"]
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/cancel")
    assert s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule")["slots"] == []


def test_the_schedule_as_icalendar(ward):
    s = ward["s"]
    bc = series(ward).json()
    r = s.call("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule.ics",
               params={"from": tomorrow_at(0).isoformat()})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/calendar")
    text = r.text
    assert text.startswith("BEGIN:VCALENDAR\r\n")
    assert f"UID:{slot_id(bc['id'], tomorrow_at(6))}@loaphuong" in text
    assert "SUMMARY:Thông báo" in text
    assert text.count("BEGIN:VEVENT") == 7  # a week from ``from``: one a day


def test_an_archived_bulletins_series_leaves_the_desired_states(ward):
    s, node = ward["s"], ward["node"]
    series(ward)
    now = tomorrow_at(5)
    dispatcher(s, now).refresh_desired()
    assert desired(s, node["id"])["body"]["schedule"]
    s.ok("POST", f"/api/v1/bulletins/{ward['bulletin']['id']}/archive")
    dispatcher(s, now).refresh_desired()
    assert desired(s, node["id"])["body"]["schedule"] == []


def test_a_skipped_day_has_no_slot_anywhere(ward):
    s, node = ward["s"], ward["node"]
    skipped = tomorrow_at(6) + dt.timedelta(days=1)
    bc = series(ward, exdates=[skipped.isoformat()]).json()
    listed = s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule",
                  params={"from": tomorrow_at(0).isoformat()})["slots"]
    starts = [x["slot_id"] for x in listed]
    assert slot_id(bc["id"], tomorrow_at(6)) in starts
    assert slot_id(bc["id"], skipped) not in starts
    assert slot_id(bc["id"], skipped + dt.timedelta(days=1)) in starts
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    assert [e["slot_id"] for e in desired(s, node["id"])["body"]["schedule"]] == [
        slot_id(bc["id"], tomorrow_at(6))]  # the 48 h window: the next day is skipped


def test_a_lunar_series_lists_mung_1_and_ram(ward):
    s = ward["s"]
    from schedules.lunar import to_lunar
    bc = series(ward, rule="FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6;BYMINUTE=0").json()
    listed = s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule",
                  params={"from": tomorrow_at(0).isoformat(),
                          "to": (tomorrow_at(0) + dt.timedelta(days=60)).isoformat()})["slots"]
    assert len(listed) in (3, 4, 5)
    for x in listed:
        assert x["broadcast_id"] == bc["id"]
        local = dt.datetime.fromisoformat(x["start_at"].replace("Z", "+00:00")).astimezone(TZ)
        assert local.time() == dt.time(6, 0)
        assert to_lunar(local.date()).day in (1, 15)


def test_a_series_created_while_the_desired_states_are_built_goes_out_on_the_next_pass(ward):
    """Seen under load: the web committed a second series while the dispatcher built the node's
    desired state from before it; the pass then cleared the node's dirty flag, so the second
    series never reached the node."""
    s, node = ward["s"], ward["node"]
    first = series(ward).json()
    d = dispatcher(s, tomorrow_at(5))
    build = d._slots_by_node
    created: list[dict] = []

    def build_while_the_web_commits(*args):
        out = build(*args)  # read before the second series exists
        if not created:
            created.append(series(ward, rule="FREQ=DAILY;BYHOUR=7;BYMINUTE=0",
                                  start=tomorrow_at(7)).json())
        return out
    d._slots_by_node = build_while_the_web_commits
    d.refresh_desired()
    held = {e["slot_id"] for e in desired(s, node["id"])["body"]["schedule"]}
    assert slot_id(first["id"], tomorrow_at(6)) in held
    d.refresh_desired()
    held = {e["slot_id"] for e in desired(s, node["id"])["body"]["schedule"]}
    assert slot_id(created[0]["id"], tomorrow_at(7)) in held
