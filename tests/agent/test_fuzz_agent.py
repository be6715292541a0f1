"""Hostile payloads on a running agent's cmd and desired topics (real Mosquitto, the agent with a
file sink): none crashes it, none plays anything, and a signed play afterwards still plays."""
from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.agent_harness import Signer

CORPUS = Path(__file__).parent.parent / "corpus"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=15)


def _hostile_plays(h):
    """Play envelopes a node must never act on: unsigned, forged, tampered, misdirected."""
    good = h.envelope("play", {"item": h.media.item("short"), "priority": 9})
    unsigned = {k: v for k, v in good.items() if k != "sig"}
    tampered = {**good, "body": {**good["body"], "priority": 8}}
    forged = h.envelope("play", good["body"], signer=Signer(h.signer.kid))
    other = h.envelope("play", good["body"], to="node:hp-99-z")
    return [unsigned, tampered, forged, other, {**good, "sig": "AAAA"}]


def test_hostile_payloads_never_crash_the_agent_nor_play(node):
    topics = [node.topic("cmd"), node.topic("desired"), node.group_topic("area-1"),
              node.group_topic("all")]
    sent = 0

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(topics),
           st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
    def run(topic, payload):
        nonlocal sent
        node.publish(topic, payload)
        sent += 1

    run()
    # On the group topic: the test's own recorder, subscribed to the node's topics, cannot
    # parse the deeply nested ones (the agent can).
    for path in sorted(CORPUS.iterdir()):
        if path.name != "index.json":
            node.publish(node.group_topic("area-1"), path.read_bytes())
            sent += 1
    for env in _hostile_plays(node):
        for topic in (node.topic("cmd"), node.topic("desired")):
            node.publish(topic, env)
            sent += 1
    node.marker()  # every earlier message has been handled once this is acked
    assert sent > 60
    assert node.sink_lines() == [], "a hostile payload led to a play"
    assert node.agent._worker.is_alive()
    env = node.play("short")
    node.wait_event("played", cmd_id=env["id"], result="completed")
    assert len(node.sink_lines()) == 1
