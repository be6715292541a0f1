"""Alerts on the real stack: a real agent process stops, the broker tells the server, and the
dispatcher's own job raises the node_offline alert once the hold-off has passed; the technician
acknowledges it, and when the agent runs again the alert resolves itself."""
import signal

import pytest

from tests.system import AGENT_STOP_S, System


@pytest.fixture
def quick_alerts(tmp_path, broker):
    s = System(tmp_path, broker, alert_offline_after_s=3, alert_eval_s=1)
    yield s
    s.stop()


def offline_alerts(s, node_id):
    return s.ok("GET", f"/api/v1/alerts?node={node_id}&kind=node_offline")["alerts"]


def test_an_agent_that_stops_raises_node_offline_and_resolves_when_it_runs_again(quick_alerts):
    s = quick_alerts
    ward = s.area("Phường Suối Hoa", "BN-SH", "ward")
    cluster = s.area("Cụm 1", "BN-SH-1", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    proc, _sink = s.start_agent(node)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], 30, "the node online")
    assert offline_alerts(s, node["id"]) == []

    proc.send_signal(signal.SIGTERM)
    proc.wait(AGENT_STOP_S)
    [alert] = s.wait(lambda: offline_alerts(s, node["id"]), 30, "the node_offline alert")
    assert alert["state"] == "open" and alert["text"].startswith("Mất kết nối")
    acked = s.ok("POST", f"/api/v1/alerts/{alert['id']}/ack")
    assert acked["acknowledged"]["by"] == "admin"

    s.start_agent(node)
    resolved = s.wait(lambda: [a for a in offline_alerts(s, node["id"])
                               if a["state"] == "resolved"], 30, "the alert resolved")
    assert resolved[0]["id"] == alert["id"] and resolved[0]["resolved"]["automatic"]
    assert len(offline_alerts(s, node["id"])) == 1
