"""What a ward's programme survives, over the real stack (Mosquitto, dispatcher and bridge, real
agent processes with a file sink): the broker gone across two slots, the broker killed during a
broadcast, the dispatcher stopped across a due time, an emergency cutting into a normal
broadcast, and a broker crash losing what it held for a node that was away (a command, a
retained desired state). Each ends with every node playing once, and the server told once.

Every wait is on a condition with a deadline."""
import datetime as dt
import time

from sqlalchemy import select

from schedules.slots import slot_id
from server.models import Command, PlayLog
from tests.system import played_events

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
SHORT = "Thông báo."
LONG = ("Ủy ban nhân dân phường Lê Chân thông báo: ngày mai, thứ bảy, từ bảy giờ sáng đến "
        "năm giờ chiều, tạm ngưng cung cấp điện để sửa chữa đường dây. Đề nghị bà con chủ động "
        "sắp xếp công việc. Xin cảm ơn bà con đã lắng nghe.")


def _plays(sink, bc) -> list[dict]:
    return [p for p in played_events(sink) if p["item_id"] == f"bc-{bc['id']}"]


def _playlogs(s, **where) -> list[dict]:
    return [p for p in s.ok("GET", "/api/v1/playlogs")["playlogs"]
            if all(p[k] == v for k, v in where.items())]


def _db_rows(s, query):
    with s.app.extensions["db_sessions"]() as db:
        return db.scalars(query).all()


def _ward_with_nodes(s, count: int, provisioned: dict | None = None):
    """A ward with ``count`` nodes whose agents run; ``provisioned`` gets what provisioning
    answered for each (to start an agent again)."""
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    nodes = [s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                  "name": f"Loa {i}"}) for i in range(count)]
    if provisioned is not None:
        provisioned.update((n["id"], n) for n in nodes)
    sinks = {n["id"]: s.start_agent(n)[1] for n in nodes}
    s.wait(lambda: all(s.ok("GET", f"/api/v1/nodes/{n}")["online"] for n in sinks),
           what="agents online")
    return ward, sinks


def _broadcast(s, bulletin, ward, **fields) -> dict:
    return s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin["id"], "targets": {"areas": [ward["id"]]}, **fields})


def _report(s, bc) -> dict:
    return s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")


def _statuses(s, bc) -> list[str]:
    """Each node's delivery status (none before the dispatcher has made the deliveries)."""
    return [n["status"] for n in _report(s, bc)["nodes"]]


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def test_node_without_broker_plays_two_slots_from_cache_and_reports_each_once(system, broker):
    s = system
    ward, sinks = _ward_with_nodes(s, 1)
    (node_id, sink), = sinks.items()
    b = s.approved_bulletin("Bản tin buổi sáng", SHORT)
    # two series whose first occurrences are a few seconds apart stand for two slots of a day
    first = (dt.datetime.now(TZ) + dt.timedelta(seconds=12)).replace(microsecond=0)
    second = first + dt.timedelta(seconds=5)
    series = [_broadcast(s, b, ward, recurrence="FREQ=DAILY", start_at=at.isoformat())
              for at in (first, second)]
    slots = [slot_id(bc["id"], at) for bc, at in zip(series, (first, second), strict=True)]

    def holds_both():
        d = s.ok("GET", f"/api/v1/nodes/{node_id}/desired")
        held = {e["slot_id"] for e in (d["body"] or {}).get("schedule", [])}
        return set(slots) <= held and d["desired_applied"] == d["version"]
    s.wait(holds_both, timeout=first.timestamp() - time.time() - 3, what="node holds both slots")
    # the link goes down just before the first slot (so the agent's reconnect backoff, which
    # doubles while the broker is away, stays short) and comes back after the second
    s.wait(lambda: time.time() > first.timestamp() - 2, timeout=15, what="just before the slot")
    broker.process.stop()
    for bc, at in zip(series, (first, second), strict=True):
        (play,) = s.wait(lambda bc=bc: _plays(sink, bc),
                         timeout=at.timestamp() - time.time() + 10,
                         what=f"slot at {at} played offline")
        assert play["result"] == "completed" and play["sha256"] == b["sha256"]
        assert abs(play["started_at"] - _ms(at)) < 1500, (play, at)
    assert _playlogs(s, node_id=node_id) == []  # the server could not have heard of it yet

    broker.process.start()
    logs = s.wait(lambda: len(r := _playlogs(s, node_id=node_id)) >= 2 and r, timeout=30,
                  what="both played events at the server after the broker came back")
    assert sorted(p["slot_id"] for p in logs) == sorted(slots)
    for log, at in zip(sorted(logs, key=lambda p: p["started_at"]), (first, second), strict=True):
        assert log["result"] == "completed" and log["sha256"] == b["sha256"]
        started = dt.datetime.fromisoformat(log["started_at"].replace("Z", "+00:00"))
        assert abs(started - at) < dt.timedelta(seconds=1.5), (started, at)
    assert [len(_plays(sink, bc)) for bc in series] == [1, 1]
    assert s.ok("GET", f"/api/v1/nodes/{node_id}")["rejected"]["messages"] == 0


