"""Helpers the server tests share (tests/e2e's broker versions of them too): the dispatcher over
an in-process app's database at a test clock (its broker connections: tests/transports.py); the
bridge hearing a node; a ward with staff and approvers; an approved bulletin; a recorded tone;
the statements a request runs; a zone where it is noon."""
from __future__ import annotations

import datetime as dt
import json
import subprocess

from sqlalchemy import event, update

from schedules.dispatcher import Dispatcher
from server.bridge import Bridge, BridgeLimits
from server.cli import main as cli
from server.keys import load_signing_key
from server.models import Node, from_ms, now_ms
from tests.transports import NoTransport, OnBroker

PASSWORD = "mat-khau-123"
TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone


class Clock:
    def __init__(self):
        self.ms = now_ms()

    def __call__(self) -> int:
        return self.ms

    def forward(self, **delta) -> None:
        self.ms += int(dt.timedelta(**delta).total_seconds() * 1000)


def make_dispatcher(s, clock: Clock) -> Dispatcher:
    kid, key = load_signing_key(s.settings.signing_key_file)
    return Dispatcher(s.settings, s.app.extensions["db_sessions"], OnBroker(), key, kid,
                      clock=clock)


def desired_pass(s) -> None:
    """The dispatcher's desired-state pass over the app's database (no broker here)."""
    kid, key = load_signing_key(s.settings.signing_key_file)
    Dispatcher(s.settings, s.app.extensions["db_sessions"], NoTransport(), key,
               kid).refresh_desired()


def bridge_of(s) -> Bridge:
    return Bridge(s.app.extensions["db_sessions"], NoTransport(), s.settings.topic_prefix,
                  limits=BridgeLimits())


def state(bridge: Bridge, node_id: str, online: bool, clock: Clock) -> None:
    """What the node's agent says on connecting, or its Last Will when its link drops, heard
    by the bridge at the test clock's time (the bridge stamps the wall clock's)."""
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/state",
                  json.dumps({"v": 1, "online": online}).encode())
    with bridge.sessions() as db:
        db.execute(update(Node).where(Node.id == node_id).values(last_seen=from_ms(clock.ms)))
        db.commit()


def node_ids(s, area_id: int) -> list[str]:
    return [n["id"] for n in s.ok("GET", f"/api/v1/nodes?area={area_id}")["nodes"]]


def make_two_wards(s) -> dict:
    """Two wards of a province, a node in each, and a ward approver and technician of the
    first ("mine")."""
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    mine = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    mine_cluster = s.area("Cụm 1", "HP-LC-1", "cluster", mine["id"])
    other = s.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    other_cluster = s.area("Cụm 2", "HP-NQ-1", "cluster", other["id"])
    for cluster in (mine_cluster, other_cluster):
        s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    for name, role in (("canbo-lc", "approver"), ("kythuat-lc", "technician")):
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    "mat-khau-123", "--area-id", str(mine["id"])]) == 0
    return {"mine": mine, "other": other, "mine_cluster": mine_cluster,
            "other_cluster": other_cluster,
            "approver": s.login("canbo-lc", "mat-khau-123"),
            "technician": s.login("kythuat-lc", "mat-khau-123")}


def db(s):
    return s.app.extensions["db_sessions"]()


def ward_with_a_node(s, code: str = "LC") -> dict:
    """A ward (Lê Chân) with one cluster and one node in it: its "s", "ward", "cluster", "node"."""
    ward = s.area("Phường Lê Chân", code, "ward")
    cluster = s.area("Cụm 1", f"{code}-1", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    return {"s": s, "ward": ward, "cluster": cluster, "node": node}


def ward_with_users(s) -> dict:
    """A province with two wards, a node in each, and staff and approvers of both."""
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    ward = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = s.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
    other = s.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    other_cluster = s.area("Cụm 2", "HP-NQ-1", "cluster", other["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": other_cluster["id"], "name": "Loa 2"})
    users = {}
    for name, role, area in (("staff-lc", "staff", ward), ("approver-lc", "approver", ward),
                             ("approver2-lc", "approver", ward), ("staff-nq", "staff", other),
                             ("approver-nq", "approver", other)):
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    PASSWORD, "--area-id", str(area["id"])]) == 0
        users[name] = s.login(name, PASSWORD)
    return {"province": province, "ward": ward, "cluster": cluster, "other": other,
            "node": node, "tokens": users}


def approved(s, token=None, area_id=None, text="Ủy ban nhân dân phường thông báo lịch họp.",
             approver=None):
    kw = {"token": token} if token else {}
    b = s.ok("POST", "/api/v1/bulletins", json={"title": "Họp", "text": text,
                                                "category": "other", "area_id": area_id}, **kw)
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit", **kw)
    return s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve",
                **({"token": approver} if approver else kw))


def later(seconds: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def wav(tmp_path, volume_db: float) -> bytes:
    """A 3 s stereo tone at ``volume_db``, as a WAV file's bytes (ffmpeg)."""
    out = tmp_path / f"tone{volume_db}.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=3", "-af", f"volume={volume_db}dB", "-ac", "2",
                    str(out)], check=True)
    return out.read_bytes()


def noon_zone() -> str:
    """A zone where it is now about noon, so "later today" has hours left whenever this runs."""
    offset = 12 - dt.datetime.now(dt.UTC).hour  # -11 .. +12 hours from UTC
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-5 is UTC+5


class Statements:
    """The SQL statements the app's engine runs while the block runs."""

    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def _record(self, conn, cursor, statement, *args):
        self.seen.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)
