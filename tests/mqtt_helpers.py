"""Small MQTT clients for tests: connect with given credentials and collect what arrives."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def _no_delay(client, userdata, sock):
    """Each packet leaves at once: without it a publish that follows the PUBACK of a received
    message waits (Nagle) for the broker's delayed TCP ACK, 40 ms on loopback, in every round
    trip a test makes."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Client:
    """A paho client with a background loop that records every message it receives."""

    def __init__(self, host, port, username, password, client_id=None, clean=True):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.connect_rc = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                             clean_session=clean)
        self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_socket_open = _no_delay
        self.host, self.port = host, port

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.connect_rc = reason_code
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, msg.payload, msg.retain))
            self._cond.notify_all()

    def connect(self, timeout=5.0) -> bool:
        """Connect and wait for CONNACK; True when the broker accepted the credentials."""
        self.c.connect(self.host, self.port, keepalive=30)
        self.c.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self.connect_rc is not None, timeout)
        ok = self.connect_rc is not None and not self.connect_rc.is_failure
        if not ok:
            self.c.loop_stop()
        return ok

    def subscribe(self, topic, qos=1, timeout=5.0):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos)
        assert done.wait(timeout), f"no SUBACK for {topic}"

    def publish(self, topic, payload, qos=1, retain=False, timeout=5.0):
        if not isinstance(payload, (str, bytes)):
            payload = json.dumps(payload)
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)

    def wait_for(self, predicate, timeout=10.0):
        """The first received (topic, payload-as-JSON-or-bytes) fitting predicate, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for topic, payload, _ in self.messages:
                    try:
                        value = json.loads(payload)
                    except ValueError:
                        value = payload
                    if predicate(topic, value):
                        return topic, value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_until_accepted(host, port, username, password, timeout=5.0) -> None:
    """Retry CONNECT until the broker (which reloads its files on SIGHUP) accepts the account."""
    deadline = time.monotonic() + timeout
    while True:
        probe = Client(host, port, username, password)
        if probe.connect(timeout=2.0):
            probe.close()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"broker never accepted {username}")
        time.sleep(0.05)
