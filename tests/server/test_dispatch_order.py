"""The dispatcher's pass: what fell due goes out before the rest of the pass is done."""
from __future__ import annotations

from schedules.dispatcher import Dispatcher
from server.keys import load_signing_key
from server.models import now_ms
from tests.server.helpers import ward_with_a_node
from tests.transports import Recorder


def test_a_broadcast_that_falls_due_is_published_before_the_desired_states_are_built(app_only):
    """An emergency to a province must not wait while the same pass builds desired states
    (or rolls out releases): the broker has its command before that work begins."""
    s = app_only
    w = ward_with_a_node(s)
    kid, key = load_signing_key(s.settings.signing_key_file)
    transport = Recorder()
    d = Dispatcher(s.settings, s.app.extensions["db_sessions"], transport, key, kid,
                   clock=now_ms)
    commands_before = {}

    def noting(name, step):
        def run():
            commands_before[name] = [t for t, _ in transport.sent if t.endswith("/cmd")]
            return step()
        return run

    d.advance_rollouts = noting("rollouts", d.advance_rollouts)  # type: ignore[method-assign]
    d.refresh_desired = noting("desired", d.refresh_desired)  # type: ignore[method-assign]
    b = s.approved_bulletin()
    s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"], "priority": "emergency",
                                            "targets": {"areas": [w["ward"]["id"]]}})
    d.tick()
    play = [t for t, _ in transport.sent if t.endswith("/cmd")]
    assert len(play) == 1
    assert commands_before == {"rollouts": play, "desired": play}
    # and the node's desired state (it was provisioned dirty) still went out in the same pass
    assert any(t.endswith("/desired") for t, _ in transport.sent)
