"""Faults on a speaker node itself (issue 10, Faults), with the real agent process, broker,
dispatcher and bridge: the disk where the node keeps its state and media filling up, and the
node's clock jumping. Each shows what a ward would notice: nothing lost, nothing played twice,
nothing played at a wrong time, and an alarm at the server where a person must act.

The disk is a tmpfs of its own (mounted by the test, root only: skipped with the reason where
mount is refused); the clock is moved under the running agent with libfaketime (Debian's
``faketime``, scripts/install-deps.sh), the monotonic clock left real as a stepped wall clock
leaves it."""
from __future__ import annotations

import datetime as dt
import glob
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from schedules.slots import slot_id
from server.models import Event, PlayLog
from tests.system import AGENT_STOP_S, System, played_events

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
ON_TIME_MS = 1500
DISK_MB = 260  # above the agent's disk_low threshold (200 MB) when empty


def _db(s: System, query) -> list:
    with s.app.extensions["db_sessions"]() as db:
        return list(db.scalars(query).all())


def _node(s: System) -> dict:
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    node["ward"] = ward
    return node


def _plan(s: System, node: dict, starts: list[dt.datetime]) -> tuple[dict, list[tuple]]:
    """A daily series per start (its first occurrence a slot of today) and the node holding
    them all: [(slot id, start, item id)]."""
    b = s.approved_bulletin("Bản tin", "Thông báo.")
    series = [s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [node["ward"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": at.isoformat()}) for at in starts]
    slots = [(slot_id(bc["id"], at), at, f"bc-{bc['id']}")
             for bc, at in zip(series, starts, strict=True)]

    def holds():
        d = s.ok("GET", f"/api/v1/nodes/{node['id']}/desired")
        held = {e["slot_id"] for e in (d["body"] or {}).get("schedule", [])}
        return {sid for sid, _, _ in slots} <= held and d["desired_applied"] == d["version"]
    s.wait(holds, timeout=starts[0].timestamp() - time.time() - 2, what="the node holds the slots")
    return b, slots


def _plays(sink: Path, item: str) -> list[dict]:
    return [p for p in played_events(sink) if p["item_id"] == item]


def _alarms(s: System, node_id: str, code: str) -> list[Event]:
    return [e for e in _db(s, select(Event).where(Event.node_id == node_id,
                                                  Event.type == "alarm"))
            if e.payload.get("code") == code]


def _step_s(alarm: Event) -> int:
    """The seconds a ``clock_jump`` alarm says the clock stepped."""
    match = re.search(r"by (\d+) s", alarm.payload["detail"])
    assert match, f"no offset in the alarm's detail: {alarm.payload['detail']!r}"
    return int(match.group(1))


def _at(when: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(when, TZ).replace(microsecond=0)


def _until(s: System, when: float, what: str) -> None:
    s.wait(lambda: time.time() >= when, timeout=max(1.0, when - time.time() + 5), what=what)


# --- disk full ------------------------------------------------------------------------------------

def _fill(folder: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:  # the last partial megabyte
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_on_a_node_raises_an_alarm_keeps_playing_and_recovers(system, tmp_path):
    s = system
    disk = tmp_path / "node-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs",
                              str(disk)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        node = _node(s)
        proc, sink = s.start_agent(node, state_dir=disk / "state")
        s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="online")
        now = time.time()
        b, slots = _plan(s, node, [_at(now + 20), _at(now + 40)])
        (full_slot, full_at, full_item), (back_slot, back_at, back_item) = slots
        assert _alarms(s, node["id"], "disk_low") == []

        filler = _fill(disk)
        alarm, = s.wait(lambda: _alarms(s, node["id"], "disk_low"), timeout=20,
                        what="the disk_low alarm at the server")
        assert "MB free" in alarm.payload["detail"]

        # what is cached plays on a full disk, on time
        play, = s.wait(lambda: _plays(sink, full_item), timeout=full_at.timestamp()
                       - time.time() + 10, what="the slot played on a full disk")
        assert play["result"] == "completed" and play["sha256"] == b["sha256"]
        assert abs(play["started_at"] - full_at.timestamp() * 1000) < ON_TIME_MS

        filler.unlink()  # space returns
        play, = s.wait(lambda: _plays(sink, back_item), timeout=back_at.timestamp()
                       - time.time() + 10, what="the slot after the space returned")
        assert abs(play["started_at"] - back_at.timestamp() * 1000) < ON_TIME_MS
        logs = s.wait(lambda: len(r := _db(s, select(PlayLog).where(
            PlayLog.node_id == node["id"]))) >= 2 and r, timeout=30,
            what="both plays reported")
        assert sorted((p.slot_id, p.result) for p in logs) == sorted(
            [(full_slot, "completed"), (back_slot, "completed")])
        s.wait(lambda: (s.ok("GET", f"/api/v1/nodes/{node['id']}")["telemetry"] or {})
               .get("disk_free_mb", 0) >= 200, timeout=20, what="telemetry: space back")
        assert len(_alarms(s, node["id"], "disk_low")) == 1  # once per episode

        proc.terminate()
        assert proc.wait(AGENT_STOP_S) == 0
        state = sqlite3.connect(disk / "state" / "agent.sqlite")
        try:
            assert state.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            done = {r[0] for r in state.execute("SELECT slot_id FROM slot_done")}
        finally:
            state.close()
        assert {full_slot, back_slot} <= done  # a restart plays neither again
        for item in (full_item, back_item):
            assert len(_plays(sink, item)) == 1
    finally:
        for proc in s.agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


# --- the clock jumping ---------------------------------------------------------------------------

def _faketime_lib() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
                   + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (Debian: faketime; "
                    "WITH_CHROMIUM=1 scripts/install-deps.sh installs it)")
    return found[0]


def test_a_nodes_clock_jumping_plays_nothing_twice_nor_early_and_raises_an_alarm(system,
                                                                                  tmp_path):
    """The node's wall clock steps back 5 minutes after a slot played, then forward again
    across that slot's time (it must not play again), then 2 hours forward before the next
    slot (its time then lies 2 hours past: skipped as late, not played 2 hours early), then
    back to the true time. Every step is a ``clock_jump`` alarm at the server."""
    s = system
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": _faketime_lib(), "FAKETIME_TIMESTAMP_FILE": str(offset),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    node = _node(s)
    proc, sink = s.start_agent(node, env=env)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="online")
    now = time.time()
    b, slots = _plan(s, node, [_at(now + 15), _at(now + 50)])
    (a_slot, a_at, a_item), (b_slot, b_at, b_item) = slots
    a_ms = a_at.timestamp() * 1000

    play, = s.wait(lambda: _plays(sink, a_item), timeout=a_at.timestamp() - time.time() + 10,
                   what="the first slot played")
    assert abs(play["started_at"] - a_ms) < ON_TIME_MS

    def jumped(count: int) -> list[Event]:
        return s.wait(lambda: len(r := _alarms(s, node["id"], "clock_jump")) >= count and r,
                      timeout=15, what=f"clock_jump alarm {count} at the server")

    offset.write_text("-5m\n")                       # back 5 minutes
    assert 295 <= _step_s(jumped(1)[0]) <= 305
    offset.write_text("-10s\n")                      # forward again, to just before the slot
    jumped(2)
    _until(s, a_at.timestamp() + 10 + 4, "the node's clock past the slot a second time")
    assert len(_plays(sink, a_item)) == 1

    _until(s, b_at.timestamp() - 20, "20 s before the second slot")
    offset.write_text("+2h\n")                       # 2 hours forward
    jumped(3)
    _until(s, b_at.timestamp() + 3, "the second slot's true time")
    offset.write_text("+0\n")                        # and back to the true time
    alarms = jumped(4)
    _until(s, b_at.timestamp() + 8, "after the second slot's true time")
    assert _plays(sink, b_item) == []               # never played at a wrong time

    logs = s.wait(lambda: len(r := _db(s, select(PlayLog).where(
        PlayLog.node_id == node["id"]))) >= 2 and r, timeout=30, what="both slots reported")
    assert sorted((p.slot_id, p.result, p.reason) for p in logs) == sorted(
        [(a_slot, "completed", None), (b_slot, "skipped", "late")])
    details = [a.payload["detail"] for a in sorted(alarms, key=lambda e: e.id)]
    assert len(alarms) == 4 and len({a.event_id for a in alarms}) == 4, details
    assert ["forward" in d for d in details] == [False, True, True, False], details
    assert len(_plays(sink, a_item)) == 1 and proc.poll() is None
