"""Agent tests: one in-process agent (``NodeHarness``) with a file-sink player on the test's
Mosquitto, playing the short MP3s of ``media_server`` (tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.agent_harness import NodeHarness


@pytest.fixture
def make_node(broker, tmp_path, media_server):
    """Factory: ``make_node(**kw)`` builds a NodeHarness and starts its agent."""
    made: list[NodeHarness] = []

    def factory(start: bool = True, **kw) -> NodeHarness:
        h = NodeHarness(broker, tmp_path, media_server, **kw)
        made.append(h)
        if start:
            h.start_agent()
        return h

    yield factory
    for h in made:
        h.close()


@pytest.fixture
def node(make_node) -> NodeHarness:
    return make_node()
