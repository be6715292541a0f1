"""The broker connections the tests give a bridge or dispatcher in place of Mosquitto's: one
that is up and publishes nothing, one that is down, one that records what is published, and
one for what is not meant to reach a broker at all (it hears or passes over the database only),
which fails the test naming what was tried."""
from __future__ import annotations

from server.transport import Handler, Transport


class NoTransport(Transport):
    """Not meant to be used: publishing or subscribing fails the test."""

    connected = False

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                timeout: float = 10.0) -> bool:
        raise AssertionError(f"published to {topic} where no broker was meant to be used")

    def subscribe(self, topic: str, handler: Handler, qos: int = 1, *,
                  acks: bool = False) -> None:
        raise AssertionError(f"subscribed to {topic} where no broker was meant to be used")

    def stop(self) -> None:
        pass


class SubscribeOnly(NoTransport):
    """For a bridge a test starts and then hands messages itself: its subscriptions are kept
    in ``subscribed`` (nothing arrives through them); publishing still fails the test."""

    def __init__(self) -> None:
        self.subscribed: list[str] = []

    def subscribe(self, topic: str, handler: Handler, qos: int = 1, *,
                  acks: bool = False) -> None:
        self.subscribed.append(topic)


class OnBroker(Transport):
    """The dispatcher's broker connection as a pass sees it: up, nothing published."""

    connected = True

    def publish(self, *a, **kw):
        return self.connected

    def subscribe(self, *a, **kw):
        pass

    def stop(self):
        pass


class NoBroker(OnBroker):
    """For passes that never publish (dispatch_due, sign_pending): no broker behind it."""

    connected = False


class Recorder(Transport):
    """A broker connection that is up and keeps what is published: ``sent`` (topic, payload),
    ``published`` (topic, payload, retain)."""

    connected = True

    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.published: list[tuple[str, str, bool]] = []

    def publish(self, topic, payload, qos=1, retain=False, timeout=10.0):
        self.sent.append((topic, payload))
        self.published.append((topic, payload, retain))
        return True

    def subscribe(self, *a, **kw):
        pass

    def stop(self):
        pass
