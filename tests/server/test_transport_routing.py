"""The server's broker connection hands each message to the subscriptions whose filter matches
its topic (shared subscriptions by their filter), in the order they were made; a message no
subscription matches is dropped. No broker: the message goes through the network thread's
callback as paho calls it."""
from __future__ import annotations

import paho.mqtt.client as mqtt

from server.transport import MqttTransport


def _transport() -> MqttTransport:
    return MqttTransport("127.0.0.1", 1, "u", "p", "test-routing", connect=False)


def _deliver(t: MqttTransport, topic: str) -> None:
    msg = mqtt.MQTTMessage(mid=1, topic=topic.encode())
    msg.payload = b"{}"
    t._on_message(t.client, None, msg)


def test_a_message_reaches_every_matching_subscription_in_the_order_they_were_made():
    t = _transport()
    got: list[tuple[str, str]] = []
    t.subscribe("loa/v1/#", lambda topic, payload: got.append(("all", topic)))
    t.subscribe("$share/loa/loa/v1/nodes/+/events",
                lambda topic, payload, done: got.append(("events", topic)), acks=True)
    t.subscribe("loa/v1/nodes/+/state", lambda topic, payload: got.append(("state", topic)))
    _deliver(t, "loa/v1/nodes/n-1/events")
    _deliver(t, "loa/v1/nodes/n-1/state")
    _deliver(t, "other/v1/nodes/n-1/state")
    assert got == [("all", "loa/v1/nodes/n-1/events"), ("events", "loa/v1/nodes/n-1/events"),
                   ("all", "loa/v1/nodes/n-1/state"), ("state", "loa/v1/nodes/n-1/state")]


def test_a_dropped_subscription_gets_nothing_more():
    t = _transport()
    got: list[str] = []
    t.subscribe("loa/v1/nodes/+/telemetry", lambda topic, payload: got.append(topic))
    _deliver(t, "loa/v1/nodes/a/telemetry")
    t.unsubscribe("loa/v1/nodes/+/telemetry")
    _deliver(t, "loa/v1/nodes/b/telemetry")
    assert got == ["loa/v1/nodes/a/telemetry"]


def test_wildcards_do_not_match_the_brokers_own_topics():
    t = _transport()
    got: list[str] = []
    t.subscribe("#", lambda topic, payload: got.append(topic))
    t.subscribe("+/broker/uptime", lambda topic, payload: got.append(topic))
    _deliver(t, "$SYS/broker/uptime")
    _deliver(t, "loa/broker/uptime")
    assert got == ["loa/broker/uptime", "loa/broker/uptime"]


def test_the_same_topic_follows_subscriptions_made_and_dropped_after_it_was_seen():
    """What a topic matches is remembered per topic (a province's three topics a node carry
    all its messages), and forgotten when the subscriptions change."""
    t = _transport()
    got: list[tuple[str, str]] = []
    t.subscribe("loa/v1/nodes/+/events", lambda topic, payload: got.append(("events", topic)))
    _deliver(t, "loa/v1/nodes/a/events")
    t.subscribe("loa/v1/#", lambda topic, payload: got.append(("all", topic)))
    _deliver(t, "loa/v1/nodes/a/events")
    t.unsubscribe("loa/v1/nodes/+/events")
    _deliver(t, "loa/v1/nodes/a/events")
    assert got == [("events", "loa/v1/nodes/a/events"),
                   ("events", "loa/v1/nodes/a/events"), ("all", "loa/v1/nodes/a/events"),
                   ("all", "loa/v1/nodes/a/events")]
