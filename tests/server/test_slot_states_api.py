"""GET /api/v1/broadcasts/{id}/slots and the broadcast's page: each occurrence of a series with
each targeted node's delivery state, visible as the broadcast is (another ward's: 404), the
window bounded, and an occurrence nobody reported on missed once the report says so."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import update

from schedules.slots import slot_id
from server.models import Broadcast, Node
from server.web import broadcasts as web_broadcasts
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone


def at_local(days: int, hour: int) -> dt.datetime:
    day = dt.datetime.now(TZ).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), TZ)


def series(s, area_id: int, start: dt.datetime, token="default") -> dict:
    b = s.approved_bulletin()
    return s.ok("POST", "/api/v1/broadcasts", token=token, json={
        "bulletin_id": b["id"], "targets": {"areas": [area_id]},
        "recurrence": f"FREQ=DAILY;BYHOUR={start.hour};BYMINUTE=0",
        "start_at": start.isoformat()})


def test_another_wards_series_slots_are_not_found_for_a_ward_user(wards, app_only):
    s = app_only
    theirs = series(s, wards["other"]["id"], at_local(1, 6))
    mine = series(s, wards["mine"]["id"], at_local(1, 6))
    r = s.call("GET", f"/api/v1/broadcasts/{theirs['id']}/slots", token=wards["approver"])
    assert r.status_code == 404
    answer = s.ok("GET", f"/api/v1/broadcasts/{mine['id']}/slots", token=wards["approver"])
    (occurrence,) = [o for o in answer["occurrences"]
                     if o["slot_id"] == slot_id(mine["id"], at_local(1, 6))]
    assert [n["state"] for n in occurrence["nodes"]] == ["scheduled"]
    assert occurrence["sha256"] == mine["approval"]["sha256"]


def test_an_occurrence_nobody_reported_on_is_missed_after_its_end_and_the_grace(wards, app_only):
    s = app_only
    bc = series(s, wards["mine"]["id"], at_local(1, 6))
    with s.app.extensions["db_sessions"]() as db:  # as if made three days ago
        three_days_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=3)
        db.execute(update(Broadcast).where(Broadcast.id == bc["id"]).values(
            created_at=three_days_ago,
            start_at=at_local(-3, 6).astimezone(dt.UTC).replace(tzinfo=None)))
        db.execute(update(Node).values(created_at=three_days_ago))
        db.commit()
    answer = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}/slots",
                  params={"from": at_local(-2, 0).isoformat(), "to": at_local(1, 0).isoformat()})
    past = [o for o in answer["occurrences"] if o["start_at"] < answer["generated_at"]]
    assert past and all(n["state"] == "missed" and n["reason"] == "no_report"
                        for o in past for n in o["nodes"])
    report = s.ok("GET", "/api/v1/reports/airplay", params={
        "from": at_local(-2, 0).isoformat(), "to": answer["generated_at"]})
    assert {(i["slot_id"], i["status"], i["reason"]) for i in report["items"]
            if i["broadcast_id"] == bc["id"]} == {(o["slot_id"], "missed", "no_report")
                                                 for o in past}


def test_the_window_is_a_week_at_most_and_a_one_off_has_no_occurrences(wards, app_only):
    s = app_only
    bc = series(s, wards["mine"]["id"], at_local(1, 6))
    answer = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}/slots",
                  params={"from": at_local(0, 0).isoformat(), "to": at_local(30, 0).isoformat()})
    assert len(answer["occurrences"]) == 6  # tomorrow through the week's last day
    to = dt.datetime.fromisoformat(answer["to"])
    assert to - dt.datetime.fromisoformat(answer["from"]) == dt.timedelta(days=7)
    b = s.approved_bulletin()
    one_off = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [wards["mine"]["id"]]},
        "start_at": at_local(2, 9).isoformat()})
    assert s.ok("GET", f"/api/v1/broadcasts/{one_off['id']}/slots")["occurrences"] == []


def test_the_broadcast_page_shows_each_occurrences_state_per_node(wards, app_only):
    s = app_only
    bc = series(s, wards["mine"]["id"], at_local(1, 6))
    page = PageUser(s, "admin", ADMIN_PASSWORD).get(f"/partials/broadcasts/{bc['id']}")
    assert page.status_code == 200
    html = page.text
    assert f'id="slot-{slot_id(bc["id"], at_local(1, 6))}"' in html
    assert 'data-state="scheduled"' in html and "Đã lên lịch" in html


def test_an_occurrence_on_many_nodes_names_only_those_to_look_at_and_a_poll_costs_a_304(
        wards, app_only, monkeypatch):
    s = app_only
    monkeypatch.setattr(web_broadcasts, "MAX_LISTED", 1)  # a ward of a thousand, in small
    second = s.ok("POST", "/api/v1/nodes", json={"cluster_id": wards["mine_cluster"]["id"],
                                                 "name": "Loa chợ"})
    past = (dt.datetime.now(TZ) - dt.timedelta(hours=3)).replace(minute=0, second=0,
                                                                 microsecond=0)
    bc = series(s, wards["mine"]["id"], past)
    with s.app.extensions["db_sessions"]() as db:  # made two days ago; the second node now
        two_days_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=2)
        db.execute(update(Broadcast).where(Broadcast.id == bc["id"]).values(
            created_at=two_days_ago))
        db.execute(update(Node).where(Node.id != second["id"]).values(created_at=two_days_ago))
        db.commit()
    user = PageUser(s, "admin", ADMIN_PASSWORD)
    first = user.get(f"/partials/broadcasts/{bc['id']}")
    html = first.text
    rows = dict(re.findall(r'<tr id="slot-([^"]+)">(.*?)</tr>', html, re.S))
    before, after = (rows[slot_id(bc["id"], past + dt.timedelta(days=d))] for d in (0, 1))
    # three hours ago only the first node was there, and nothing came from it: named, missed
    assert re.findall(r'data-state="(\w+)"', before) == ["missed"]
    assert "thiết bị khác" not in before
    # the next one: both planned, nothing to look at: counted, not named
    assert 'data-state=' not in after and "và 2 thiết bị khác" in after
    again = user.get(f"/partials/broadcasts/{bc['id']}",
                     headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


def test_a_dense_series_lists_at_most_200_occurrences_and_says_where_it_stopped(
        wards, app_only):
    s = app_only
    b = s.approved_bulletin()
    start = at_local(1, 6)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [wards["mine"]["id"]]},
        "recurrence": "FREQ=HOURLY;BYMINUTE=" + ",".join(map(str, range(0, 60, 5))),
        "start_at": start.isoformat()})  # every five minutes
    answer = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}/slots",
                  params={"from": start.isoformat()})
    assert len(answer["occurrences"]) == 200
    assert answer["occurrences"][-1]["start_at"] < answer["to"]
    assert dt.datetime.fromisoformat(answer["to"]) == start + dt.timedelta(minutes=5 * 200)
