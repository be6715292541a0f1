"""The server's broker connection behind a small interface (publish, subscribe, stop); the rest
of the server never touches paho directly."""
from __future__ import annotations

import logging
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)
# handler(topic, payload), or handler(topic, payload, done) for a subscription with acks
Handler = Callable[..., None]
ROUTES_KEPT = 1 << 16  # topics whose matching subscriptions are kept (a node publishes on three)


class Transport(ABC):
    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                timeout: float = 10.0) -> bool:
        """Publish and wait up to ``timeout`` for the broker's acknowledgement. True once the
        broker has it, and also when it is slow to say so while the message is in flight on
        a live connection: QoS 1 delivers it (the client resends it itself, also after a
        reconnect of the persistent session), so the caller must not send it again. False
        only when the message could not be handed to the connection."""

    def send(self, topic: str, payload: str | bytes, qos: int = 1,
             retain: bool = False) -> Callable[[float], bool]:
        """Hand a message over without waiting; the answer, ``confirm(timeout)``, says what
        ``publish`` would have. Many messages in flight at once cost one round trip, not one
        each. (This default waits at once.)"""
        ok = self.publish(topic, payload, qos=qos, retain=retain)
        return lambda timeout: ok

    @abstractmethod
    def subscribe(self, topic: str, handler: Handler, qos: int = 1, *,
                  acks: bool = False) -> None:
        """Call ``handler(topic, payload)`` for every message on ``topic`` (kept on reconnect).
        ``acks``: ``handler(topic, payload, done)``, and the message is confirmed to the broker
        only when ``done()`` is called (once it is stored): one the process never got to store
        (killed meanwhile) is delivered again to the session's next connection."""

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (also a subscription an earlier run of this persistent
        session made). This default only forgets nothing: a transport without sessions
        holds no subscription from before."""
        log.debug("unsubscribe %s: nothing to drop", topic)

    @abstractmethod
    def stop(self) -> None: ...


def filter_of(subscription: str) -> str:
    """The topic filter of a subscription: ``$share/<group>/<filter>`` (an MQTT shared
    subscription, whose messages arrive on their own topic) is ``<filter>``."""
    if subscription.startswith("$share/"):
        return subscription.split("/", 2)[2] if subscription.count("/") >= 2 else ""
    return subscription


class MqttTransport(Transport):
    """paho-mqtt 2 client with a persistent session, resubscribing in on_connect.

    ``connect=False``: the connection is opened only by ``connect()``, so a caller subscribes
    first. A resumed persistent session hands over what waited at the broker right after the
    CONNACK, before any SUBSCRIBE is sent; a message that arrives before its handler is
    registered here is confirmed and dropped, so a consumer with acks (the bridge) must be
    subscribed before the connection opens."""

    def __init__(self, host: str, port: int, username: str, password: str, client_id: str,
                 tls: bool = False, ca_file: str | None = None, *, connect: bool = True):
        self._host, self._port = host, port
        self._started = False
        self._subs: dict[str, tuple[int, Handler, bool]] = {}
        # the subscriptions by topic filter, built when they change, matched per message
        # (paho's topic_matches_sub builds a matcher on every call: a fifth of the network
        # thread's time in a province's burst of acks), and what each topic matched, kept
        # with the matcher it came from (see _matching)
        self._routes: tuple[MQTTMatcher, dict[str, tuple[str, ...]]] = (
            MQTTMatcher(), {})  # type: ignore[no-untyped-call]  # paho's: untyped
        self._unsubs: set[str] = set()  # dropped from the session at every connect
        self._pending: dict[int, str] = {}  # SUBSCRIBE message id -> its topic, until SUBACK
        self._pending_lock = threading.Lock()  # a SUBACK may come before subscribe() returns
        # wait_subscribed's: notified at every SUBACK and when on_connect has sent them all
        self._answered = threading.Condition(self._pending_lock)
        self._subscribing = False  # on_connect sending this connection's subscriptions
        self._connected = threading.Event()
        # QoS 1 messages are confirmed by _on_message (at once) or by the handler's done()
        # (after it stored them): paho's own confirmation comes before a queued message is
        # written, and a process killed then would lose it
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, manual_ack=True)
        self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        if connect:
            self.connect()

    def connect(self) -> None:
        """Open the connection (kept up, reconnecting, until ``stop``); once only."""
        if not self._started:
            self._started = True
            self.client.connect_async(self._host, self._port, keepalive=30)
            self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until the connection is up and the broker has answered every
        subscription made on it (its SUBACKs, logged: "subscribed to …", or the refusal); from
        then on the broker keeps this session's messages of every topic subscribed so far."""
        with self._answered:
            return self._answered.wait_for(
                lambda: self.connected and not self._subscribing and not self._pending, timeout)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._answered:  # no waiter returns before they are all sent
            self._subscribing = True
        self._connected.set()
        for topic in self._unsubs:
            client.unsubscribe(topic)
        for topic, (qos, _, _) in self._subs.items():
            self._subscribe(topic, qos)
        with self._answered:
            self._subscribing = False
            self._answered.notify_all()

    def _subscribe(self, topic: str, qos: int) -> None:
        with self._pending_lock:
            _, mid = self.client.subscribe(topic, qos)
            if mid is not None:
                self._pending[mid] = topic

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        with self._pending_lock:
            topic = self._pending.get(mid, "?")
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused the subscription to %s: %s", topic, reason_codes)
        else:  # from now on the broker keeps this session's messages of it
            log.info("subscribed to %s", topic)
        with self._answered:  # answered once its line is written: a waiter may look for it
            self._pending.pop(mid, None)
            self._answered.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()
        with self._pending_lock:  # the broker answers none of them now
            self._pending.clear()
        log.warning("disconnected from broker: %s", reason_code)

    def _matching(self, topic: str) -> tuple[str, ...]:
        """The subscriptions whose filter matches ``topic``, in the order they were made;
        worked out once per topic until the subscriptions change. A province's topics are
        few (three a node) and its messages many: walking the matcher's tree for each of an
        emergency's 10,000 acks was a quarter of the network thread's time (py-spy)."""
        matcher, known = self._routes
        found = known.get(topic)
        if found is None:
            walk = matcher.iter_match(topic)  # type: ignore[no-untyped-call]  # paho's: untyped
            matched: list[str] = [p for patterns in walk for p in patterns]
            if len(matched) > 1:
                order = list(self._subs)
                matched.sort(key=lambda p: order.index(p) if p in order else len(order))
            if len(known) >= ROUTES_KEPT:
                known.clear()
            found = known[topic] = tuple(matched)
        return found

    def _rebuild_matcher(self) -> None:
        by_filter: dict[str, list[str]] = {}
        for pattern in self._subs:
            by_filter.setdefault(filter_of(pattern), []).append(pattern)
        matcher = MQTTMatcher()  # type: ignore[no-untyped-call]  # paho's: untyped
        for topic_filter, patterns in by_filter.items():
            matcher[topic_filter] = patterns
        self._routes = (matcher, {})  # one assignment: the network thread sees old or new

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        deferred = matched = False
        for pattern in self._matching(msg.topic):
            sub = self._subs.get(pattern)
            if sub is not None:
                _, handler, acks = sub
                matched = True
                try:
                    if acks and not deferred:
                        deferred = True
                        handler(msg.topic, msg.payload, self._done(msg))
                    else:
                        handler(msg.topic, msg.payload)
                except Exception:  # a bad message must not kill the network thread
                    log.exception("handler for %s failed", msg.topic)
        if not deferred:
            if not matched:
                log.warning("message on %s matches no subscription of this process: confirmed "
                            "to the broker and dropped", msg.topic[:200])
            self._ack(msg)

    def _done(self, msg: mqtt.MQTTMessage) -> Callable[[], None]:
        return lambda: self._ack(msg)

    def _ack(self, msg: mqtt.MQTTMessage) -> None:
        if msg.qos > 0:
            try:
                self.client.ack(msg.mid, msg.qos)
            except Exception:  # the connection went: the broker delivers it again
                log.debug("ack of %s not sent", msg.mid, exc_info=True)

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                timeout: float = 10.0) -> bool:
        return self.send(topic, payload, qos=qos, retain=retain)(timeout)

    def send(self, topic: str, payload: str | bytes, qos: int = 1,
             retain: bool = False) -> Callable[[float], bool]:
        if not self.connected:
            return lambda timeout: False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return lambda timeout: False
        return lambda timeout: self._confirmed(info, topic, timeout)

    def _confirmed(self, info: mqtt.MQTTMessageInfo, topic: str, timeout: float) -> bool:
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        if info.is_published():
            return True
        if self.connected:  # a busy broker or machine: in flight, never a second copy
            log.warning("no PUBACK for %s within %.1f s; left to QoS 1 to deliver", topic,
                        timeout)
            return True
        return False

    def subscribe(self, topic: str, handler: Handler, qos: int = 1, *,
                  acks: bool = False) -> None:
        self._subs[topic] = (qos, handler, acks)
        self._rebuild_matcher()
        self._unsubs.discard(topic)
        if self.connected:
            self._subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        self._subs.pop(topic, None)
        self._rebuild_matcher()
        self._unsubs.add(topic)
        if self.connected:
            self.client.unsubscribe(topic)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
