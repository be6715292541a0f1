"""The broker ties each client id to its account and refuses oversized packets (real Mosquitto
with the config the project renders)."""
import json
import threading
import time
import uuid

from server.mosquitto import DEFAULT_MAX_PACKET
from tests.mqtt_helpers import Client, wait_until_accepted


def _node(broker, node):
    password = uuid.uuid4().hex
    broker.add_node(node, password)
    wait_until_accepted(broker.host, broker.port, node, password)
    return password


def _connect(broker, user, password, client_id, clean=True) -> tuple[Client, list]:
    """A connected client and the list its disconnections are recorded in."""
    c = Client(broker.host, broker.port, user, password, client_id=client_id, clean=clean)
    drops: list = []
    c.c.on_disconnect = lambda *args: drops.append(args[3])
    assert c.connect()
    return c, drops


def _round_trip(broker, client: Client, watcher: Client, node: str) -> bool:
    """The client still has a working session: its own event reaches the watcher."""
    marker = uuid.uuid4().hex
    client.publish(f"{broker.prefix}/nodes/{node}/events", {"marker": marker})
    return watcher.wait_for(lambda t, v: isinstance(v, dict) and v.get("marker") == marker, 5) \
        is not None


def test_a_nodes_password_cannot_kick_another_node_or_the_server(broker):
    a_password = _node(broker, "node-a")
    b_password = _node(broker, "node-b")
    server, server_drops = _connect(broker, broker.server_user, broker.server_password,
                                    broker.server_user)
    server.subscribe(f"{broker.prefix}/nodes/+/events")
    b, b_drops = _connect(broker, "node-b", b_password, "node-b", clean=False)
    for victim in ("node-b", broker.server_user):
        attacker, _ = _connect(broker, "node-a", a_password, victim)
        # the attacker got a session, but as itself: its writes are node-a's
        assert _round_trip(broker, attacker, server, "node-a")
        attacker.close()
    assert _round_trip(broker, b, server, "node-b")
    assert b_drops == [] and server_drops == []
    assert b.c.is_connected() and server.c.is_connected()
    for c in (b, server):
        c.close()


def test_a_command_queued_for_an_offline_node_survives_a_login_under_its_id(broker):
    a_password = _node(broker, "node-a")
    b_password = _node(broker, "node-b")
    cmd_topic = f"{broker.prefix}/nodes/node-b/cmd"
    b, _ = _connect(broker, "node-b", b_password, "node-b", clean=False)
    b.subscribe(cmd_topic, qos=1)
    b.close()                                        # offline, its persistent session stays
    server, _ = _connect(broker, broker.server_user, broker.server_password, broker.server_user)
    server.publish(cmd_topic, {"queued": "for node-b"}, qos=1)
    server.close()
    # a clean session under node-b's id would have thrown the queue away
    attacker, _ = _connect(broker, "node-a", a_password, "node-b", clean=True)
    attacker.close()
    b, _ = _connect(broker, "node-b", b_password, "node-b", clean=False)
    assert b.wait_for(lambda t, v: t == cmd_topic and v == {"queued": "for node-b"}, 5)
    b.close()


def test_an_oversized_publish_from_a_node_never_reaches_a_subscriber(broker):
    password = _node(broker, "node-a")
    server, _ = _connect(broker, broker.server_user, broker.server_password, broker.server_user)
    server.subscribe(f"{broker.prefix}/nodes/node-a/#")
    node, drops = _connect(broker, "node-a", password, "node-a")
    dropped = threading.Event()
    node.c.on_disconnect = lambda *args: dropped.set()
    node.c.publish(f"{broker.prefix}/nodes/node-a/telemetry", b"x" * (DEFAULT_MAX_PACKET + 1),
                   qos=1)
    assert dropped.wait(10), "the broker kept a client that sent an oversized packet"
    node.close()
    # a normal message sent after it arrives; the oversized one never did
    node, _ = _connect(broker, "node-a", password, "node-a")
    assert _round_trip(broker, node, server, "node-a")
    assert not [m for m in server.messages if m[0].endswith("/telemetry")]
    node.close()
    server.close()


