"""Two dispatcher processes on one database: the one holding the lease acts, the other takes
over within 30 s of the first being killed (kill -9) in the middle of a programme, and every
slot is played exactly once and reported to the server exactly once (real Mosquitto, two real
``python -m schedules`` processes on one SQLite file, one real agent process).

The lease is short here (6 s, renewed every second) so the test stays short; production's is
20 s, renewed every 5 s. Every wait is on a condition with a deadline."""
from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time

import pytest
from sqlalchemy import select

from schedules.slots import slot_id
from server.models import Command, Lease, PlayLog
from tests.system import System, played_events

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
TTL_S, RENEW_S = 6, 1
GAP_S = 6  # between one slot's start and the next


@pytest.fixture
def failover(tmp_path, broker):
    """The web (in-process, over HTTP) without a dispatcher of its own; the test runs
    ``python -m schedules`` processes on its instance (System.start_dispatcher_process)."""
    s = System(tmp_path, broker, start_dispatcher=False, lease_ttl_s=TTL_S,
               lease_renew_s=RENEW_S)
    yield s
    s.stop()  # stops the dispatcher processes it started too


def _holder(s) -> str | None:
    with s.app.extensions["db_sessions"]() as db:
        row = db.get(Lease, "dispatcher")
        return row.holder if row is not None and row.expires_at > dt.datetime.now(
            dt.UTC).replace(tzinfo=None) else None


def _holds(s, proc: subprocess.Popen) -> bool:
    return f":{proc.pid}:" in (_holder(s) or "")


def _db_rows(s, query):
    with s.app.extensions["db_sessions"]() as db:
        return db.scalars(query).all()


def test_standby_dispatcher_takes_over_a_killed_one_and_every_slot_plays_once(failover):
    s = failover
    first, first_log = s.start_dispatcher_process("a")
    # a process's start (imports, migrations) is slow on a busy machine: up to a minute
    s.wait(lambda: _holds(s, first), timeout=60, what="the first dispatcher holding the lease")
    second, second_log = s.start_dispatcher_process("b")
    s.wait(lambda: "running" in second_log.read_text(), timeout=60,
           what="the second dispatcher up, standing by")

    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    _agent, sink = s.start_agent(node)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], timeout=30,
           what="the agent online")
    assert _holds(s, first) and second.poll() is None  # one acts, the other still waits

    b = s.approved_bulletin("Bản tin", "Thông báo.")

    items: dict[str, str] = {}  # slot id: its series' item id, which the file sink names

    def series_at(at: dt.datetime) -> str:
        bc = s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": at.isoformat()})
        items[slot_id(bc["id"], at)] = f"bc-{bc['id']}"
        return slot_id(bc["id"], at)

    def holds(slots: list[str]) -> bool:
        d = s.ok("GET", f"/api/v1/nodes/{node['id']}/desired")
        held = {e["slot_id"] for e in (d["body"] or {}).get("schedule", [])}
        return set(slots) <= held and d["desired_applied"] == d["version"]

    def played(slot: str) -> list[dict]:
        return [p for p in played_events(sink) if p["item_id"] == items[slot]]

    # the programme: three slots GAP_S apart, planned while the first dispatcher acts
    start = (dt.datetime.now(TZ) + dt.timedelta(seconds=8)).replace(microsecond=0)
    times = [start + dt.timedelta(seconds=GAP_S * i) for i in range(3)]
    slots = [series_at(at) for at in times]
    s.wait(lambda: holds(slots), timeout=times[0].timestamp() - time.time() - 1,
           what="the node holding the programme")
    s.wait(lambda: played(slots[0]), timeout=times[0].timestamp() - time.time() + 10,
           what="the first slot played")

    first.send_signal(signal.SIGKILL)  # mid-programme: no goodbye, its lease left to expire
    first.wait(10)
    killed_at = time.monotonic()
    # a slot planned after the kill: only the dispatcher that takes over can send it
    late = dt.datetime.now(TZ).replace(microsecond=0) + dt.timedelta(seconds=TTL_S + 16)
    times.append(late)
    slots.append(series_at(late))

    s.wait(lambda: _holds(s, second), timeout=30, what="the standby taking the lease over")
    took_over_s = time.monotonic() - killed_at
    assert took_over_s < 30, took_over_s
    # the line follows the lease's commit, which _holds reads: a moment later, not before
    s.wait(lambda: "lease dispatcher acquired" in second_log.read_text(), timeout=5,
           what="the standby's log saying it acquired the lease")
    s.wait(lambda: holds(slots), timeout=late.timestamp() - time.time() - 1,
           what="the node holding the slot planned after the kill")

    for slot, at in zip(slots, times, strict=True):
        s.wait(lambda slot=slot: played(slot), timeout=at.timestamp() - time.time() + 10,
               what=f"slot at {at} played")
    logs = s.wait(lambda: len(r := _db_rows(s, select(PlayLog).where(
        PlayLog.node_id == node["id"]))) >= len(slots) and r, timeout=20,
        what="every played event at the server")

    # every slot played exactly once, on time, and the server told exactly once
    for slot, at in zip(slots, times, strict=True):
        (play,) = played(slot)
        assert play["result"] == "completed" and play["sha256"] == b["sha256"]
        assert abs(play["started_at"] - at.timestamp() * 1000) < 1500, (play, at)
    assert sorted(p.slot_id for p in logs) == sorted(slots)
    # the desired states: one command per version, each published once, none re-sent
    desired = _db_rows(s, select(Command).where(Command.node_id == node["id"],
                                                Command.type == "desired"))
    versions = [c.body["version"] for c in desired]
    assert len(versions) == len(set(versions))
    assert all(c.published_at is not None and c.attempts == 1 for c in desired)
    assert s.ok("GET", f"/api/v1/nodes/{node['id']}")["rejected"]["messages"] == 0
