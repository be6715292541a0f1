"""Alerts from what nodes report, through the database: a broadcast the node never reported
playing is a missed slot once its grace has passed (the airplay report's rules), resolved when
the late report comes; plays that keep failing for want of their media are media_failing."""
from __future__ import annotations

import datetime as dt

import pytest

from server.models import Delivery
from tests.server.airplay_helpers import NOW, played
from tests.server.helpers import Clock, bridge_of, make_dispatcher, state, ward_with_a_node


@pytest.fixture
def station(make_app):
    s = make_app(airplay_grace_s=60)
    node = ward_with_a_node(s)["node"]
    clock = Clock()
    dispatcher = make_dispatcher(s, clock)
    state(bridge_of(s), node["id"], True, clock)
    return {"s": s, "node": node, "bulletin": s.approved_bulletin(), "clock": clock,
            "dispatcher": dispatcher}


def one_off(st) -> str:
    """A "now" broadcast to the node, dispatched: its command id."""
    s = st["s"]
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": st["bulletin"]["id"],
                                                  "targets": {"nodes": [st["node"]["id"]]},
                                                  "override": True})
    st["dispatcher"].dispatch_due()
    with s.app.extensions["db_sessions"]() as db:
        (d,) = db.query(Delivery).filter_by(broadcast_id=bc["id"]).all()
        return d.command_id


def alerts_of(s, kind):
    return s.ok("GET", f"/api/v1/alerts?kind={kind}")["alerts"]


def test_a_broadcast_never_reported_is_a_missed_slot_after_its_grace(station):
    s, node, b = station["s"], station["node"], station["bulletin"]
    clock, dispatcher = station["clock"], station["dispatcher"]
    cmd_id = one_off(station)
    dispatcher.evaluate_alerts()
    assert alerts_of(s, "slot_missed") == []  # pending: its end and grace not yet past

    clock.forward(minutes=3)
    state(bridge_of(s), node["id"], True, clock)  # still online, just silent about it
    assert dispatcher.evaluate_alerts() == 1
    [alert] = alerts_of(s, "slot_missed")
    assert alert["node_id"] == node["id"] and alert["count"] == 1
    assert alert["detail"]["reason"] == "no_report"
    assert "thiết bị không báo đã phát" in alert["text"]

    played(s, node["id"], b["sha256"], NOW, b["duration_ms"], cmd_id=cmd_id)  # late, but aired
    clock.forward(seconds=30)
    dispatcher.evaluate_alerts()
    [alert] = alerts_of(s, "slot_missed")
    assert alert["state"] == "resolved" and alert["resolved"]["automatic"]


def test_plays_that_keep_failing_for_their_media_raise_media_failing(station):
    s, node, b = station["s"], station["node"], station["bulletin"]
    dispatcher = station["dispatcher"]
    cmds = [one_off(station) for _ in range(3)]
    for cmd_id in cmds[:2]:
        played(s, node["id"], b["sha256"], NOW, None, result="failed",
               reason="media_unavailable", cmd_id=cmd_id)
    dispatcher.evaluate_alerts()
    assert alerts_of(s, "media_failing") == []
    played(s, node["id"], b["sha256"], NOW, None, result="failed", reason="media_unavailable",
           cmd_id=cmds[2])
    dispatcher.evaluate_alerts()
    [alert] = alerts_of(s, "media_failing")
    assert alert["count"] == 3 and alert["detail_class"] == "media_unavailable"
    assert alert["state"] == "open"

    later = one_off(station)  # the web server is back: this one downloads and plays
    played(s, node["id"], b["sha256"], NOW + dt.timedelta(seconds=5), b["duration_ms"],
           cmd_id=later)
    dispatcher.evaluate_alerts()
    [alert] = alerts_of(s, "media_failing")
    assert alert["state"] == "resolved"
