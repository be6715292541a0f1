"""A broker connection for the tests' bridges and dispatchers that are not meant to reach a
broker: they hear or pass over the database only. Using it fails the test, saying what was
tried (a bridge or dispatcher given no connection at all would fail on ``None`` instead)."""
from __future__ import annotations

from server.transport import Handler, Transport


class NoTransport(Transport):
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
