"""Only approved audio airs, no single request or row can stop the outbox, nothing goes out
stale or late, and the right people (in the right area) decide what airs and at what priority."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, update

from schedules.dispatcher import Dispatcher
from server.keys import load_signing_key
from server.models import Broadcast, Command, utcnow
from tests.server.helpers import PASSWORD, approved, db, later, ward_with_users
from tests.transports import NoBroker
from tests.web_helpers import PageUser, found


def dispatcher(s, transport=None) -> Dispatcher:
    kid, key = load_signing_key(s.settings.signing_key_file)
    return Dispatcher(s.settings, s.app.extensions["db_sessions"], transport or NoBroker(),
                      key, kid)


def backdate(s, model, row_id, **seconds_ago) -> None:
    """Move a row's times into the past, as if the dispatcher had been down that long."""
    with db(s) as session:
        session.execute(update(model).where(model.id == row_id).values(**{
            column: utcnow() - dt.timedelta(seconds=ago) for column, ago in seconds_ago.items()}))
        session.commit()


PREPARED = {"ward": ward_with_users}  # made once, copied for each test (tests/server/conftest.py)


@pytest.fixture
def ward(app_only):
    return app_only.prepared


# --- approval is bound to the audio ------------------------------------------------------------

def test_archiving_a_bulletin_holds_its_scheduled_broadcast_with_a_reason(app_only, ward):
    s = app_only
    b = approved(s)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": later(30)})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/archive")
    assert dispatcher(s).dispatch_due() == 1
    report = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert (report["status"], report["reason"]) == ("held", "approval_revoked")
    assert [(n["status"], n["reason"]) for n in report["nodes"]] == [("failed", "approval_revoked")]
    with db(s) as session:
        assert not session.scalars(select(Command).where(Command.type == "play")).all()
    # the page says why, for the broadcast and each node, in the user's words
    staff = PageUser(s, "staff-lc", PASSWORD)
    page = staff.get(f"/broadcasts/{bc['id']}").text
    why = "bản tin đã bị thu hồi phê duyệt (lưu trữ)"
    assert f"Lượt phát bị giữ lại, không phát: {why}" in page
    node_row = found(rf'<tr id="delivery-{ward["node"]["id"]}"(.*?)</tr>', page.replace("\n", ""))
    assert why in node_row and "approval_revoked" not in page
    english = staff.get(f"/broadcasts/{bc['id']}?lang=en").text
    assert english.count("the bulletin&#39;s approval was withdrawn (archived)") == 2


def test_approving_what_was_edited_since_the_approver_heard_it_is_refused(app_only, ward):
    s = app_only
    b = s.ok("POST", "/api/v1/bulletins", json={"title": "T", "text": "Thông báo một.",
                                                "category": "other"})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
    heard = s.ok("GET", f"/api/v1/bulletins/{b['id']}")["sha256"]
    s.ok("PATCH", f"/api/v1/bulletins/{b['id']}", json={"text": "Thông báo hai."})
    r = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve", json={"sha256": heard})
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_revision"
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"
    now = s.ok("GET", f"/api/v1/bulletins/{b['id']}")["sha256"]
    ok = s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve", json={"sha256": now})
    assert ok["status"] == "approved" and ok["approved_sha256"] == now


# --- the outbox ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body,status,why", [
    ({"kind": "tone", "extra": {"level": 0.5}}, 400, "floating-point"),
    ({"kind": "tone", "extra": [1, [2, 3.25]]}, 400, "floating-point"),
    ({"volume": 50.5}, 400, "integer"),
    # a lone surrogate is text no database stores either: refused as any request's (422)
    ({"kind": "tone", "note": "\ud800"}, 422, "body.note"),
    ({"kind": "tone", "blob": "x" * 300_000}, 400, "larger"),
])
def test_a_command_body_that_cannot_be_signed_is_refused_when_queued(app_only, ward, body,
                                                                     status, why):
    s = app_only
    type_ = "set_volume" if "volume" in body else "test"
    r = s.call("POST", f"/api/v1/nodes/{ward['node']['id']}/commands",
               data=json.dumps({"type": type_, "body": body}),
               headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert "body" in r.json()["error"]["message"] and why in r.json()["error"]["message"]
    with db(s) as session:
        assert not session.scalars(select(Command).where(Command.type == type_)).all()


def test_healthz_says_when_the_outbox_is_stuck(app_only, ward):
    s = app_only
    cmd = s.ok("POST", f"/api/v1/nodes/{ward['node']['id']}/commands",
               json={"type": "amp", "body": {"on": True}})
    backdate(s, Command, cmd["id"], created_at=s.settings.outbox_stale_s + 30)
    r = s.call("GET", "/healthz", token=None)
    assert r.status_code == 503
    outbox = r.json()["checks"]["outbox"]
    assert not outbox["ok"] and outbox["oldest_unsent_age_s"] > s.settings.outbox_stale_s
    assert "oldest unsent command" in outbox["detail"]


def test_a_command_queued_while_the_dispatcher_was_down_expires_instead_of_going_out_stale(
        app_only, ward):
    s = app_only
    cmd = s.ok("POST", f"/api/v1/nodes/{ward['node']['id']}/commands",
               json={"type": "reboot", "body": {}})
    backdate(s, Command, cmd["id"], created_at=s.settings.command_ttl_s + 1)
    assert dispatcher(s).sign_pending() == 0
    after = s.ok("GET", f"/api/v1/commands/{cmd['id']}")
    assert after["status"] == "expired" and after["published_at"] is None


# --- late and stale broadcasts ---------------------------------------------------------------

def test_a_timed_broadcast_more_than_60s_late_is_skipped_and_reported(app_only, ward):
    s = app_only
    b = approved(s)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": later(600)})
    # the dispatcher was down from before its start until 90 s after it
    backdate(s, Broadcast, bc["id"], start_at=90, due_at=210)
    dispatcher(s).dispatch_due()
    report = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert (report["status"], report["reason"]) == ("skipped", "late")
    assert [(n["node_id"], n["status"], n["reason"]) for n in report["nodes"]] == [
        (ward["node"]["id"], "skipped", "late")]
    assert report["summary"]["failed"] == 1
    with db(s) as session:
        assert not session.scalars(select(Command).where(Command.type == "play")).all()


def test_a_timed_play_command_expires_60s_after_its_start(app_only, ward):
    s = app_only
    b = approved(s)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "start_at": later(30)})
    dispatcher(s).dispatch_due()
    with db(s) as session:
        row = session.get(Broadcast, bc["id"])
        cmd = session.scalars(select(Command).where(Command.broadcast_id == bc["id"])).one()
        start_ms = int(row.start_at.replace(tzinfo=dt.UTC).timestamp() * 1000)
        assert cmd.exp_ms == start_ms + 60_000
        assert json.loads(cmd.payload)["exp"] == start_ms + 60_000


