"""End-to-end tests: the real stack (Mosquitto, the server over HTTP, the dispatcher and bridge,
agent processes, Chromium, PostgreSQL, ``make run``). Every test here is marked ``e2e``; the
shared fixtures (``broker``, ``system``, ``app_only`` over HTTP) are in tests/conftest.py, the
browser's (Playwright on Debian's Chromium: ``web``, ``web_system``) in tests/e2e/web.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.web import chromium, playwright, quick_polls, web, web_system  # noqa: F401

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
