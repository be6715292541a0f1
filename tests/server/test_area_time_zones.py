"""Areas in their own time zone through the API: a zone is set on create or edit, inherited down
the tree (the configured zone at the top), an unknown one is refused naming it; a series is
expanded in its area's zone (06:00 stays 06:00 local across a daylight-saving change), and the
nodes' desired states, the schedule listing, the calendar and the airplay report follow it."""
from __future__ import annotations

import datetime as dt
import tomllib
from zoneinfo import ZoneInfo

import pytest

from server.models import Node
from tests.server.series_helpers import desired, dispatcher

BERLIN = ZoneInfo("Europe/Berlin")  # clocks go forward on 28 March 2027 at 02:00
VN = ZoneInfo("Asia/Ho_Chi_Minh")
DAILY_SIX = "FREQ=DAILY;BYHOUR=6;BYMINUTE=0"


def _berlin(s) -> dict:
    """A province in the configured zone, a ward below it in Berlin's, its cluster and node, an
    approved bulletin; not its "s" (made once and copied for each test: PREPARED,
    tests/server/conftest.py)."""
    province = s.area("Tỉnh mẫu", "TM", "province")
    ward = s.ok("POST", "/api/v1/areas", json={"name": "Ortsteil Mitte", "code": "TM-MI",
                                               "kind": "ward", "parent_id": province["id"],
                                               "tz": "Europe/Berlin"})
    cluster = s.area("Cụm 1", "TM-MI-1", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    return {"province": province, "ward": ward, "cluster": cluster, "node": node,
            "bulletin": s.approved_bulletin()}


PREPARED = {"berlin": _berlin}


@pytest.fixture
def berlin(app_only):
    return {"s": app_only, **app_only.prepared}


def series(w, targets, start=dt.datetime(2027, 3, 26, 0, 0, tzinfo=BERLIN), rule=DAILY_SIX):
    r = w["s"].call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": w["bulletin"]["id"], "targets": targets, "recurrence": rule,
        "start_at": start.isoformat()})
    assert r.status_code == 201, r.text
    return r.json()


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def area(w, key):
    return w["s"].ok("GET", f"/api/v1/areas/{w[key]['id']}")


def test_a_zone_set_on_create_is_the_area_own_and_inherited_below(berlin):
    assert berlin["ward"]["tz"] == "Europe/Berlin"
    assert berlin["ward"]["effective_tz"] == "Europe/Berlin"
    cluster = area(berlin, "cluster")
    assert cluster["tz"] is None and cluster["effective_tz"] == "Europe/Berlin"
    province = area(berlin, "province")
    assert province["tz"] is None
    assert province["effective_tz"] == berlin["s"].settings.timezone == "Asia/Ho_Chi_Minh"
    listed = {a["id"]: a for a in berlin["s"].ok("GET", "/api/v1/areas")["areas"]}
    assert listed[berlin["cluster"]["id"]]["effective_tz"] == "Europe/Berlin"


def test_a_zone_is_changed_by_an_edit_and_null_or_blank_gives_back_the_one_above(berlin):
    s, path = berlin["s"], f"/api/v1/areas/{berlin['cluster']['id']}"
    got = s.ok("PATCH", path, json={"tz": "Asia/Tokyo"})
    assert got["tz"] == "Asia/Tokyo" and got["effective_tz"] == "Asia/Tokyo"
    got = s.ok("PATCH", path, json={"tz": None})
    assert got["tz"] is None and got["effective_tz"] == "Europe/Berlin"
    s.ok("PATCH", path, json={"tz": "Asia/Tokyo"})
    got = s.ok("PATCH", path, json={"tz": ""})
    assert got["tz"] is None and got["effective_tz"] == "Europe/Berlin"
    # an edit of something else keeps the zone
    s.ok("PATCH", f"/api/v1/areas/{berlin['ward']['id']}", json={"name": "Mitte"})
    assert area(berlin, "ward")["tz"] == "Europe/Berlin"


