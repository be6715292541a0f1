"""Alerts through the dispatcher's pass and the API: raised from what the bridge recorded (the
clock run forward), seen only in the caller's areas, acknowledged and resolved by a technician
with who and when (audited), never-connected nodes listed apart, and a technician's
maintenance window set through the node API."""
from __future__ import annotations

import datetime as dt

from server.cli import main as cli
from tests.server.helpers import Clock, bridge_of, make_dispatcher, node_ids, state

PASSWORD = "mat-khau-123"


def _setup(app_only, wards):
    s = app_only
    bridge = bridge_of(s)
    mine = node_ids(s, wards["mine"]["id"])[0]
    other = node_ids(s, wards["other"]["id"])[0]
    clock = Clock()
    for node_id in (mine, other):
        state(bridge, node_id, True, clock)
        state(bridge, node_id, False, clock)
    dispatcher = make_dispatcher(s, clock)
    assert dispatcher.evaluate_alerts() == 0  # just gone: within the hold-off
    clock.forward(minutes=6)
    assert dispatcher.evaluate_alerts() == 2
    return s, dispatcher, clock, bridge, mine, other


def alerts_of(s, token="default", query=""):
    return s.ok("GET", f"/api/v1/alerts{query}", token=token)["alerts"]


def test_a_node_offline_past_the_hold_off_raises_one_alert_seen_in_its_area_only(app_only,
                                                                               wards):
    s, dispatcher, clock, _bridge, mine, other = _setup(app_only, wards)
    everything = alerts_of(s)
    assert sorted(a["node_id"] for a in everything) == sorted([mine, other])
    [seen] = alerts_of(s, wards["technician"])
    assert seen["node_id"] == mine and seen["kind"] == "node_offline"
    assert seen["state"] == "open" and seen["severity"] == "warning"
    assert seen["kind_text"] == "Thiết bị mất kết nối" and seen["text"].startswith("Mất kết nối")
    assert seen["area_id"] == wards["mine_cluster"]["id"] and seen["acknowledged"] is None
    english = s.ok("GET", f"/api/v1/alerts/{seen['id']}?lang=en", token=wards["technician"])
    assert english["kind_text"] == "Node offline" and english["text"].startswith("Offline since")

    other_alert = next(a for a in everything if a["node_id"] == other)
    r = s.call("GET", f"/api/v1/alerts/{other_alert['id']}", token=wards["technician"])
    assert r.status_code == 404
    r = s.call("POST", f"/api/v1/alerts/{other_alert['id']}/ack", token=wards["technician"])
    assert r.status_code == 404

    clock.forward(minutes=5)
    assert dispatcher.evaluate_alerts() == 0  # found again: the same alerts, not new ones
    assert len(alerts_of(s)) == 2
    assert alerts_of(s, query=f"?node={mine}&kind=node_offline&state=open")[0]["id"] == seen["id"]
    assert alerts_of(s, query="?state=resolved") == []
    assert s.call("GET", "/api/v1/alerts?state=closed").status_code == 400
    assert s.call("GET", "/api/v1/alerts?kind=fire").status_code == 400