def test_broker_killed_during_a_broadcast_loses_nothing_and_duplicates_nothing(system, broker):
    s = system
    ward, sinks = _ward_with_nodes(s, 3)
    b = s.approved_bulletin("Thông báo cắt điện", LONG)
    bc = _broadcast(s, b, ward, priority="normal")
    s.wait(lambda: "started" in _statuses(s, bc),
           what="the broadcast playing")

    broker.process.kill()  # no autosave, no goodbye: whatever it held in memory is gone
    broker.process.start()

    report = s.wait(lambda: (r := _report(s, bc))["summary"]["played"] == 3
                    and all(n["status"] == "finished" for n in r["nodes"]) and r,
                    timeout=60, what="every node played and finished")
    assert report["summary"] == {"total": 3, "sent": 3, "acked": 3, "played": 3, "failed": 0}
    logs = _db_rows(s, select(PlayLog).where(PlayLog.broadcast_id == bc["id"]))
    assert sorted(p.node_id for p in logs) == sorted(sinks)  # one row per node
    assert {p.result for p in logs} == {"completed"}
    for sink in sinks.values():
        assert [p["result"] for p in _plays(sink, bc)] == ["completed"]


def test_dispatcher_stopped_across_a_due_time_sends_it_once_after_restart(system):
    s = system
    ward, sinks = _ward_with_nodes(s, 1)
    (node_id, sink), = sinks.items()
    b = s.approved_bulletin("Thông báo", SHORT)

    s.stop_dispatcher()
    start = dt.datetime.now(TZ) + dt.timedelta(seconds=2)
    bc = _broadcast(s, b, ward, start_at=start.isoformat())
    # its due time (and its start) pass while no dispatcher runs, well within the late window
    s.wait(lambda: time.time() > start.timestamp() + 1, timeout=10, what="the start passed")
    assert _report(s, bc)["status"] == "scheduled"
    s.start_dispatcher()

    report = s.wait(lambda: _statuses(s, bc) == ["finished"]
                    and (r := _report(s, bc))["summary"]["played"] == 1 and r, timeout=30,
                    what="sent once after the restart and played")
    assert report["status"] == "dispatched"
    # a second restart finds nothing left to send
    s.stop_dispatcher()
    s.start_dispatcher()
    s.dispatcher.tick()
    (cmd,) = _db_rows(s, select(Command).where(Command.broadcast_id == bc["id"]))
    assert cmd.attempts == 1 and cmd.published_at is not None
    (log,) = _db_rows(s, select(PlayLog).where(PlayLog.broadcast_id == bc["id"]))
    assert log.result == "completed"
    assert [p["result"] for p in _plays(sink, bc)] == ["completed"]