@pytest.mark.parametrize("method, path", [("POST", "/api/v1/areas"), ("PATCH", "ward")])
def test_an_unknown_zone_is_refused_naming_it_in_both_languages(berlin, method, path):
    s = berlin["s"]
    body = {"name": "Khu mới", "code": "TM-X", "kind": "ward", "tz": "Mars/Olympus_Mons"}
    if path == "ward":
        path, body = f"/api/v1/areas/{berlin['ward']['id']}", {"tz": "Mars/Olympus_Mons"}
    r = s.call(method, path, json=body)
    assert r.status_code == 422, r.text  # well-formed, but no zone the zone database knows
    error = r.json()["error"]
    assert error["code"] == "unknown_time_zone"
    assert "Mars/Olympus_Mons" in error["message"] and "múi giờ" in error["message"]
    en = s.call(method, path + "?lang=en", json=body).json()["error"]["message"]
    assert "Unknown time zone Mars/Olympus_Mons" in en
    assert area(berlin, "ward")["tz"] == "Europe/Berlin"  # nothing changed


@pytest.mark.parametrize("bad", [7, ["Europe/Berlin"], "../../etc/passwd", " Europe/Berlin"])
def test_what_is_not_a_zone_name_is_refused_as_malformed(berlin, bad):
    r = berlin["s"].call("PATCH", f"/api/v1/areas/{berlin['ward']['id']}", json={"tz": bad})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid" and "tz" in error["message"]


