"""Several bridge workers on a shared subscription record a node's messages in any order, and
a worker killed between its commit and its confirmation gets them again: what the server shows
is the same as one bridge recording them in the order the node sent them, once each (two
bridges over one real database, driven directly: SQLite, or PostgreSQL under `make
test-postgres`)."""
import json
import uuid

import pytest
from sqlalchemy import func, select

from server.bridge import Bridge, BridgeLimits
from server.models import Event, Node, Telemetry
from tests.transports import NoTransport

TS = 1764000000000


def msg(bridge, node_id, kind, payload):
    return f"{bridge.prefix}/nodes/{node_id}/{kind}", json.dumps(payload).encode()


def record(bridge, messages, batched):
    if batched:
        bridge.handle_batch(messages)
    else:
        for topic, payload in messages:
            bridge.handle(topic, payload)


def node_row(system, node_id) -> Node:
    with system.app.extensions["db_sessions"]() as db:
        return db.get(Node, node_id)


def count(system, model, node_id) -> int:
    with system.app.extensions["db_sessions"]() as db:
        return db.scalar(select(func.count()).select_from(model).where(model.node_id == node_id))


@pytest.fixture
def two_bridges(bridge_setup):
    """Two bridges over the same database, as two workers of a shared group are."""
    system, _, node_id = bridge_setup
    one, two = (Bridge(system.app.extensions["db_sessions"], NoTransport(),
                       system.settings.topic_prefix, limits=BridgeLimits(), shared_group="loa")
                for _ in range(2))
    return system, one, two, node_id


@pytest.mark.parametrize("batched", [False, True])
def test_older_telemetry_recorded_after_newer_leaves_the_newest_values(two_bridges, batched):
    system, one, two, node_id = two_bridges
    record(one, [msg(one, node_id, "telemetry", {"v": 1, "ts": TS + 30_000, "volume": 70})],
           batched)
    record(two, [msg(two, node_id, "telemetry", {"v": 1, "ts": TS, "volume": 40})], batched)
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["telemetry"]["volume"] == 70 and got["telemetry"]["ts"] == TS + 30_000
    assert count(system, Telemetry, node_id) == 2  # both kept in the history


@pytest.mark.parametrize("batched", [False, True])
def test_telemetry_sent_before_the_last_will_does_not_bring_the_node_back_online(
        two_bridges, batched):
    system, one, two, node_id = two_bridges
    record(one, [msg(one, node_id, "state", {"v": 1, "online": True, "ts": TS})], batched)
    # the node dropped: the broker publishes its Last Will (no time), recorded at once ...
    record(one, [msg(one, node_id, "state", {"v": 1, "online": False})], batched)
    # ... while another worker still held telemetry the node sent before it dropped
    record(two, [msg(two, node_id, "telemetry", {"v": 1, "ts": TS + 1000})], batched)
    assert system.ok("GET", f"/api/v1/nodes/{node_id}")["online"] is False
    # it comes back: a new online state, then telemetry after it
    last_state = node_row(system, node_id).last_state
    assert last_state is not None
    back = last_state["ts"] + 5000
    record(one, [msg(one, node_id, "state", {"v": 1, "online": True, "ts": back})], batched)
    record(two, [msg(two, node_id, "telemetry", {"v": 1, "ts": back + 1})], batched)
    assert system.ok("GET", f"/api/v1/nodes/{node_id}")["online"] is True


@pytest.mark.parametrize("batched", [False, True])
def test_telemetry_of_the_same_millisecond_as_a_stopping_nodes_offline_state_leaves_it_offline(
        two_bridges, batched):
    system, one, two, node_id = two_bridges
    record(one, [msg(one, node_id, "state", {"v": 1, "online": True, "ts": TS})], batched)
    # the node is told to stop: its offline state is the last thing it says; telemetry it read
    # in the same millisecond is recorded after it by another worker
    record(one, [msg(one, node_id, "state", {"v": 1, "online": False, "ts": TS + 1000})],
           batched)
    record(two, [msg(two, node_id, "telemetry", {"v": 1, "ts": TS + 1000, "volume": 55})],
           batched)
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["online"] is False
    assert got["telemetry"]["volume"] == 55  # its readings are kept all the same


@pytest.mark.parametrize("batched", [False, True])
def test_telemetry_delivered_again_is_stored_once(two_bridges, batched):
    system, one, two, node_id = two_bridges
    first = msg(one, node_id, "telemetry", {"v": 1, "ts": TS, "volume": 40})
    record(one, [first], batched)
    record(two, [first, first, msg(two, node_id, "telemetry", {"v": 1, "ts": TS + 1})],
           batched)
    assert count(system, Telemetry, node_id) == 2


