"""Agent tests: one in-process agent (``NodeHarness``) with a file-sink player on the test's
Mosquitto, playing the short MP3s of ``media_server`` (tests/conftest.py)."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

import device_agent.agent
import device_agent.player
import device_agent.selftest
from tests.agent import captures
from tests.agent_harness import NodeHarness


@pytest.fixture(scope="session")
def _tones(tmp_path_factory) -> dict:
    """The test tones and acoustic test sequences the agents made, by their settings, for
    ``_make_tones_once``."""
    return {"dir": tmp_path_factory.mktemp("tones")}


@pytest.fixture(autouse=True)
def _make_tones_once(_tones, monkeypatch):
    """Each agent writes its ``test`` command's tone and the acoustic test's tone sequence into
    its new state folder when it starts, computing them sample by sample (50 ms and 120 ms, at
    every start of every test); here each is computed once per test process and the agent gets
    a copy of the same bytes. The tone itself is tested in test_agent_devices.py, the sequence
    in test_selftest_analysis.py (which makes its own, tests/agent/captures.py)."""
    def once(make, path, *args, **settings):
        key = repr((make.__name__, args, sorted(settings.items())))
        if key not in _tones:
            _tones[key] = make(_tones["dir"] / f"{make.__name__}-{len(_tones)}.wav", *args,
                               **settings)
        shutil.copyfile(_tones[key], path)
        return path

    monkeypatch.setattr(device_agent.agent, "make_tone",
                        functools.partial(once, device_agent.player.make_tone))
    monkeypatch.setattr(device_agent.selftest, "make_sequence",
                        functools.partial(once, device_agent.selftest.make_sequence))


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


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Where a module's microphone captures are made (tests/agent/captures.py)."""
    return tmp_path_factory.mktemp("captures")


@pytest.fixture(scope="module")
def played(folder) -> Path:
    """The acoustic self-test's tone sequence, the very file the agent plays."""
    return captures.sequence(folder)