def test_a_zone_name_in_the_wrong_case_is_not_a_zone(berlin):
    r = berlin["s"].call("PATCH", f"/api/v1/areas/{berlin['ward']['id']}",
                         json={"tz": "europe/berlin"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_time_zone"


def test_a_node_desired_state_carries_its_area_zone_and_six_local_across_the_clock_change(
        berlin):
    s, node = berlin["s"], berlin["node"]
    bc = series(berlin, {"areas": [berlin["ward"]["id"]]})
    dispatcher(s, dt.datetime(2027, 3, 27, 0, 0, tzinfo=BERLIN)).refresh_desired()
    body = desired(s, node["id"])["body"]
    assert body["tz"] == "Europe/Berlin"
    starts = [(e["slot_id"], e["start_at"]) for e in body["schedule"]]
    assert starts == [
        (f"b{bc['id']}-20270327T050000Z", ms(dt.datetime(2027, 3, 27, 6, 0, tzinfo=BERLIN))),
        (f"b{bc['id']}-20270328T040000Z", ms(dt.datetime(2027, 3, 28, 6, 0, tzinfo=BERLIN)))]


def test_a_node_provisioned_in_the_area_gets_its_zone_in_its_config(berlin):
    config = tomllib.loads(berlin["node"]["config"])
    assert config["tz"] == "Europe/Berlin"


def test_a_series_to_single_nodes_is_expanded_in_their_cluster_zone(berlin):
    s, node = berlin["s"], berlin["node"]
    assert series(berlin, {"nodes": [node["id"]]})["tz"] == "Europe/Berlin"
    dispatcher(s, dt.datetime(2027, 3, 27, 0, 0, tzinfo=BERLIN)).refresh_desired()
    local = [dt.datetime.fromtimestamp(e["start_at"] / 1000, BERLIN).strftime("%d %H:%M")
             for e in desired(s, node["id"])["body"]["schedule"]]
    assert local == ["27 06:00", "28 06:00"]


def test_the_schedule_listing_and_calendar_show_the_area_zone(berlin):
    s, ward = berlin["s"], berlin["ward"]
    series(berlin, {"areas": [ward["id"]]})
    # from and to without an offset are read in the area's zone
    window = "from=2027-03-27T00:00&to=2027-03-29T00:00"
    got = s.ok("GET", f"/api/v1/areas/{ward['id']}/schedule?{window}")
    assert got["tz"] == "Europe/Berlin"
    assert [(x["start_at"], x["local_start_at"]) for x in got["slots"]] == [
        ("2027-03-27T05:00:00Z", "2027-03-27T06:00:00+01:00"),
        ("2027-03-28T04:00:00Z", "2027-03-28T06:00:00+02:00")]
    ics = s.call("GET", f"/api/v1/areas/{ward['id']}/schedule.ics?{window}").text
    assert "X-WR-TIMEZONE:Europe/Berlin\r\n" in ics
    assert "DTSTART:20270327T050000Z" in ics and "DTSTART:20270328T040000Z" in ics
    # the province above lists the same instants, shown in its own zone
    above = s.ok("GET", f"/api/v1/areas/{berlin['province']['id']}/schedule?"
                        "from=2027-03-27T00:00%2B01:00&to=2027-03-29T00:00%2B01:00")
    assert above["tz"] == "Asia/Ho_Chi_Minh"
    assert [x["local_start_at"] for x in above["slots"]] == [
        "2027-03-27T12:00:00+07:00", "2027-03-28T11:00:00+07:00"]


def test_the_airplay_report_plans_the_slots_at_the_area_local_hours(berlin):
    s, ward = berlin["s"], berlin["ward"]
    series(berlin, {"areas": [ward["id"]]})
    got = s.ok("GET", f"/api/v1/reports/airplay?area={ward['id']}"
                      "&from=2027-03-27T00:00&to=2027-03-29T00:00")
    assert got["tz"] == "Europe/Berlin"
    assert [(i["scheduled_at"], i["status"]) for i in got["items"]] == [
        ("2027-03-27T05:00:00Z", "pending"), ("2027-03-28T04:00:00Z", "pending")]


def test_changing_the_zone_moves_the_series_and_marks_the_nodes_dirty(berlin):
    s, node = berlin["s"], berlin["node"]
    series(berlin, {"areas": [berlin["ward"]["id"]]})
    at = dt.datetime(2027, 3, 27, 0, 0, tzinfo=BERLIN)
    dispatcher(s, at).refresh_desired()
    with s.app.extensions["db_sessions"]() as db:
        assert not db.get(Node, node["id"]).desired_dirty
    s.ok("PATCH", f"/api/v1/areas/{berlin['ward']['id']}", json={"tz": "Asia/Ho_Chi_Minh"})
    with s.app.extensions["db_sessions"]() as db:
        assert db.get(Node, node["id"]).desired_dirty  # a new desired state at once
    dispatcher(s, at).refresh_desired()
    body = desired(s, node["id"])["body"]
    assert body["tz"] == "Asia/Ho_Chi_Minh"
    assert {dt.datetime.fromtimestamp(e["start_at"] / 1000, VN).strftime("%H:%M")
            for e in body["schedule"]} == {"06:00"}


def test_a_zone_changed_on_the_series_area_reaches_nodes_targeted_outside_it(berlin):
    """A series to the Berlin ward and a node of another ward is expanded in Berlin's zone: a
    change of that zone gives the other node new slots too."""
    s = berlin["s"]
    other = s.area("Phường khác", "TM-KH", "ward", berlin["province"]["id"])
    cluster = s.area("Cụm 2", "TM-KH-1", "cluster", other["id"])
    far = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 2"})
    bc = series(berlin, {"areas": [berlin["ward"]["id"]], "nodes": [far["id"]]})
    assert bc["tz"] == "Europe/Berlin"
    at = dt.datetime(2027, 3, 27, 0, 0, tzinfo=BERLIN)
    dispatcher(s, at).refresh_desired()
    body = desired(s, far["id"])["body"]
    assert body["tz"] == "Asia/Ho_Chi_Minh"  # its own area's zone: its quiet hours are judged in it
    assert [dt.datetime.fromtimestamp(e["start_at"] / 1000, BERLIN).strftime("%H:%M")
            for e in body["schedule"]] == ["06:00", "06:00"]
    s.ok("PATCH", f"/api/v1/areas/{berlin['ward']['id']}", json={"tz": "America/New_York"})
    with s.app.extensions["db_sessions"]() as db:
        assert db.get(Node, far["id"]).desired_dirty
    before = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert before["tz"] == "Europe/Berlin" and before["ends_at"]  # its past keeps its zone
    after = s.ok("GET", f"/api/v1/broadcasts/{before['next_id']}")
    assert after["tz"] == "America/New_York" and after["recurrence"] == DAILY_SIX
    assert after["targets"] == before["targets"]
