"""Programmes through the API: approved bulletins joined into one media (its duration the sum of
theirs, the same items the same sha256), what may go in one, broadcasting one (a one-off's play
command and a series' desired-state slots carry the programme's media), and an edit changing a
series' future slots only while its past play logs keep what they played."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.slots import slot_id
from server.models import Command
from tests.server.helpers import ward_with_a_node
from tests.server.series_helpers import desired, dispatcher, played, playlogs, tomorrow_at


def _ward_with_two_bulletins(s) -> dict:
    """A ward with one cluster and node, and two approved bulletins ("one", "two"); not its "s"
    (made once and copied for each test: PREPARED, tests/server/conftest.py)."""
    w = {k: v for k, v in ward_with_a_node(s).items() if k != "s"}
    one = s.approved_bulletin("Tin thứ nhất", "Ủy ban nhân dân phường thông báo lịch tiêm chủng.")
    two = s.approved_bulletin("Tin thứ hai", "Nhắc nhở bà con giữ gìn vệ sinh môi trường.")
    return {**w, "one": one, "two": two}


PREPARED = {"ward": _ward_with_two_bulletins}


@pytest.fixture
def ward(app_only):
    return {"s": app_only, **app_only.prepared}


def programme(w, items, title="Chương trình sáng", **extra):
    return w["s"].call("POST", "/api/v1/programmes",
                       json={"title": title, "items": items, **extra})


def test_a_programme_joins_its_bulletins_into_one_media(ward):
    s, one, two = ward["s"], ward["one"], ward["two"]
    r = programme(ward, [one["id"], two["id"]])
    assert r.status_code == 201, r.text
    p = r.json()
    assert [i["bulletin_id"] for i in p["items"]] == [one["id"], two["id"]]
    assert [i["sha256"] for i in p["items"]] == [one["sha256"], two["sha256"]]
    assert p["revision"] == 1 and p["audio_url"] == f"/media/{p['sha256']}.mp3"
    assert p["sha256"] not in (one["sha256"], two["sha256"])
    assert abs(p["duration_ms"] - (one["duration_ms"] + two["duration_ms"])) < 300
    media = s.call("GET", p["audio_url"])
    assert media.status_code == 200
    import hashlib
    assert hashlib.sha256(media.content).hexdigest() == p["sha256"]
    assert s.ok("GET", f"/api/v1/programmes/{p['id']}") == p
    assert [x["id"] for x in s.ok("GET", "/api/v1/programmes")["programmes"]] == [p["id"]]


def test_the_same_items_give_the_same_media(ward):
    items = [ward["one"]["id"], ward["two"]["id"], ward["one"]["id"]]
    first = programme(ward, items).json()
    second = programme(ward, items, title="Chương trình chiều").json()
    assert first["sha256"] == second["sha256"]
    other = programme(ward, list(reversed(items[:2]))).json()
    assert other["sha256"] != first["sha256"]


def test_editing_the_items_makes_a_new_revision_of_the_media(ward):
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"]]).json()
    edited = s.ok("PATCH", f"/api/v1/programmes/{p['id']}",
                  json={"items": [ward["one"]["id"], ward["two"]["id"]]})
    assert edited["revision"] == 2 and edited["sha256"] != p["sha256"]
    assert len(edited["items"]) == 2
    renamed = s.ok("PATCH", f"/api/v1/programmes/{p['id']}", json={"title": "Bản tin tối"})
    assert renamed["title"] == "Bản tin tối" and renamed["sha256"] == edited["sha256"]
    same = s.ok("PATCH", f"/api/v1/programmes/{p['id']}", json={"title": "Bản tin tối"})
    assert same["revision"] == renamed["revision"]


def test_an_unapproved_bulletin_cannot_go_in(ward):
    s = ward["s"]
    draft = s.ok("POST", "/api/v1/bulletins", json={"title": "Nháp", "text": "Bản nháp.",
                                                    "category": "other"})
    r = programme(ward, [ward["one"]["id"], draft["id"]])
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_approved"
    assert s.ok("GET", "/api/v1/programmes")["programmes"] == []


def test_an_empty_programme_is_refused(ward):
    r = programme(ward, [])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
    assert "items" in r.json()["error"]["message"]
    r = ward["s"].call("POST", "/api/v1/programmes", json={"title": "Trống"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_field"


def test_another_wards_bulletin_cannot_go_in(app_only, wards):
    s = app_only
    theirs = s.ok("POST", "/api/v1/bulletins", json={
        "title": "Tin phường khác", "text": "Thông báo.", "category": "other",
        "area_id": wards["other"]["id"]})
    s.ok("POST", f"/api/v1/bulletins/{theirs['id']}/submit")
    s.ok("POST", f"/api/v1/bulletins/{theirs['id']}/approve")
    r = s.call("POST", "/api/v1/programmes", token=wards["approver"],
               json={"title": "Của tôi", "items": [theirs["id"]]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # and a programme of the other ward is not theirs to see
    p = s.ok("POST", "/api/v1/programmes", json={"title": "Phường khác", "items": [theirs["id"]],
                                                 "area_id": wards["other"]["id"]})
    assert s.call("GET", f"/api/v1/programmes/{p['id']}",
                  token=wards["approver"]).status_code == 404
    assert s.ok("GET", "/api/v1/programmes", token=wards["approver"])["programmes"] == []


def test_a_broadcast_names_a_bulletin_or_a_programme_not_both(ward):
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"]]).json()
    r = s.call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["one"]["id"], "programme_id": p["id"],
        "targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 400 and "programme_id" in r.json()["error"]["message"]
    r = s.call("POST", "/api/v1/broadcasts", json={"targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_field"
    assert "bulletin_id" in r.json()["error"]["message"]
    r = s.call("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"] + 99, "targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 404


def test_a_one_off_broadcast_of_a_programme_plays_its_media(ward):
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"], ward["two"]["id"]]).json()
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    assert bc["programme_id"] == p["id"] and bc["bulletin_id"] is None
    assert bc["programme_revision"] == {"id": bc["programme_revision"]["id"], "revision": 1,
                                        "sha256": p["sha256"]}
    # the programme edited afterwards: the broadcast keeps the revision it was made with
    s.ok("PATCH", f"/api/v1/programmes/{p['id']}", json={"items": [ward["two"]["id"]]})
    assert dispatcher(s, dt.datetime.now(dt.UTC)).dispatch_due() == 1
    with s.app.extensions["db_sessions"]() as db:
        (cmd,) = db.query(Command).filter(Command.type == "play").all()
        item = cmd.body["item"]
    assert item["media"]["sha256"] == p["sha256"]
    assert item["media"]["duration_ms"] == p["duration_ms"]
    assert item["title"] == p["title"] and item["id"] == f"bc-{bc['id']}"
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["status"] == "dispatched"


def series(w, p, start=None):
    return w["s"].ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [w["ward"]["id"]]},
        "recurrence": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
        "start_at": (start or tomorrow_at(6)).isoformat()})


def test_a_series_of_a_programme_puts_its_media_in_the_desired_state(ward):
    s, node = ward["s"], ward["node"]
    p = programme(ward, [ward["one"]["id"], ward["two"]["id"]]).json()
    bc = series(ward, p)
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    body = desired(s, node["id"])["body"]
    entry = body["schedule"][0]
    assert entry["slot_id"] == slot_id(bc["id"], tomorrow_at(6))
    assert entry["item"]["media"]["sha256"] == p["sha256"]
    assert entry["item"]["title"] == p["title"]
    assert [m["sha256"] for m in body["prefetch"]] == [p["sha256"]]
    listed = s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/schedule")["slots"]
    assert listed and listed[0]["programme_id"] == p["id"]


def test_editing_a_programme_changes_its_series_future_slots_only(ward):
    s, node = ward["s"], ward["node"]
    p = programme(ward, [ward["one"]["id"]]).json()
    bc = series(ward, p)
    first = slot_id(bc["id"], tomorrow_at(6))
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    played(s, node["id"], first, p["sha256"])  # tomorrow's slot aired the first revision
    edited = s.ok("PATCH", f"/api/v1/programmes/{p['id']}",
                  json={"items": [ward["one"]["id"], ward["two"]["id"]]})
    after = tomorrow_at(7)
    dispatcher(s, after).refresh_desired()
    body = desired(s, node["id"])["body"]
    assert body["schedule"] and all(e["item"]["media"]["sha256"] == edited["sha256"]
                                    for e in body["schedule"])
    assert body["schedule"][0]["slot_id"] == slot_id(bc["id"], tomorrow_at(6)
                                                     + dt.timedelta(days=1))
    (log,) = playlogs(s, node["id"])
    assert log["sha256"] == p["sha256"] and log["result"] == "completed"
    # the series now airs the new revision; a one-off made before keeps the old
    report = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert report["programme_revision"]["sha256"] == edited["sha256"]


def series_right_after(w, p, bulletin, gap_s=1):
    """A daily series of ``bulletin`` starting ``gap_s`` seconds after the programme's 06:00
    slot ends as the programme stands."""
    start = tomorrow_at(6) + dt.timedelta(seconds=-(-p["duration_ms"] // 1000) + gap_s)
    return w["s"].ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin["id"], "targets": {"areas": [w["ward"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat()})


def test_a_programme_made_longer_into_another_series_is_a_conflict_and_changes_nothing(ward):
    s, node = ward["s"], ward["node"]
    p = programme(ward, [ward["one"]["id"]]).json()
    bc = series(ward, p)
    after = series_right_after(ward, p, ward["two"])
    longer = {"items": [ward["one"]["id"], ward["two"]["id"]]}
    r = s.call("PATCH", f"/api/v1/programmes/{p['id']}", json=longer)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "schedule_conflict" and "override" in error["message"]
    clash = error["clashes"][0]
    assert clash["node_id"] == node["id"]
    assert clash["slot"]["slot_id"] == slot_id(bc["id"], tomorrow_at(6))
    assert clash["existing"]["broadcast_id"] == after["id"]
    # nothing of the edit was kept: no revision, the series still airs the old media
    assert s.ok("GET", f"/api/v1/programmes/{p['id']}") == p
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["programme_revision"]["sha256"] \
        == p["sha256"]
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    mine = [e for e in desired(s, node["id"])["body"]["schedule"]
            if e["slot_id"].startswith(f"b{bc['id']}-")]
    assert mine and all(e["item"]["media"]["sha256"] == p["sha256"] for e in mine)
    # said on purpose, the edit goes through
    edited = s.ok("PATCH", f"/api/v1/programmes/{p['id']}", json={**longer, "override": True})
    assert edited["revision"] == 2 and edited["duration_ms"] > p["duration_ms"]
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["programme_revision"]["sha256"] \
        == edited["sha256"]


def test_an_overlap_let_through_before_does_not_block_a_later_edit(ward):
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"]]).json()
    series(ward, p)
    r = s.call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["two"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": (tomorrow_at(6) + dt.timedelta(
            seconds=1)).isoformat(), "override": True})
    assert r.status_code == 201, r.text
    renamed = s.ok("PATCH", f"/api/v1/programmes/{p['id']}", json={"title": "Bản tin sáng"})
    assert renamed["title"] == "Bản tin sáng" and renamed["revision"] == 2


def test_a_programme_made_longer_away_from_other_broadcasts_is_no_conflict(ward):
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"]]).json()
    bc = series(ward, p)
    series_right_after(ward, p, ward["two"], gap_s=3600)
    edited = s.ok("PATCH", f"/api/v1/programmes/{p['id']}",
                  json={"items": [ward["one"]["id"], ward["two"]["id"]]})
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["programme_revision"]["sha256"] \
        == edited["sha256"]


def test_archiving_an_item_takes_the_programmes_series_off_air(ward):
    s, node = ward["s"], ward["node"]
    p = programme(ward, [ward["one"]["id"], ward["two"]["id"]]).json()
    series(ward, p)
    now = s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    assert desired(s, node["id"])["body"]["schedule"]
    s.ok("POST", f"/api/v1/bulletins/{ward['two']['id']}/archive")
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    assert desired(s, node["id"])["body"]["schedule"] == []
    assert dispatcher(s, dt.datetime.now(dt.UTC)).dispatch_due() == 1
    held = s.ok("GET", f"/api/v1/broadcasts/{now['id']}")
    assert (held["status"], held["reason"]) == ("held", "approval_revoked")
    r = s.call("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_approved"


def test_the_broadcast_page_shows_the_programme(ward):
    from tests.system import ADMIN_PASSWORD
    from tests.web_helpers import PageUser
    s = ward["s"]
    p = programme(ward, [ward["one"]["id"], ward["two"]["id"]]).json()
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    page = browser.get(f"/broadcasts/{bc['id']}")
    assert page.status_code == 200
    assert p["title"] in page.text and p["audio_url"] in page.text
    listing = browser.get("/bulletins")
    assert listing.status_code == 200 and p["title"] in listing.text


def test_an_edited_series_of_a_programme_still_airs_the_programme(ward):
    s, node = ward["s"], ward["node"]
    p = programme(ward, [ward["one"]["id"], ward["two"]["id"]]).json()
    bc = series(ward, p)
    r = s.call("PATCH", f"/api/v1/broadcasts/{bc['id']}", json={"volume": 40})
    assert r.status_code in (200, 201), r.text
    new = r.json()
    assert new["programme_id"] == p["id"] and new["volume"] == 40
    dispatcher(s, tomorrow_at(5)).refresh_desired()
    entry = desired(s, node["id"])["body"]["schedule"][0]
    assert entry["slot_id"] == slot_id(new["id"], tomorrow_at(6))
    assert entry["item"]["media"]["sha256"] == p["sha256"]