def test_a_large_desired_state_from_the_server_still_reaches_its_node(broker):
    password = _node(broker, "node-a")
    topic = f"{broker.prefix}/nodes/node-a/desired"
    node, _ = _connect(broker, "node-a", password, "node-a")
    node.subscribe(topic)
    server, drops = _connect(broker, broker.server_user, broker.server_password,
                             broker.server_user)
    big = {"schedule": "s" * (DEFAULT_MAX_PACKET - 4096)}  # a long schedule window
    server.publish(topic, big, retain=True)
    assert node.wait_for(lambda t, v: t == topic and v == big, 10)
    assert drops == []
    for c in (node, server):
        c.close()


def test_tls_listener_serves_a_client_that_trusts_the_project_ca_only(tls_broker, tmp_path):
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from server.mosquitto import ensure_tls_files
    password = _node(tls_broker, "node-a")
    other_ca = ensure_tls_files(tmp_path / "other-ca", ["127.0.0.1"]).ca_cert

    def connect(ca_file) -> str:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="node-a")
        c.username_pw_set("node-a", password)
        c.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        try:
            c.connect("127.0.0.1", tls_broker.tls_port, keepalive=10)
        except ssl.SSLError as err:
            return f"refused: {err.reason}"
        deadline = time.monotonic() + 5
        while not c.is_connected() and time.monotonic() < deadline:
            c.loop(0.1)
        ok = c.is_connected()
        c.disconnect()
        return "connected" if ok else "no connack"
    assert connect(tls_broker.ca_file) == "connected"
    assert connect(other_ca).startswith("refused")


def test_a_server_account_outside_the_reserved_prefix_is_refused_at_start(tmp_path):
    import pytest

    from server.config import ConfigError, load_settings
    with pytest.raises(ConfigError, match="mqtt_username"):
        load_settings(tmp_path, {"mqtt_username": "hp-01"}, environ={})
    with pytest.raises(ConfigError, match="ca_file"):
        load_settings(tmp_path, {"mqtt_tls_port": 8883}, environ={})
    s = load_settings(tmp_path, {"mqtt_tls_port": 8883, "ca_file": __file__}, environ={})
    assert s.node_mqtt_port == 8883     # nodes are told the TLS listener


def test_the_servers_session_holds_a_provinces_burst_of_events_while_it_catches_up(broker):
    """An emergency to 10,000 nodes brings 40,000 acks and played events within seconds, more
    than the bridge writes in that time: the broker holds them in the server's session until it
    takes them, instead of dropping all past 10,000 (the limit it had)."""
    from server.mosquitto import MAX_QUEUED
    burst = 12_000
    assert MAX_QUEUED >= 4 * 10_000 > burst
    password = _node(broker, "node-a")
    server, _ = _connect(broker, broker.server_user, broker.server_password,
                         broker.server_user, clean=False)
    server.subscribe(f"{broker.prefix}/nodes/+/events")
    server.close()  # away, as a bridge busy writing is: what comes now waits in its session
    node = Client(broker.host, broker.port, "node-a", password, client_id="node-a")
    node.c.max_inflight_messages_set(1000)
    assert node.connect()
    infos = [node.c.publish(f"{broker.prefix}/nodes/node-a/events", f'{{"n": {i}}}', qos=1)
             for i in range(burst)]
    for info in infos:
        info.wait_for_publish(30)
    node.close()
    back, _ = _connect(broker, broker.server_user, broker.server_password, broker.server_user,
                       clean=False)
    try:
        with back._cond:
            assert back._cond.wait_for(lambda: len(back.messages) >= burst, 60), \
                f"{len(back.messages)} of {burst} events reached the server"
        assert {json.loads(p)["n"] for _, p, _ in back.messages} == set(range(burst))
    finally:
        back.close()