@pytest.mark.parametrize("batched", [False, True])
def test_an_event_recorded_by_two_workers_is_stored_once(two_bridges, batched):
    system, one, two, node_id = two_bridges
    alarm = msg(one, node_id, "events", {"v": 1, "id": str(uuid.uuid4()), "type": "alarm",
                                         "ts": TS, "code": "disk_low"})
    record(one, [alarm], batched)
    record(two, [alarm], batched)
    assert count(system, Event, node_id) == 1
    assert system.ok("GET", f"/api/v1/nodes/{node_id}")["rejected"]["messages"] == 0


@pytest.mark.parametrize("batched", [False, True])
def test_an_ack_recorded_after_a_later_one_does_not_move_the_command_back(two_bridges, batched):
    system, one, two, node_id = two_bridges
    cmd = system.ok("POST", f"/api/v1/nodes/{node_id}/commands",
                    json={"type": "test", "body": {"kind": "tone"}})

    def ack(bridge, status, ts):
        return msg(bridge, node_id, "events", {"v": 1, "id": str(uuid.uuid4()), "type": "ack",
                                               "ts": ts, "cmd_id": cmd["id"], "status": status})
    record(one, [ack(one, "finished", TS + 2)], batched)
    record(two, [ack(two, "started", TS + 1), ack(two, "received", TS)], batched)
    assert system.ok("GET", f"/api/v1/commands/{cmd['id']}")["status"] == "finished"


@pytest.mark.sqlite  # the turns are SQLite's: PostgreSQL locks the batch's node rows instead
def test_a_workers_batch_waits_for_the_other_workers_turn_and_is_written_once_it_ends(
        two_bridges):
    import fcntl
    import os
    import threading
    system, _, two, node_id = two_bridges
    alarm = msg(two, node_id, "events", {"v": 1, "id": str(uuid.uuid4()), "type": "alarm",
                                         "ts": TS, "code": "disk_low"})
    from server.bridge import turn_file
    other = os.open(turn_file(system.app.extensions["db_engine"].url.database),
                    os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # another worker's batch is being written
        writer = threading.Thread(target=record, args=(two, [alarm, alarm], True))
        writer.start()
        writer.join(1.0)  # alone, the batch is written in milliseconds
        assert writer.is_alive() and count(system, Event, node_id) == 0
        fcntl.flock(other, fcntl.LOCK_UN)  # that batch is written: this worker's turn
        writer.join(30)
        assert not writer.is_alive() and count(system, Event, node_id) == 1
    finally:
        os.close(other)


def test_a_batch_holding_its_node_holds_back_another_workers_batch_of_it_not_rows_that_refer_to_it(
        two_bridges):
    """On PostgreSQL a worker's batch locks its nodes' rows until it commits: a second worker's
    batch of the same node waits for it (neither undoes what the other decided), but a row that
    only refers to the node (the dispatcher's delivery or command for it, another process's
    event or telemetry row: its foreign key) is written meanwhile, not after the batch."""
    import threading

    from sqlalchemy import text
    system, one, two, node_id = two_bridges
    if system.app.extensions["db_engine"].dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite's writer holds the whole database")
    inside, go_on = threading.Event(), threading.Event()

    def held(db, node, event):  # the first worker's batch stops half-way, its node locked
        inside.set()
        go_on.wait(30)

    one.events = {**one.events, "alarm": held}

    def alarm():
        return msg(one, node_id, "events", {"v": 1, "id": str(uuid.uuid4()), "type": "alarm",
                                             "ts": TS, "code": "disk_low"})
    first = threading.Thread(target=record, args=(one, [alarm(), alarm()], True))
    second = threading.Thread(target=record, args=(two, [alarm(), alarm()], True))
    first.start()
    try:
        assert inside.wait(10)
        second.start()
        second.join(1.0)  # alone, a batch is written in milliseconds
        assert second.is_alive() and count(system, Event, node_id) == 0
        with system.app.extensions["db_sessions"]() as db:
            db.execute(text("SET LOCAL lock_timeout = '2s'"))  # else an error, not a wait
            db.add(Telemetry(node_id=node_id, ts_ms=TS, payload={"v": 1, "ts": TS}))
            db.commit()
        assert count(system, Telemetry, node_id) == 1
    finally:
        go_on.set()
        first.join(30)
        if second.ident is not None:
            second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert count(system, Event, node_id) == 4
