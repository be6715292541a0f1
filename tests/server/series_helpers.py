"""Helpers of the recurring broadcasts' tests (test_recurring_broadcasts.py, and the programmes,
schedule changes and area time zones built on series): a ward with a node and an approved
bulletin, a daily series, the dispatcher's desired-state pass at a chosen time, a node's
desired state, and its ``played`` event for a slot."""
from __future__ import annotations

import datetime as dt
import json
import uuid

from schedules.dispatcher import Dispatcher
from server.bridge import Bridge
from server.keys import load_signing_key
from tests.server.helpers import TZ, ward_with_a_node
from tests.transports import NoTransport


def ward_with_a_bulletin(s) -> dict:
    """A ward with one cluster and node, and an approved bulletin: its "s", "ward", "cluster",
    "node", "bulletin" (the ``ward`` the series helpers take)."""
    return {**ward_with_a_node(s), "bulletin": s.approved_bulletin()}


def prepared_ward(s) -> dict:
    """``ward_with_a_bulletin`` but its "s", for a module's ``PREPARED`` (tests/server/conftest.py):
    made once in an instance that each test copies; its fixture adds the test's app as "s"."""
    return {k: v for k, v in ward_with_a_bulletin(s).items() if k != "s"}


def tomorrow_at(hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(TZ).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, minute), TZ)


def series(w, rule="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", start=None, **extra):
    start = start or tomorrow_at(6)
    return w["s"].call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": w["bulletin"]["id"], "targets": {"areas": [w["ward"]["id"]]},
        "recurrence": rule, "start_at": start.isoformat(), **extra})


def dispatcher(s, at: dt.datetime):
    """The dispatcher over the app's database, its clock at ``at``; only its desired-state pass
    runs here (nothing is published: there is no broker)."""
    kid, key = load_signing_key(s.settings.signing_key_file)
    return Dispatcher(s.settings, s.app.extensions["db_sessions"], NoTransport(), key, kid,
                      clock=lambda: int(at.timestamp() * 1000))


def desired(s, node_id):
    return s.ok("GET", f"/api/v1/nodes/{node_id}/desired")


def played(s, node_id, slot, sha256, result="completed"):
    """A node's ``played`` event for a desired-state slot, through the bridge."""
    bridge = Bridge(s.app.extensions["db_sessions"], NoTransport(), s.settings.topic_prefix,
                    tz=s.settings.timezone)
    ms = int(tomorrow_at(6).timestamp() * 1000)
    bridge.handle(f"{s.settings.topic_prefix}/nodes/{node_id}/events", json.dumps({
        "v": 1, "id": str(uuid.uuid4()), "type": "played", "ts": ms, "item_id": "bc-x",
        "slot_id": slot, "sha256": sha256, "scheduled_at": ms, "started_at": ms,
        "ended_at": ms + 1000, "result": result}).encode())


def playlogs(s, node_id):
    return s.ok("GET", f"/api/v1/playlogs?node={node_id}")["playlogs"]
