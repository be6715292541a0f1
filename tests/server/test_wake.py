"""The web wakes the dispatcher (server/wake.py): a commit that queues a command or writes a
broadcast sends a datagram to the port the dispatcher wrote into its instance folder, so it
acts at once instead of at its next polling tick; other commits send nothing."""
from __future__ import annotations

import threading

import pytest

from server import wake
from server.models import Area
from tests.server.helpers import db, ward_with_users

PREPARED = {"ward": ward_with_users}  # made once, copied for each test
WAIT_S = 10.0


@pytest.fixture
def ward(app_only):
    return app_only.prepared


@pytest.fixture
def listener(app_only):
    """A dispatcher's listener on the app's instance: an event set at each wake-up."""
    woken = threading.Event()
    own = wake.Listener(app_only.instance, woken.set)
    own.start()
    yield own, woken
    own.stop()


def test_a_queued_command_wakes_the_dispatcher(app_only, ward, listener):
    own, woken = listener
    assert wake.port_file(app_only.instance).read_text(encoding="ascii") == str(own.port)
    app_only.ok("POST", f"/api/v1/nodes/{ward['node']['id']}/commands",
                json={"type": "amp", "body": {"on": True}})
    assert woken.wait(WAIT_S)


def test_a_commit_of_other_rows_sends_nothing(app_only, ward, monkeypatch):
    sent: list[object] = []
    monkeypatch.setattr(wake, "send", sent.append)
    with db(app_only) as session:
        session.add(Area(kind="ward", name="Phường Cát Dài", code="CD", group="cd"))
        session.commit()
    assert sent == []
    app_only.ok("POST", f"/api/v1/nodes/{ward['node']['id']}/commands",
                json={"type": "amp", "body": {"on": False}})
    assert sent == [app_only.instance]   # the patch is the one the commits reach


def test_a_stopping_dispatcher_leaves_the_wake_file_of_the_one_after_it(tmp_path):
    first = wake.Listener(tmp_path, lambda: None)
    first.start()
    second = wake.Listener(tmp_path, lambda: None)  # took over, say after a lost lease
    second.start()
    first.stop()
    assert wake.port_file(tmp_path).read_text(encoding="ascii") == str(second.port)
    second.stop()
    assert not wake.port_file(tmp_path).exists()
    assert wake.send(tmp_path) is False
