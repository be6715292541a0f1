"""A command the broker took can still be lost (a broker that dies before its autosave loses
what it held for a node that was away): the dispatcher sends the same envelope again to a node
that came back after it went out and has not acked it, after ``command_resend_s``, until it is
acked or expires."""
from __future__ import annotations

from sqlalchemy import select, update

from schedules.dispatcher import Dispatcher
from server.keys import load_signing_key
from server.models import Command, Delivery, Node, now_ms
from tests.server.helpers import ward_with_a_node
from tests.transports import Recorder


def _resending(s) -> tuple[dict, dict, Dispatcher, Recorder, list[int]]:
    """A ward with one node, and a dispatcher over the app's database that records what it
    publishes, its clock now plus ``offset[0]`` ms: (ward, node, dispatcher, recorder, offset)."""
    w = ward_with_a_node(s, "HP-LC")
    offset = [0]
    kid, key = load_signing_key(s.settings.signing_key_file)
    transport = Recorder()
    d = Dispatcher(s.settings, s.app.extensions["db_sessions"], transport, key, kid,
                   clock=lambda: now_ms() + offset[0])
    return w["ward"], w["node"], d, transport, offset


def test_unacked_command_goes_again_to_an_online_node_until_acked_or_expired(app_only):
    s = app_only
    ward, node, d, transport, offset = _resending(s)
    sessions = s.app.extensions["db_sessions"]

    def set_node(**values):
        with sessions() as db:
            db.execute(update(Node).where(Node.id == node["id"]).values(**values))
            db.commit()

    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"],
                                                  "targets": {"areas": [ward["id"]]}})
    d.tick()
    [(topic, payload)] = [m for m in transport.sent if "/cmd" in m[0]]
    transport.sent.clear()
    set_node(desired_applied_version=Node.desired_version)  # it holds its desired state

    t0 = now_ms()

    def connected(at_offset):
        set_node(online=True, last_state={"v": 1, "online": True, "ts": t0 + at_offset})

    offset[0] = 40_000  # the node is away: its broker session holds it
    assert d.resend_unreceived() == 0
    offset[0] = 41_000
    connected(-5_000)  # online all along, only slow to ack: left alone
    assert d.resend_unreceived() == 0

    offset[0] = 50_000
    connected(45_000)  # back after the command went out, and no ack
    offset[0] = 51_000
    assert d.resend_unreceived() == 1
    assert transport.sent == [(topic, payload)]  # the same envelope, same id
    offset[0] = 51_500
    assert d.resend_unreceived() == 0  # looked for once a second at most
    offset[0] = 90_000
    assert d.resend_unreceived() == 0  # not connected again since: once is enough
    connected(91_000)
    offset[0] = 130_000
    assert d.resend_unreceived() == 1

    with sessions() as db:
        cmd = db.scalar(select(Command).where(Command.broadcast_id == bc["id"]))
        assert cmd.attempts == 3
        db.execute(update(Delivery).where(Delivery.broadcast_id == bc["id"])
                   .values(status="received"))
        db.commit()
    offset[0] = 200_000
    assert d.resend_unreceived() == 0  # acked: never again

    with sessions() as db:
        db.execute(update(Delivery).where(Delivery.broadcast_id == bc["id"]).values(status="sent"))
        db.commit()
    offset[0] = (s.settings.command_ttl_s + 10) * 1000
    assert d.resend_unreceived() == 0  # expired: never again


def test_desired_state_not_applied_goes_again_retained_to_a_node_back(app_only):
    s = app_only
    _ward, node, d, transport, offset = _resending(s)
    sessions = s.app.extensions["db_sessions"]
    d.tick()
    [(topic, payload, retain)] = [m for m in transport.published if "/desired" in m[0]]
    assert retain
    transport.sent.clear()
    with sessions() as db:
        db.execute(update(Node).where(Node.id == node["id"]).values(
            online=True, last_state={"v": 1, "online": True, "ts": now_ms() + 10_000}))
        db.commit()
    offset[0] = 40_000
    assert d.resend_unreceived() == 1
    assert transport.published[-1] == (topic, payload, True)
    with sessions() as db:
        db.execute(update(Node).where(Node.id == node["id"]).values(
            desired_applied_version=Node.desired_version,
            last_state={"v": 1, "online": True, "ts": now_ms() + 50_000}))
        db.commit()
    offset[0] = 80_000
    assert d.resend_unreceived() == 0  # applied: nothing to send
