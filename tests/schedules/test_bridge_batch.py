"""The bridge's worker writes many node messages in one transaction: what it records is the
same as one message at a time (duplicates stored once, refusals counted each), and a batch
that cannot be written whole is written message by message instead."""
import json
import uuid

from sqlalchemy import select

from server.bridge import Bridge, BridgeLimits
from server.models import Event, Node
from tests.transports import NoTransport

TS = 1764000000000


def _setup(app_only):
    ward = app_only.area("Phường Phú Hội", "PH", "ward")
    cluster = app_only.area("Cụm 1", "PH-1", "cluster", ward["id"])
    ids = [app_only.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                      "name": f"Loa {n}"})["id"]
           for n in "AB"]
    bridge = Bridge(app_only.app.extensions["db_sessions"], NoTransport(),
                    app_only.settings.topic_prefix, limits=BridgeLimits())
    return bridge, ids


def _msg(bridge, node_id, kind, payload):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"{bridge.prefix}/nodes/{node_id}/{kind}", raw


def _alarm(event_id):
    return {"v": 1, "id": event_id, "type": "alarm", "ts": TS, "code": "disk_low"}


def test_a_batch_stores_each_event_once_and_counts_every_refusal(app_only):
    bridge, (a, b) = _setup(app_only)
    first = str(uuid.uuid4())
    bridge.handle(*_msg(bridge, a, "events", _alarm(first)))  # stored before the batch
    again = str(uuid.uuid4())
    bridge.handle_batch([
        _msg(bridge, a, "events", _alarm(first)),
        _msg(bridge, a, "events", _alarm(again)),
        _msg(bridge, a, "events", _alarm(again)),
        _msg(bridge, b, "events", _alarm(again)),
        _msg(bridge, b, "events", b"not json"),
        _msg(bridge, b, "events", b"{"),
        _msg(bridge, b, "state", {"v": 1, "online": True}),
        _msg(bridge, "nobody", "state", {"v": 1, "online": True}),
    ])
    with app_only.app.extensions["db_sessions"]() as db:
        stored = sorted((e.node_id, e.event_id) for e in db.scalars(select(Event)))
        assert stored == sorted([(a, first), (a, again), (b, again)])
        node_b = db.get(Node, b)
        assert node_b.rejected_messages == 2 and node_b.last_rejected_reason == "malformed"
        assert node_b.online is True
        assert db.get(Node, a).rejected_messages == 0


def test_the_worker_writes_what_the_transport_hands_it(app_only):
    """... and confirms each message to the broker only once it is written (a dispatcher killed
    before that gets it again on its session's next connection)."""
    bridge, (a, _) = _setup(app_only)
    sessions = app_only.app.extensions["db_sessions"]
    confirmed: list[tuple[str, bool]] = []

    class Transport:
        def subscribe(self, topic, handler, qos=1, *, acks=False):
            assert acks
            self.handler = handler

    def done_for(event_id):
        def done():
            with sessions() as db:
                stored = db.scalar(select(Event.id).where(Event.event_id == event_id))
            confirmed.append((event_id, stored is not None))
        return done
    bridge.transport = transport = Transport()
    bridge.start()
    ids = [str(uuid.uuid4()) for _ in range(50)]
    for event_id in ids:
        transport.handler(*_msg(bridge, a, "events", _alarm(event_id)), done_for(event_id))
    bridge.stop()  # writes what is queued before it returns
    assert sorted(confirmed) == sorted((event_id, True) for event_id in ids)
    with sessions() as db:
        assert sorted(db.scalars(select(Event.event_id))) == sorted(ids)


def test_a_batch_of_redelivered_events_is_written_whole_not_one_by_one(app_only, caplog):
    """The batch looks up which (node, event id) pairs are stored before it writes: events a
    node sends again after a reconnect are skipped in the one transaction, and an id stored
    for one node is not taken for another's (without the look, the batch's insert fails on
    the unique pair and every message is written again on its own)."""
    bridge, (a, b) = _setup(app_only)
    sent = [str(uuid.uuid4()) for _ in range(1100)]  # looked up in several queries
    bridge.handle_batch([_msg(bridge, a, "events", _alarm(e)) for e in sent])
    new = [str(uuid.uuid4()) for _ in range(5)]
    caplog.set_level("DEBUG", logger="server.bridge")
    bridge.handle_batch([_msg(bridge, a, "events", _alarm(e)) for e in sent + new]
                        + [_msg(bridge, b, "events", _alarm(sent[0]))])
    assert not [r for r in caplog.records if "one by one" in r.getMessage()]
    with app_only.app.extensions["db_sessions"]() as db:
        stored = sorted((e.node_id, e.event_id) for e in db.scalars(select(Event)))
    assert stored == sorted([(a, e) for e in sent + new] + [(b, sent[0])])
