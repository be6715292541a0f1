"""The broker's ACL, tested by what arrives (Mosquitto silently drops a denied PUBLISH)."""
import uuid

from server.mosquitto import bridge_accounts, password_hash
from tests.mqtt_helpers import Client, wait_until_accepted


def _node(broker, node, groups=()):
    password = uuid.uuid4().hex
    broker.add_node(node, password, groups)
    wait_until_accepted(broker.host, broker.port, node, password)
    c = Client(broker.host, broker.port, node, password, client_id=node)
    assert c.connect()
    return c


def _server(broker):
    c = Client(broker.host, broker.port, broker.server_user, broker.server_password)
    assert c.connect()
    return c


def test_wrong_password_is_refused(broker):
    broker.add_node("hp-01-a", "right-password")
    wait_until_accepted(broker.host, broker.port, "hp-01-a", "right-password")
    assert not Client(broker.host, broker.port, "hp-01-a", "wrong").connect()


def test_node_cannot_publish_to_another_nodes_topics(broker):
    a = _node(broker, "node-a")
    b = _node(broker, "node-b")
    server = _server(broker)
    server.subscribe(f"{broker.prefix}/#")
    for kind in ("events", "state", "telemetry", "cmd", "desired"):
        a.publish(f"{broker.prefix}/nodes/node-b/{kind}", {"forged": kind})
    # A write the ACL allows, sent after the forged ones: once it arrives, the others had their
    # chance.
    a.publish(f"{broker.prefix}/nodes/node-a/events", {"marker": True})
    assert server.wait_for(lambda t, v: t.endswith("node-a/events"), 5)
    assert not [m for m in server.messages if "/node-b/" in m[0]]
    for c in (a, b, server):
        c.close()


def test_node_cannot_read_another_nodes_topics_or_foreign_groups(broker):
    a = _node(broker, "node-a", groups=["ward-1"])
    _node(broker, "node-b", groups=["ward-2"]).close()
    a.subscribe(f"{broker.prefix}/nodes/node-b/cmd")
    a.subscribe(f"{broker.prefix}/nodes/node-b/events")
    a.subscribe(f"{broker.prefix}/groups/ward-2/cmd")
    a.subscribe(f"{broker.prefix}/nodes/node-a/cmd")
    a.subscribe(f"{broker.prefix}/groups/ward-1/cmd")
    server = _server(broker)
    server.publish(f"{broker.prefix}/nodes/node-b/cmd", {"for": "b"})
    server.publish(f"{broker.prefix}/groups/ward-2/cmd", {"for": "ward-2"})
    server.publish(f"{broker.prefix}/nodes/node-b/events", {"for": "b-events"})
    server.publish(f"{broker.prefix}/groups/ward-1/cmd", {"for": "ward-1"})
    server.publish(f"{broker.prefix}/nodes/node-a/cmd", {"for": "a"})
    assert a.wait_for(lambda t, v: v == {"for": "a"}, 5)
    assert a.wait_for(lambda t, v: v == {"for": "ward-1"}, 5)
    assert sorted(m[0] for m in a.messages) == [f"{broker.prefix}/groups/ward-1/cmd",
                                                f"{broker.prefix}/nodes/node-a/cmd"]
    a.close()
    server.close()


def test_a_bridge_worker_reads_node_reports_through_the_shared_group_and_nothing_else(broker):
    a = _node(broker, "node-a")
    [user] = bridge_accounts(broker.server_user, 1)
    password = uuid.uuid4().hex
    accounts = {**broker.accounts, user: password_hash(password),
                broker.server_user: password_hash(broker.server_password)}
    broker.files.write(accounts, broker.server_user, broker.nodes, bridge_workers=1)
    assert broker.files.reload()
    wait_until_accepted(broker.host, broker.port, user, password)
    worker = Client(broker.host, broker.port, user, password)
    assert worker.connect()
    worker.subscribe(f"$share/loa/{broker.prefix}/nodes/+/events")
    worker.subscribe(f"{broker.prefix}/nodes/node-a/cmd")
    a.subscribe(f"{broker.prefix}/nodes/node-a/cmd")
    worker.publish(f"{broker.prefix}/nodes/node-a/cmd", {"forged": True})
    server = _server(broker)
    server.publish(f"{broker.prefix}/nodes/node-a/cmd", {"for": "a"})
    a.publish(f"{broker.prefix}/nodes/node-a/events", {"event": 1})
    assert worker.wait_for(lambda t, v: v == {"event": 1}, 5)
    assert a.wait_for(lambda t, v: v == {"for": "a"}, 5)  # after the forged one: it had its turn
    assert [m[1] for m in a.messages] == [b'{"for": "a"}']
    assert [m[0] for m in worker.messages] == [f"{broker.prefix}/nodes/node-a/events"]
    for c in (a, worker, server):
        c.close()
