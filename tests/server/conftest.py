"""Server tests: the app through Flask's test client, no broker and no socket (``app_only`` here,
``make_app`` in tests/conftest.py), with the fake speech engine unless a test names another."""
from __future__ import annotations

import pytest

from tests.server.helpers import make_two_wards
from tests.system import preparation


@pytest.fixture(autouse=True)
def _render_once(render_each_input_once):
    """The same speech with the same settings goes through ffmpeg once per test run, for
    all its workers (tests/conftest.py)."""


# fixtures made in the app (``make_app(prepare=...)``) before the test gets it; a module adds
# its own in a ``PREPARED`` of its own (tests/system.py ``preparation``)
PREPARED = {"wards": make_two_wards, "two_wards": make_two_wards}


@pytest.fixture
def app_only(make_app, request):
    """The server without its dispatcher, broker or socket: Flask's test client behind its URL
    and the fake speech engine (tests/conftest.py ``make_app``). For a test that also takes
    ``wards`` (or ``two_wards``, or what its module's ``PREPARED`` names) it is a copy of an
    instance where they were made once."""
    return make_app(prepare=preparation(request, PREPARED))


@pytest.fixture
def wards(app_only):
    """Two wards of a province, a node in each, a ward approver and technician of the first
    (tests/server/helpers.py ``make_two_wards``)."""
    return app_only.prepared


@pytest.fixture
def two_wards(app_only):
    """``wards`` under the name test_users_api.py gives it (its own ``wards`` builds on it)."""
    return app_only.prepared


FUZZ_API = "test_fuzz_api.py"
FUZZ_API_WORKERS = 2


def pytest_collection_modifyitems(items):
    """Under ``--dist loadgroup`` the OpenAPI fuzzing runs on two workers, not on every one:
    each worker that runs any of it builds the module's app and schema (seconds of espeak and
    schema compilation), and two share its half-minute of work. Both generation modes of an
    operation go to the same worker, which compiles that operation's schemas once."""
    operations: dict[str, int] = {}
    for item in items:
        if item.path.name != FUZZ_API or item.path.parent.name != "server":
            continue
        params = getattr(item, "callspec", None)
        key = f"{params.params.get('method')} {params.params.get('path')}" if params else item.name
        group = operations.setdefault(key, len(operations) % FUZZ_API_WORKERS)
        item.add_marker(pytest.mark.xdist_group(f"fuzz-api-{group}"))
