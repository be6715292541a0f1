"""A node told to stop (systemd's SIGTERM) stops within its budget whatever is stuck, and still
says it is offline: the unit kills what is left after TimeoutStopSec."""
from __future__ import annotations

import threading
import time

from device_agent.player import Cancel, Player, PlayOutcome, PlayRequest
from device_agent.protocol import PlayResult


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
