"""Provisioning through the API gives the broker the node's account at once, also when several
nodes are provisioned at the same moment, and nothing else restarts."""
from concurrent.futures import ThreadPoolExecutor

from tests.mqtt_helpers import Client, wait_until_accepted


def test_nodes_provisioned_at_once_can_all_connect_without_a_broker_restart(app_only):
    s = app_only
    province = s.area("Tỉnh Quảng Ninh", "QN", "province")
    ward = s.area("Phường Hồng Gai", "QN-HG", "ward", province["id"])
    cluster = s.area("Cụm 1", "QN-HG-1", "cluster", ward["id"])
    broker_pid = s.broker.process.proc.pid

    def provision(i):
        return s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": f"Loa {i}"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(provision, range(8)))
    assert len({a["id"] for a in answers}) == 8
    for a in answers:
        m = a["mqtt"]
        wait_until_accepted(m["host"], m["port"], m["username"], m["password"])
    assert s.broker.process.proc.pid == broker_pid and s.broker.process.proc.poll() is None
    # and a wrong password for a provisioned node is still refused
    assert not Client(answers[0]["mqtt"]["host"], answers[0]["mqtt"]["port"],
                      answers[0]["id"], "not-the-password").connect()
