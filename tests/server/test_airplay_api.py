"""GET /api/v1/reports/airplay in-process: a series' slots and a one-off's deliveries in the
period, judged against the `played` events the bridge stored; scoped to the caller's area; CSV
on Accept: text/csv."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from schedules.slots import slot_id
from server.models import Broadcast, Delivery, Node
from tests.server.airplay_helpers import NOW, SIX, back_date, played, report, window
from tests.server.helpers import TZ, ward_with_a_node
from tests.transports import NoTransport


@pytest.fixture
def ward(make_app):
    s = make_app(airplay_grace_s=60)
    w = ward_with_a_node(s)
    back_date(s, Node, w["node"]["id"])
    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [w["ward"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": SIX.isoformat()})
    back_date(s, Broadcast, bc["id"])
    return {**w, "bulletin": b, "bc": bc}


def test_slots_of_the_period_aired_skipped_or_unreported(ward):
    s, node, b, bc = ward["s"], ward["node"], ward["bulletin"], ward["bc"]
    days = [SIX + dt.timedelta(days=n) for n in range(3)]
    slots = [slot_id(bc["id"], d) for d in days]
    played(s, node["id"], b["sha256"], days[0], b["duration_ms"], slot_id=slots[0])
    played(s, node["id"], b["sha256"], days[1], None, result="skipped", reason="quiet_hours",
           slot_id=slots[1])
    got = report(s, window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(days=2, hours=1)))
    lines = [(i["slot_id"], i["status"], i["reason"]) for i in got["items"]]
    assert lines == [(slots[0], "aired", None), (slots[1], "missed", "quiet_hours"),
                     (slots[2], "missed", "no_report")]
    first = got["items"][0]
    assert first["node_id"] == node["id"] and first["broadcast_id"] == bc["id"]
    assert first["cmd_id"] is None and first["area_id"] == ward["cluster"]["id"]
    assert first["scheduled_at"] == days[0].astimezone(dt.UTC).isoformat().replace(
        "+00:00", "Z")
    assert first["started_at"] == first["scheduled_at"] and first["ended_at"]
    assert got["grace_s"] == 60
    assert got["totals"] == [{"area_id": ward["cluster"]["id"], "area_name": "Cụm 1",
                              "planned": 3, "aired": 1, "partial": 0, "missed": 2,
                              "pending": 0}]
    assert got["total"]["planned"] == 3


def test_a_slot_still_to_come_is_pending_and_a_slot_before_the_series_is_not_planned(ward):
    s, bc = ward["s"], ward["bc"]
    tomorrow = SIX + dt.timedelta(days=4)
    got = report(s, window(tomorrow - dt.timedelta(hours=1), tomorrow + dt.timedelta(hours=1)))
    assert [(i["slot_id"], i["status"]) for i in got["items"]] == [
        (slot_id(bc["id"], tomorrow), "pending")]
    long_ago = SIX - dt.timedelta(days=10)
    assert report(s, window(long_ago, long_ago + dt.timedelta(days=2)))["items"] == []


def test_a_cancelled_series_plans_nothing_after_it_was_cancelled(ward):
    s, bc = ward["s"], ward["bc"]
    s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/cancel")
    got = report(s, window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(days=6)))
    assert got["items"] and all(i["scheduled_at"] < dt.datetime.now(dt.UTC).isoformat()
                                for i in got["items"])


def _one_off(ward):
    """A "now" broadcast to the node, dispatched (its command in the outbox, no broker)."""
    from schedules.dispatcher import Dispatcher
    from server.keys import load_signing_key
    s = ward["s"]
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": ward["bulletin"]["id"],
                                                  "targets": {"nodes": [ward["node"]["id"]]},
                                                  "override": True})
    kid, key = load_signing_key(s.settings.signing_key_file)
    Dispatcher(s.settings, s.app.extensions["db_sessions"], NoTransport(), key, kid).dispatch_due()
    with s.app.extensions["db_sessions"]() as db:
        (d,) = db.query(Delivery).filter_by(broadcast_id=bc["id"]).all()
        return bc, d.command_id


def _besides_the_daily_series(ward, items):
    """The report's items but the fixture's daily 06:00 series (in the window when a test runs
    at about 06:00 in Vietnam)."""
    return [i for i in items if i["broadcast_id"] != ward["bc"]["id"]]


def test_a_one_off_is_pending_then_aired_when_the_node_reports_its_play(ward):
    s, node, b = ward["s"], ward["node"], ward["bulletin"]
    bc, cmd_id = _one_off(ward)
    assert cmd_id
    now = dt.datetime.now(TZ).replace(microsecond=0)  # not NOW: minutes may pass after import
    span = window(now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5))
    (item,) = _besides_the_daily_series(ward, report(s, span)["items"])
    assert (item["broadcast_id"], item["cmd_id"], item["slot_id"], item["status"]) == \
        (bc["id"], cmd_id, None, "pending")
    played(s, node["id"], b["sha256"], now, b["duration_ms"], cmd_id=cmd_id)
    (item,) = _besides_the_daily_series(ward, report(s, span)["items"])
    assert (item["status"], item["reason"]) == ("aired", None)


def test_csv_one_row_per_item(ward):
    s = ward["s"]
    r = s.call("GET", "/api/v1/reports/airplay" + window(SIX - dt.timedelta(hours=1),
                                                         SIX + dt.timedelta(days=1, hours=1)),
               headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["status"], row["reason"]) for row in rows] == [("missed", "no_report")] * 2
    assert rows[0]["node_id"] == ward["node"]["id"] and rows[0]["cmd_id"] == ""


def test_the_report_is_scoped_to_the_callers_area(ward):
    s = ward["s"]
    from server.cli import main as cli
    other = s.area("Phường Khác", "PK", "ward")
    assert cli(["--instance", str(s.instance), "user", "canbo-pk", "--role", "approver",
                "--password", "mat-khau-123", "--area-id", str(other["id"])]) == 0
    token = s.login("canbo-pk", "mat-khau-123")
    span = window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(days=1, hours=1))
    mine = report(s, span)
    assert len(mine["items"]) == 2
    theirs = report(s, span, token=token)
    assert theirs["items"] == [] and theirs["totals"] == [] and theirs["total"]["planned"] == 0
    for query in (f"&area={ward['ward']['id']}", f"&node={ward['node']['id']}"):
        assert s.call("GET", f"/api/v1/reports/airplay{span}{query}",
                      token=token).status_code == 404
    assert report(s, span + f"&area={other['id']}")["items"] == []
    assert len(report(s, span + f"&node={ward['node']['id']}")["items"]) == 2


@pytest.mark.parametrize("query", ["?from=yesterday", "?to=soon", "?area=x"])
def test_a_bad_query_is_a_400_naming_the_field(ward, query):
    r = ward["s"].call("GET", f"/api/v1/reports/airplay{query}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("to", ["0001-01-01T00:00:00Z", "0001-01-01T12:00:00Z"])
def test_a_period_ending_on_the_first_date_reports_nothing(ward, to):
    """Without ``from`` the period is the day before ``to``, cut at the first date (found by
    the OpenAPI fuzzing: a server error)."""
    r = report(ward["s"], f"?to={to}")
    assert r["items"] == [] and r["total"]["planned"] == 0


def test_a_timed_one_off_not_yet_sent_is_pending_for_every_node_it_targets(ward):
    s = ward["s"]
    later = NOW + dt.timedelta(days=2)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": ward["bulletin"]["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": later.isoformat(), "override": True})
    got = report(s, window(later - dt.timedelta(minutes=1), later + dt.timedelta(minutes=1)))
    assert [(i["broadcast_id"], i["node_id"], i["cmd_id"], i["status"])
            for i in _besides_the_daily_series(ward, got["items"])] == [
        (bc["id"], ward["node"]["id"], None, "pending")]


def test_a_revoked_node_keeps_the_slots_planned_before_its_revocation(ward):
    s, node, b, bc = ward["s"], ward["node"], ward["bulletin"], ward["bc"]
    days = [SIX + dt.timedelta(days=n) for n in range(3)]
    slots = [slot_id(bc["id"], d) for d in days]
    played(s, node["id"], b["sha256"], days[0], b["duration_ms"], slot_id=slots[0])
    assert s.ok("POST", f"/api/v1/nodes/{node['id']}/revoke")["revoked_at"]
    revoked = days[1] + dt.timedelta(hours=1)  # after the second day's slot, before the third
    with s.app.extensions["db_sessions"]() as db:
        db.get(Node, node["id"]).revoked_at = revoked.astimezone(dt.UTC).replace(tzinfo=None)
        db.commit()
    got = report(s, window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(days=2, hours=1)))
    assert [(i["node_id"], i["slot_id"], i["status"], i["reason"]) for i in got["items"]] == [
        (node["id"], slots[0], "aired", None), (node["id"], slots[1], "missed", "no_report")]
    assert got["totals"][0]["area_id"] == ward["cluster"]["id"]
    # nothing is planned for it after its revocation, now or later
    later = report(s, window(NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=2)))
    assert later["items"] == []


def test_a_slot_aired_in_full_before_its_programme_got_longer_stays_aired(ward):
    s, node = ward["s"], ward["node"]
    s.ok("POST", f"/api/v1/broadcasts/{ward['bc']['id']}/cancel")  # the ward's 06:00 is free
    one = s.approved_bulletin("Tin thứ nhất", "Ủy ban nhân dân phường thông báo lịch tiêm chủng.")
    two = s.approved_bulletin("Tin thứ hai", "Nhắc nhở bà con giữ gìn vệ sinh môi trường.")
    p = s.ok("POST", "/api/v1/programmes", json={"title": "Chương trình sáng",
                                                 "items": [one["id"]]})
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": SIX.isoformat()})
    back_date(s, Broadcast, bc["id"])
    first = slot_id(bc["id"], SIX)
    played(s, node["id"], p["sha256"], SIX, p["duration_ms"], slot_id=first)
    longer = s.ok("PATCH", f"/api/v1/programmes/{p['id']}",
                  json={"items": [one["id"], two["id"]]})
    assert longer["duration_ms"] > p["duration_ms"] + 2000
    got = report(s, window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(hours=1)))
    assert [(i["slot_id"], i["status"], i["reason"]) for i in got["items"]
            if i["broadcast_id"] == bc["id"]] == [(first, "aired", None)]


def test_a_zone_changed_later_leaves_the_slots_that_aired_as_aired(ward):
    """The ward's zone changed after its daily series aired: the past slots keep their ids and
    their plays, and the series goes on from now in the new zone."""
    s, node, b, bc = ward["s"], ward["node"], ward["bulletin"], ward["bc"]
    days = [SIX + dt.timedelta(days=n) for n in range(2)]
    for day in days:
        played(s, node["id"], b["sha256"], day, b["duration_ms"], slot_id=slot_id(bc["id"], day))
    s.ok("PATCH", f"/api/v1/areas/{ward['ward']['id']}", json={"tz": "Asia/Tokyo"})
    got = report(s, window(SIX - dt.timedelta(hours=1), SIX + dt.timedelta(days=1, hours=1)))
    assert [(i["slot_id"], i["status"]) for i in got["items"]] == [
        (slot_id(bc["id"], day), "aired") for day in days]
    later = NOW + dt.timedelta(days=1)
    got = report(s, window(later - dt.timedelta(days=1), later + dt.timedelta(days=1)))
    after = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["next_id"]
    pending = [i for i in got["items"] if i["status"] == "pending"]
    assert pending and {i["broadcast_id"] for i in pending} == {after}  # it goes on, split


def test_the_report_finds_the_plays_of_its_slots_and_commands_by_an_index(app_only):
    """A year of play logs is most of a database: the report must seek a slot's and a command's
    plays (server.reports.reported_rows), never read them all (revision 0015)."""
    from sqlalchemy import select

    from server.models import PlayLog
    engine = app_only.app.extensions["db_engine"]
    if engine.dialect.name != "sqlite":
        pytest.skip("reads SQLite's query plan")
    by_slot = select(PlayLog).where(PlayLog.slot_id.in_(["b1-20261201T230000Z", "b1-x"])
                                    & PlayLog.cmd_id.is_(None))
    by_cmd = select(PlayLog).where(PlayLog.cmd_id.in_(["c1", "c2"]))
    with engine.connect() as conn:
        for query, index in ((by_slot, "ix_playlogs_slot_id_cmd_id"),
                             (by_cmd, "ix_playlogs_cmd_id")):
            compiled = query.compile(conn, compile_kwargs={"render_postcompile": True})
            params = tuple(compiled.params[name] for name in compiled.positiontup or ())
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", params))
            assert f"USING INDEX {index}" in plan, plan
