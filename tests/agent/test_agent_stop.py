"""A node told to stop (systemd's SIGTERM) stops within its budget whatever is stuck, and still
says it is offline, as the last thing it says: the unit kills what is left after
TimeoutStopSec."""
from __future__ import annotations

import threading
import time

from device_agent.player import Cancel, Player, PlayOutcome, PlayRequest
from device_agent.protocol import PlayResult
from device_agent.telemetry import MachineProbe
from tests.agent_harness import WAIT_S


class StuckPlayer(Player):
    """A player stuck in its sound device (a write to a hung ALSA driver that never returns):
    it ignores ``cancel`` until the test releases it."""

    name = "stuck"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def play(self, request: PlayRequest, cancel: Cancel) -> PlayOutcome:
        self.started.set()
        self.release.wait(60)
        return PlayOutcome(PlayResult.STOPPED)


def test_a_node_stuck_in_its_player_stops_within_its_budget_and_says_it_is_offline(make_node):
    player = StuckPlayer()
    h = make_node(player=player)
    h.play("short")
    assert player.started.wait(10), "the play never reached the player"
    agent, h.agent = h.agent, None
    mark = len(h.server.messages)
    t = time.monotonic()
    try:
        agent.stop(budget=2.0)
        took = time.monotonic() - t
    finally:
        player.release.set()
    assert took < 2.0 + 1.5, f"stop took {took:.1f} s"
    assert h.wait_message(lambda topic, v: topic == h.topic("state") and v.get("online") is False,
                          since=mark), "the node never said it went offline"


class HeldProbe(MachineProbe):
    """This machine's readings, but once ``hold`` is set the next reading waits half-way (a
    modem tool slow to answer) until the test releases it."""

    def __init__(self, state_dir) -> None:
        super().__init__(state_dir)
        self.hold = threading.Event()
        self.reading = threading.Event()
        self.release = threading.Event()

    def sample(self):
        if self.hold.is_set():
            self.reading.set()
            self.release.wait(WAIT_S)
        return super().sample()


def test_telemetry_read_while_the_node_stops_is_never_sent_after_its_offline_state(make_node):
    h = make_node(start=False, telemetry_s=1)
    probe = h.probe = HeldProbe(h.state)
    agent = h.start_agent()
    assert h.wait_message(lambda topic, v: topic == h.topic("telemetry")), "no telemetry"
    # what the agent hands its broker connection, in order
    said: list[tuple[str, dict]] = []
    offline_said = threading.Event()
    transport = agent._transport
    publish, publish_and_wait = transport.publish, transport.publish_and_wait

    def recorded(send):
        def call(topic, payload, *args, **kw):
            said.append((topic.rsplit("/", 1)[-1], payload))  # events go as JSON text
            if isinstance(payload, dict) and payload.get("online") is False:
                offline_said.set()
            return send(topic, payload, *args, **kw)
        return call
    transport.publish = recorded(publish)
    transport.publish_and_wait = recorded(publish_and_wait)

    probe.hold.set()
    assert probe.reading.wait(WAIT_S), "telemetry never read again"
    h.agent = None
    stopping = threading.Thread(target=agent.stop)
    stopping.start()
    assert offline_said.wait(WAIT_S), "the node never said it went offline"
    probe.release.set()  # the reading ends after the offline state went out
    stopping.join(WAIT_S)
    assert not stopping.is_alive()

    kinds = [kind for kind, _ in said]
    last = len(kinds) - 1 - kinds[::-1].index("state")
    assert "telemetry" not in kinds[last:], said
    state_ts = said[last][1]["ts"]
    assert all(v["ts"] <= state_ts for kind, v in said if kind == "telemetry"), said
