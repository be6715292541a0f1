"""The agent's one door to the broker; paho-mqtt stays inside this module.

MQTT 3.1.1, client id = node id, persistent session (clean session off), a retained Last Will
``{"v":1,"online":false}`` on the node's state topic, reconnect with backoff forever (paho's
loop thread), manual PUBACK so a command is acknowledged only after the agent stored it.
"""
from __future__ import annotations

import json
import logging
import random
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .config import MqttConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    mid: int
    qos: int


def reconnect_delays(cfg: MqttConfig, client_id: str) -> tuple[float, float]:
    """This node's reconnect backoff (first wait, longest wait): the configured ones spread
    per node, the first between 1 and 2 times ``reconnect_min_s`` and the longest between half
    and all of ``reconnect_max_s`` (never longer: a node is back within it of its link's
    return). Paho doubles the wait from the first to the longest without jitter, so a fleet
    that lost its broker at one instant would otherwise knock at the same instants ever after
    (10,000 nodes every 15 s). Drawn from the client id: the same node always waits the same."""
    draw = random.Random(client_id)
    first = cfg.reconnect_min_s * (1 + draw.random())
    longest = cfg.reconnect_max_s * (0.5 + 0.5 * draw.random())
    return min(first, longest), max(first, longest)


class MqttTransport:
    """Connects in the background and keeps reconnecting until ``stop``.

    ``on_connect()`` runs on every (re)connection, on paho's thread: it should (re)subscribe.
    ``on_message(Incoming)`` and ``on_published(mid)`` also run on paho's thread and must only
    hand work over; every message must later be acknowledged with ``ack``.
    """

    def __init__(self, cfg: MqttConfig, client_id: str, *, will_topic: str, will_payload: str,
                 on_connect: Callable[[], None], on_message: Callable[[Incoming], None],
                 on_published: Callable[[int], None],
                 on_disconnect: Callable[[], None] | None = None):
        self.cfg = cfg
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._on_published_cb = on_published
        self._on_disconnect_cb = on_disconnect
        self._connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, manual_ack=True)
        c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            # verifies the broker's certificate and its name against ca_file (system CAs when
            # empty); paho never connects to a broker it cannot verify
            c.tls_set(ca_certs=cfg.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(will_topic, will_payload, qos=1, retain=True)
        # paho sleeps float seconds although its stubs say int
        c.reconnect_delay_set(*reconnect_delays(cfg, client_id))  # type: ignore[arg-type]
        c.max_queued_messages_set(0)  # unlimited: the outbox on disk bounds what we queue
        self._last_failure = ""
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self._client = c

    # --- paho callbacks ---------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        log.info("connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port,
                 flags.session_present)
        self._connected.set()
        self._last_failure = ""
        try:
            self._on_connect_cb()
        except Exception:  # noqa: BLE001 - paho would swallow it; log it instead
            log.exception("on_connect handler failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError`: say why (e.g. a broker certificate the
        # CA does not vouch for), once per streak of the same failure
        err = sys.exc_info()[1]
        text = f"{type(err).__name__}: {err}" if err else "unknown error"
        if text != self._last_failure:
            log.warning("cannot connect to %s:%s: %s", self.cfg.host, self.cfg.port, text)
            self._last_failure = text

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._connected.is_set():
            log.warning("disconnected from the broker: %s", reason_code)
        self._connected.clear()
        if self._on_disconnect_cb:
            self._on_disconnect_cb()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message_cb(Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid,
                                     msg.qos))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        self._on_published_cb(mid)

    # --- the interface ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    def publish(self, topic: str, payload: dict[str, Any] | str, qos: int = 1,
                retain: bool = False) -> int:
        """Queue a message (paho keeps QoS 1 messages across reconnects); return its mid."""
        if not isinstance(payload, str):
            payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return self._client.publish(topic, payload, qos=qos, retain=retain).mid

    def publish_and_wait(self, topic: str, payload: dict[str, Any] | str, timeout: float,
                         qos: int = 1, retain: bool = False) -> bool:
        """Publish and wait for the broker's PUBACK; False when it did not come in time."""
        if not isinstance(payload, str):
            payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def subscribe(self, topics: Iterable[str], qos: int = 1) -> None:
        topics = list(topics)
        if topics:
            self._client.subscribe([(t, qos) for t in topics])

    def unsubscribe(self, topics: Iterable[str]) -> None:
        topics = list(topics)
        if topics:
            self._client.unsubscribe(topics)

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK a received message once the agent has handled (and stored) it."""
        if qos > 0:
            self._client.ack(mid, qos)

    def stop(self) -> None:
        """Disconnect cleanly (no Last Will) and end the network thread."""
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()
