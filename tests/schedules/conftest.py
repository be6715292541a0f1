"""Worker tests (the MQTT bridge and the dispatcher's passes): driven directly on the server's
database through an in-process ``app_only``, without a broker."""
import pytest


@pytest.fixture(autouse=True)
def _render_once(render_each_input_once):
    """The same speech with the same settings goes through ffmpeg once per test process
    (tests/conftest.py)."""


@pytest.fixture
def app_only(make_app):
    """The server without its dispatcher, broker or socket: Flask's test client behind its URL
    and the fake speech engine (tests/conftest.py ``make_app``)."""
    return make_app()
