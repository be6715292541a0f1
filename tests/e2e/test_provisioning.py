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


def test_nodes_provisioned_in_bulk_and_by_csv_connect_and_keep_to_their_own_topics(app_only):
    """The broker learns a bulk list and an import by lines added to its files and one reload
    each; the ACL stays exact: a node reads its own and its groups' topics, not another's."""
    s = app_only
    province = s.area("Tỉnh Quảng Ninh", "QN", "province")
    ward = s.area("Phường Hồng Gai", "QN-HG", "ward", province["id"])
    c1 = s.area("Cụm 1", "QN-HG-1", "cluster", ward["id"])
    other = s.area("Phường Bãi Cháy", "QN-BC", "ward", province["id"])
    c2 = s.area("Cụm 2", "QN-BC-1", "cluster", other["id"])
    single = s.ok("POST", "/api/v1/nodes", json={"cluster_id": c1["id"], "name": "Loa đầu"})
    bulk = s.ok("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": c1["id"], "name": f"Loa {i}"} for i in range(20)])["nodes"]
    csv_text = "name,cluster,latitude,longitude\nLoa Bãi Cháy,QN-BC-1,20.95,107.04\n"
    imported = s.ok("POST", "/api/v1/nodes/import", data=csv_text.encode(),
                    headers={"Content-Type": "text/csv"})["nodes"]
    for a in [single, *bulk, *imported]:
        wait_until_accepted(a["mqtt"]["host"], a["mqtt"]["port"], a["id"], a["mqtt"]["password"])
    prefix = s.broker.prefix
    a, b = bulk[0], imported[0]
    node = Client(a["mqtt"]["host"], a["mqtt"]["port"], a["id"], a["mqtt"]["password"])
    assert node.connect()
    for topic in (f"nodes/{b['id']}/cmd", f"groups/{c2['group']}/cmd",
                  f"nodes/{a['id']}/cmd", f"groups/{c1['group']}/cmd"):
        node.subscribe(f"{prefix}/{topic}")
    server = Client(s.broker.host, s.broker.port, s.broker.server_user,
                    s.broker.server_password)
    assert server.connect()
    for topic in (f"nodes/{b['id']}/cmd", f"groups/{c2['group']}/cmd",
                  f"groups/{c1['group']}/cmd", f"nodes/{a['id']}/cmd"):
        server.publish(f"{prefix}/{topic}", {"to": topic})
    assert node.wait_for(lambda t, v: v == {"to": f"nodes/{a['id']}/cmd"}, 5)
    assert sorted(m[0] for m in node.messages) == sorted(
        [f"{prefix}/groups/{c1['group']}/cmd", f"{prefix}/nodes/{a['id']}/cmd"])
    node.close()
    server.close()
