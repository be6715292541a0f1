"""Reconnecting after the broker went away for the whole fleet at once (a broker restart, the
server's uplink): each node backs off on its own schedule, so the broker is not knocked on by
every node at the same instants, and no node waits longer than the configured longest wait."""
from __future__ import annotations

from collections import Counter

from device_agent.config import MqttConfig
from device_agent.transport import reconnect_delays

CFG = MqttConfig(host="127.0.0.1", port=1883, username="u", password="p", reconnect_min_s=1.0,
                 reconnect_max_s=15.0)


def knocks(first: float, longest: float, horizon_s: float) -> list[float]:
    """When a node that lost its broker at 0 tries again (paho: the wait doubles from the first
    to the longest, the broker staying away)."""
    at, wait, out = 0.0, first, []
    while at + wait <= horizon_s:
        at += wait
        out.append(at)
        wait = min(wait * 2, longest)
    return out


def test_a_fleet_dropped_at_once_does_not_knock_in_step():
    nodes = [f"loa-hp-lc-{i:05d}" for i in range(10_000)]
    per_second = Counter(int(t) for node in nodes
                         for t in knocks(*reconnect_delays(CFG, node), horizon_s=120))
    # without the spread every node knocks at 1, 3, 7, 15, 30, 45, ... s: 10,000 in one second
    busiest = max(per_second[s] for s in range(20, 120))
    assert busiest < 10_000 * 0.15, per_second.most_common(3)


def test_every_node_waits_between_the_configured_first_and_longest_and_always_the_same():
    for node in ("loa-a", "loa-b", "loa-hp-lc-00042"):
        first, longest = reconnect_delays(CFG, node)
        assert CFG.reconnect_min_s <= first <= 2 * CFG.reconnect_min_s
        assert CFG.reconnect_max_s / 2 <= longest <= CFG.reconnect_max_s
        assert first <= longest
        assert reconnect_delays(CFG, node) == (first, longest)