def test_a_technician_acknowledges_and_resolves_with_who_and_when(app_only, wards):
    s, dispatcher, clock, bridge, mine, _other = _setup(app_only, wards)
    [alert] = alerts_of(s, wards["technician"])
    # the ward's approver reads alerts but does not handle them
    r = s.call("POST", f"/api/v1/alerts/{alert['id']}/ack", token=wards["approver"])
    assert r.status_code == 403

    acked = s.ok("POST", f"/api/v1/alerts/{alert['id']}/ack", token=wards["technician"],
                 json={"comment": "Đang tới kiểm tra"})
    assert acked["state"] == "acknowledged"
    assert acked["acknowledged"]["by"] == "kythuat-lc"
    assert acked["acknowledged"]["comment"] == "Đang tới kiểm tra"
    assert acked["acknowledged"]["at"].endswith("Z")
    again = s.call("POST", f"/api/v1/alerts/{alert['id']}/ack", token=wards["technician"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "alert_state"

    resolved = s.ok("POST", f"/api/v1/alerts/{alert['id']}/resolve", token=wards["technician"])
    assert resolved["state"] == "resolved"
    assert resolved["resolved"]["by"] == "kythuat-lc" and not resolved["resolved"]["automatic"]
    assert s.call("POST", f"/api/v1/alerts/{alert['id']}/resolve",
                  token=wards["technician"]).status_code == 409

    actions = [(e["action"], e["actor"], e["target"]["id"])
               for e in s.ok("GET", "/api/v1/audit?action=alerts")["entries"]]
    assert actions == [("alerts.resolve", "kythuat-lc", str(alert["id"])),
                       ("alerts.ack", "kythuat-lc", str(alert["id"]))]

    # still offline: resolved by hand, it is not raised again until the node is back
    clock.forward(minutes=30)
    assert dispatcher.evaluate_alerts() == 0
    assert [a["state"] for a in alerts_of(s, wards["technician"])] == ["resolved"]
    state(bridge, mine, True, clock)
    assert dispatcher.evaluate_alerts() == 0
    state(bridge, mine, False, clock)
    clock.forward(minutes=6)
    assert dispatcher.evaluate_alerts() == 1  # only the node that came back and went again
    assert [a["state"] for a in alerts_of(s, wards["technician"])] == ["open", "resolved"]


def test_an_alert_resolves_itself_when_the_node_is_back(app_only, wards):
    s, dispatcher, clock, bridge, mine, _other = _setup(app_only, wards)
    state(bridge, mine, True, clock)
    clock.forward(seconds=30)
    dispatcher.evaluate_alerts()
    [alert] = alerts_of(s, wards["technician"])
    assert alert["state"] == "resolved" and alert["resolved"]["automatic"]
    assert alert["resolved"]["by"] is None


def test_nodes_never_connected_are_listed_apart_and_raise_no_alert(app_only, wards):
    s = app_only
    new = s.ok("POST", "/api/v1/nodes", json={"cluster_id": wards["mine_cluster"]["id"],
                                              "name": "Loa mới"})
    _s, dispatcher, clock, _bridge, mine, other = _setup(app_only, wards)
    never = s.ok("GET", "/api/v1/nodes?status=never_connected")["nodes"]
    assert new["id"] in [n["id"] for n in never]
    assert all(n["never_connected"] for n in never)
    assert not {mine, other} & {n["id"] for n in never}
    offline = {n["id"] for n in s.ok("GET", "/api/v1/nodes?status=offline")["nodes"]}
    assert offline == {mine, other}
    clock.forward(days=2)
    dispatcher.evaluate_alerts()
    assert new["id"] not in {a["node_id"] for a in alerts_of(s)}
    assert s.call("GET", "/api/v1/nodes?status=lost").status_code == 400


def test_a_technician_sets_a_maintenance_window_and_the_node_raises_nothing(app_only, wards):
    s = app_only
    bridge = bridge_of(s)
    mine = node_ids(s, wards["mine"]["id"])[0]
    clock = Clock()
    until = (dt.datetime.fromtimestamp(clock.ms / 1000, dt.UTC) + dt.timedelta(hours=2)) \
        .replace(microsecond=0)
    answer = s.ok("PATCH", f"/api/v1/nodes/{mine}", token=wards["technician"],
                  json={"maintenance_until": until.isoformat()})
    assert answer["maintenance_until"] == until.replace(tzinfo=None).isoformat() + "Z"
    assert [n["id"] for n in s.ok("GET", "/api/v1/nodes?status=maintenance")["nodes"]] == [mine]
    assert s.call("PATCH", f"/api/v1/nodes/{mine}", token=wards["approver"],
                  json={"maintenance_until": None}).status_code == 403
    far = (until + dt.timedelta(days=120)).isoformat()
    r = s.call("PATCH", f"/api/v1/nodes/{mine}", token=wards["technician"],
               json={"maintenance_until": far})
    assert r.status_code == 400 and "maintenance_until" in r.json()["error"]["message"]

    state(bridge, mine, True, clock)
    state(bridge, mine, False, clock)
    dispatcher = make_dispatcher(s, clock)
    clock.forward(minutes=90)
    assert dispatcher.evaluate_alerts() == 0
    clock.forward(minutes=31)  # the window is over, the node still away
    assert dispatcher.evaluate_alerts() == 1

    changes = [e for e in s.ok("GET", "/api/v1/audit?action=nodes.update")["entries"]
               if "maintenance_until" in e["detail"].get("changed", {})]
    assert changes and changes[0]["actor"] == "kythuat-lc"
    ended = s.ok("PATCH", f"/api/v1/nodes/{mine}", token=wards["technician"],
                 json={"maintenance_until": None})
    assert ended["maintenance_until"] is None


def test_a_viewer_reads_alerts_but_cannot_handle_them(app_only, wards):
    s, _dispatcher, _clock, _bridge, mine, _other = _setup(app_only, wards)
    assert cli(["--instance", str(s.instance), "user", "xem-lc", "--role", "viewer",
                "--password", PASSWORD, "--area-id", str(wards["mine"]["id"])]) == 0
    viewer = s.login("xem-lc", PASSWORD)
    [alert] = alerts_of(s, viewer)
    assert alert["node_id"] == mine
    r = s.call("POST", f"/api/v1/alerts/{alert['id']}/resolve", token=viewer)
    assert r.status_code == 403


def test_an_alerts_text_gives_its_times_in_the_zone_of_its_area(app_only, wards):
    from zoneinfo import ZoneInfo
    s, _dispatcher, _clock, _bridge, _mine, _other = _setup(app_only, wards)
    s.ok("PATCH", f"/api/v1/areas/{wards['mine']['id']}", json={"tz": "Europe/Berlin"})
    [alert] = alerts_of(s, wards["technician"])
    began = dt.datetime.fromisoformat(alert["first_seen"].replace("Z", "+00:00"))
    assert alert["text"] == "Mất kết nối từ " + began.astimezone(
        ZoneInfo("Europe/Berlin")).strftime("%H:%M %d/%m/%Y") + "."
    other = next(a for a in alerts_of(s) if a["area_id"] == wards["other_cluster"]["id"])
    assert began.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%H:%M") in other["text"]


def _offline_node_due_an_alert(s, wards):
    """A dispatcher whose next alert pass raises one alert (a node gone past the hold-off),
    and how many alerts are stored."""
    from sqlalchemy import func, select

    from server.models import Alert
    bridge = bridge_of(s)
    node = node_ids(s, wards["mine"]["id"])[0]
    clock = Clock()
    state(bridge, node, True, clock)
    state(bridge, node, False, clock)
    dispatcher = make_dispatcher(s, clock)
    clock.forward(minutes=6)

    def stored() -> int:
        with s.app.extensions["db_sessions"]() as db:
            return db.scalar(select(func.count()).select_from(Alert)) or 0
    return dispatcher, stored


def test_an_alert_pass_waits_while_node_messages_burst_in_then_runs(app_only, wards):
    # an emergency's 10,000 receipts come first: the pass (seconds of the interpreter the
    # bridge shares) starts once the bridge has caught up
    dispatcher, stored = _offline_node_due_an_alert(app_only, wards)
    seen: list[int] = []

    def busy() -> bool:  # behind for three looks, then caught up
        seen.append(stored())
        return len(seen) <= 3

    dispatcher.busy = busy
    dispatcher._alerts_job()
    assert seen == [0, 0, 0, 0]  # nothing raised while the burst lasted
    assert stored() == 1


def test_an_alert_pass_runs_after_its_wait_even_when_the_burst_does_not_end(app_only, wards,
                                                                            monkeypatch):
    import schedules.dispatcher
    monkeypatch.setattr(schedules.dispatcher, "PASS_YIELD_S", 0.3)
    dispatcher, stored = _offline_node_due_an_alert(app_only, wards)
    looks: list[int] = []

    def busy() -> bool:
        looks.append(1)
        return True  # always behind

    dispatcher.busy = busy
    dispatcher._alerts_job()
    assert len(looks) > 1 and stored() == 1