def test_a_broadcast_for_now_not_sent_within_the_command_ttl_is_skipped(app_only, ward):
    s = app_only
    b = approved(s)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    backdate(s, Broadcast, bc["id"], created_at=s.settings.command_ttl_s + 5)
    dispatcher(s).dispatch_due()
    report = s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert (report["status"], report["reason"]) == ("skipped", "expired")


# --- who may put what on air -------------------------------------------------------------------

def test_staff_cannot_broadcast_another_wards_bulletin(app_only, ward):
    s, tok = app_only, ward["tokens"]
    theirs = approved(s, tok["staff-nq"], ward["other"]["id"], approver=tok["approver-nq"])
    assert s.call("GET", f"/api/v1/bulletins/{theirs['id']}",
                  token=tok["staff-lc"]).status_code == 404
    r = s.call("POST", "/api/v1/broadcasts", token=tok["staff-lc"], json={
        "bulletin_id": theirs["id"], "targets": {"areas": [ward["ward"]["id"]]}})
    assert r.status_code == 404
    with db(s) as session:
        assert not session.scalars(select(Broadcast)).all()


def test_a_ward_approver_cannot_approve_or_edit_a_province_wide_bulletin(app_only, ward):
    s, tok = app_only, ward["tokens"]
    for area_id in (None, ward["province"]["id"]):
        b = s.ok("POST", "/api/v1/bulletins", json={"title": "Toàn tỉnh", "text": "Thông báo.",
                                                    "category": "other", "area_id": area_id})
        s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
        r = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve", token=tok["approver-lc"])
        assert r.status_code in (403, 404), r.text
        r = s.call("PATCH", f"/api/v1/bulletins/{b['id']}", token=tok["approver-lc"],
                   json={"text": "Đã sửa."})
        assert r.status_code in (403, 404), r.text
        assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"


def test_staff_cannot_send_live_or_emergency_priority(app_only, ward):
    s, tok = app_only, ward["tokens"]
    b = approved(s, tok["staff-lc"], ward["ward"]["id"], approver=tok["approver-lc"])
    for priority in ("emergency", "live", 9):
        r = s.call("POST", "/api/v1/broadcasts", token=tok["staff-lc"], json={
            "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
            "priority": priority, "volume": 100})
        assert r.status_code == 403 and r.json()["error"]["code"] == "emergency_forbidden"
    ok = s.call("POST", "/api/v1/broadcasts", token=tok["approver-lc"], json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "priority": "emergency"})
    assert ok.status_code == 201 and ok.json()["status"] == "scheduled"


def test_with_the_second_person_rule_nothing_airs_until_another_approver_confirms(app_only, ward):
    s, tok = app_only, ward["tokens"]
    s.ok("PATCH", f"/api/v1/areas/{ward['ward']['id']}", json={"emergency_confirm": True})
    b = approved(s, tok["staff-lc"], ward["ward"]["id"], approver=tok["approver-lc"])
    bc = s.ok("POST", "/api/v1/broadcasts", token=tok["staff-lc"], json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "priority": "emergency"})
    assert bc["status"] == "awaiting_confirmation"
    d = dispatcher(s)
    assert d.dispatch_due() == 0
    # the creator cannot be the second person, staff cannot confirm, another ward cannot
    assert s.call("POST", f"/api/v1/broadcasts/{bc['id']}/confirm",
                  token=tok["staff-lc"]).status_code == 403
    assert s.call("POST", f"/api/v1/broadcasts/{bc['id']}/confirm",
                  token=tok["approver-nq"]).status_code in (403, 404)
    mine = s.ok("POST", "/api/v1/broadcasts", token=tok["approver-lc"], json={
        "bulletin_id": b["id"], "targets": {"areas": [ward["ward"]["id"]]},
        "priority": "emergency"})
    r = s.call("POST", f"/api/v1/broadcasts/{mine['id']}/confirm", token=tok["approver-lc"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "second_person"
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["status"] == "awaiting_confirmation"
    confirmed = s.ok("POST", f"/api/v1/broadcasts/{bc['id']}/confirm",
                     token=tok["approver2-lc"])
    assert confirmed["status"] == "scheduled" and confirmed["confirmed_at"]
    assert d.dispatch_due() == 1
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["status"] == "dispatched"
