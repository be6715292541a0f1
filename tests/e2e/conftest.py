"""End-to-end tests: the real stack (Mosquitto, the server over HTTP, the dispatcher and bridge,
agent processes, Chromium, PostgreSQL, ``make run``). Every test here is marked ``e2e``; the
shared fixtures (``broker``, ``system``, ``app_only`` over HTTP) are in tests/conftest.py, the
browser's (Playwright on Debian's Chromium: ``web``, ``web_system``) in tests/e2e/web.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.web import chromium, playwright, quick_polls, web, web_system  # noqa: F401

HERE = Path(__file__).parent

# The longest tests here, longest first (``--durations``, -n 3, a busy 2-core machine): on xdist
# workers they run before the rest. pytest-xdist hands the tests out in collection order, so one
# of these collected late ran on while the other workers had nothing left (the run's tail);
# started first, the short tests fill the workers around them. A test that takes over half a
# minute belongs here.
LONG_FIRST = (
    "test_4g_emulation.py::test_nodes_in_network_namespaces_ride_out_a_two_minute_4g_outage",
    "test_web_navigation.py::test_every_menu_entry_of_every_role_opens_in_both_languages",
    "test_4g_emulation.py::test_nodes_behind_a_lossy_proxy_ride_out_an_outage",
    "test_faults_node.py::test_a_nodes_clock_jumping_plays_nothing_twice_nor_early",
    "test_faults_node.py::test_a_full_disk_on_a_node_raises_an_alarm",
    "test_faults_postgres.py::test_postgres_gone_for_seconds_loses_nothing",
    "test_dispatcher_failover.py::test_standby_dispatcher_takes_over_a_killed_one",
    "test_programme_broadcast.py::test_a_programme_plays_on_a_real_agent_as_its_one_media",
    "test_web_broadcast_now.py::test_the_editor_broadcasts_a_bulletin_now",
    "test_resilience.py::test_node_without_broker_plays_two_slots_from_cache",
)


def _long_rank(item) -> int:
    """Where ``item`` is in LONG_FIRST (its length when not there)."""
    name = f"{Path(item.fspath).name}::{item.name}"
    return next((i for i, prefix in enumerate(LONG_FIRST) if name.startswith(prefix)),
                len(LONG_FIRST))


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one process runs them in any order alike
        items.sort(key=lambda item: _long_rank(item) if HERE in Path(item.fspath).parents
                   else len(LONG_FIRST))
