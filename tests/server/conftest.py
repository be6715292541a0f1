"""Server tests: the app through Flask's test client, no broker and no socket (``app_only`` here,
``make_app`` in tests/conftest.py), with the fake speech engine unless a test names another."""
from __future__ import annotations

import pytest

from server.cli import main as cli


@pytest.fixture(autouse=True)
def _render_once(render_each_input_once):
    """The same speech with the same settings goes through ffmpeg once per test process
    (tests/conftest.py)."""


@pytest.fixture
def app_only(make_app):
    """The server without its dispatcher, broker or socket: Flask's test client behind its URL
    and the fake speech engine (tests/conftest.py ``make_app``)."""
    return make_app()


@pytest.fixture
def wards(app_only):
    return _two_wards(app_only)


@pytest.fixture
def two_wards(app_only):
    """``wards`` under the name test_users_api.py gives it (its own ``wards`` builds on it)."""
    return _two_wards(app_only)


def _two_wards(s) -> dict:
    """Two wards of a province, a node in each, and a ward approver and technician of the
    first ("mine")."""
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    mine = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    mine_cluster = s.area("Cụm 1", "HP-LC-1", "cluster", mine["id"])
    other = s.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    other_cluster = s.area("Cụm 2", "HP-NQ-1", "cluster", other["id"])
    for cluster in (mine_cluster, other_cluster):
        s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    for name, role in (("canbo-lc", "approver"), ("kythuat-lc", "technician")):
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    "mat-khau-123", "--area-id", str(mine["id"])]) == 0
    return {"mine": mine, "other": other, "mine_cluster": mine_cluster,
            "other_cluster": other_cluster,
            "approver": s.login("canbo-lc", "mat-khau-123"),
            "technician": s.login("kythuat-lc", "mat-khau-123")}



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
