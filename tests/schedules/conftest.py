"""Worker tests (the MQTT bridge and the dispatcher's passes): driven directly on the server's
database through an in-process ``app_only``, without a broker."""
import pytest

from server.bridge import Bridge, BridgeLimits
from tests.schedules.helpers import NodeBridge
from tests.system import preparation
from tests.transports import NoTransport


@pytest.fixture(autouse=True)
def _render_once(render_each_input_once):
    """The same speech with the same settings goes through ffmpeg once per test run, for
    all its workers (tests/conftest.py)."""


def _ward_with_a_node(s) -> str:
    """A ward with one cluster and one provisioned node: the node's id."""
    ward = s.area("Phường Phú Hội", "PH", "ward")
    cluster = s.area("Cụm 1", "PH-1", "cluster", ward["id"])
    return s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa A"})["id"]


# fixtures made in the app (``make_app(prepare=...)``) before the test gets it (tests/system.py
# ``preparation``)
PREPARED = {"bridge_setup": _ward_with_a_node}


@pytest.fixture
def app_only(make_app, request):
    """The server without its dispatcher, broker or socket: Flask's test client behind its URL
    and the fake speech engine (tests/conftest.py ``make_app``); for a test that takes
    ``bridge_setup``, a copy of an instance where its ward and node were made once."""
    return make_app(prepare=preparation(request, PREPARED))


@pytest.fixture
def bridge_setup(app_only):
    """A ward with one provisioned node and a bridge over the app's database, driven directly:
    (the app, the bridge, the node's id)."""
    bridge = Bridge(app_only.app.extensions["db_sessions"], NoTransport(),
                    app_only.settings.topic_prefix, limits=BridgeLimits())
    return app_only, bridge, app_only.prepared


@pytest.fixture(scope="module")
def node_bridge(tmp_path_factory):
    """A bridge on a real SQLite database holding one node, for a whole module's messages."""
    nb = NodeBridge(tmp_path_factory.mktemp("bridge") / "loa.db")
    yield nb
    nb.engine.dispose()