def test_emergency_preempts_a_normal_broadcast_that_plays(system):
    s = system
    ward, sinks = _ward_with_nodes(s, 1)
    (node_id, sink), = sinks.items()
    normal_b = s.approved_bulletin("Thông báo cắt điện", LONG)
    urgent_b = s.approved_bulletin("Khẩn cấp", "Khẩn cấp: bão đổ bộ, bà con vào nơi an toàn.")
    normal = _broadcast(s, normal_b, ward, priority="normal")
    s.wait(lambda: _statuses(s, normal) == ["started"],
           what="the normal broadcast playing")

    urgent = _broadcast(s, urgent_b, ward, priority="emergency")
    s.wait(lambda: _statuses(s, urgent) == ["finished"]
           and _report(s, urgent)["summary"]["played"] == 1, timeout=30,
           what="the emergency played")
    (delivery,) = s.wait(lambda: _statuses(s, normal) == ["preempted"]
                         and _report(s, normal)["nodes"], what="the normal one preempted")
    assert delivery["played"] == "preempted"

    (log,) = _db_rows(s, select(PlayLog).where(PlayLog.broadcast_id == normal["id"]))
    assert log.result == "preempted"
    (log,) = _db_rows(s, select(PlayLog).where(PlayLog.broadcast_id == urgent["id"]))
    assert log.result == "completed"
    assert [p["result"] for p in _plays(sink, normal)] == ["preempted"]
    assert [p["result"] for p in _plays(sink, urgent)] == ["completed"]
    # the emergency began while the normal one played, and the normal one did not resume
    (cut,), (alarm,) = _plays(sink, normal), _plays(sink, urgent)
    assert cut["started_at"] < alarm["started_at"] and cut["ended_at"] <= alarm["started_at"] + 1000


def test_command_queued_for_an_offline_node_survives_a_broker_crash(system, broker):
    """The broker keeps a command for a node that is away in memory; a crash before its next
    autosave loses it. The command still reaches the node when it comes back."""
    s = system
    s.settings.command_resend_s = 3  # 30 by default: what a node has not acked goes again
    provisioned: dict = {}
    ward, sinks = _ward_with_nodes(s, 2, provisioned)
    away = sorted(sinks)[0]
    agents = dict(zip(sinks, s.agents, strict=True))
    agents[away].terminate()  # a clean stop: its session (and queue) stay at the broker
    agents[away].wait(10)
    s.wait(lambda: not s.ok("GET", f"/api/v1/nodes/{away}")["online"], what="node away")
    b = s.approved_bulletin("Thông báo", SHORT)
    bc = _broadcast(s, b, ward, priority="normal")
    s.wait(lambda: sorted(_statuses(s, bc)) == ["finished", "sent"], timeout=30,
           what="played where online, queued for the node away")

    broker.process.kill()
    broker.process.start()
    s.start_agent(provisioned[away])
    report = s.wait(lambda: (r := _report(s, bc))["summary"]["played"] == 2 and r, timeout=40,
                    what="the node back plays it too")
    # the agent sends an item's played event before its final ack, so the delivery's
    # `finished` may be stored a batch after the report counts it played
    s.wait(lambda: _statuses(s, bc) == ["finished", "finished"], timeout=10,
           what=f"both deliveries finished: {report}")
    for sink in sinks.values():
        assert [p["result"] for p in _plays(sink, bc)] == ["completed"]


def test_desired_state_lost_in_a_broker_crash_reaches_a_node_that_connects_later(system, broker):
    """A node's desired state is a retained message: a broker crash before its autosave loses
    it. A node first powered on after that still gets its schedule."""
    s = system
    s.settings.command_resend_s = 3
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa mới"})
    s.wait(lambda: _db_rows(s, select(Command).where(
        Command.node_id == node["id"], Command.type == "desired",
        Command.published_at.is_not(None))), what="its desired state published")

    broker.process.kill()
    broker.process.start()
    s.start_agent(node)
    d = s.wait(lambda: (r := s.ok("GET", f"/api/v1/nodes/{node['id']}/desired"))
               ["desired_applied"] == r["version"] and r, timeout=30,
               what="the node applied its desired state")
    assert d["version"] >= 1
