"""Revoking a node (a stolen or retired Pi) takes it off the broker within seconds, for good,
with its retained desired state cleared and no part in later broadcasts."""
import time

from tests.mqtt_helpers import Client, wait_until_accepted


def _cluster(s):
    province = s.area("Tỉnh Bắc Ninh", "BN", "province")
    ward = s.area("Phường Suối Hoa", "BN-SH", "ward", province["id"])
    return ward, s.area("Cụm 1", "BN-SH-1", "cluster", ward["id"])


def _retained(s, topic: str, wait_s=1.0):
    """What a newcomer reads on ``topic``: its retained payload, or None when there is none.
    Read through the server's own connection (another client under the server's account
    would take the dispatcher's client id): subscribing again makes the broker resend it."""
    got = []
    s.transport.subscribe(topic, lambda t, payload: got.append(payload) if payload else None)
    deadline = time.monotonic() + wait_s
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    return got[0] if got else None


def test_a_revoked_node_is_disconnected_cannot_reconnect_and_its_desired_state_is_gone(system):
    s = system
    ward, cluster = _cluster(s)
    answer = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    keep = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 2"})
    m = answer["mqtt"]
    wait_until_accepted(m["host"], m["port"], m["username"], m["password"])
    desired = f"{answer['topic_prefix']}/nodes/{answer['id']}/desired"
    assert s.wait(lambda: _retained(s, desired), what="the node's retained desired state")
    node = Client(m["host"], m["port"], m["username"], m["password"], client_id=answer["id"],
                  clean=False)
    assert node.connect()

    r = s.call("POST", f"/api/v1/nodes/{answer['id']}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == answer["id"] and r.json()["revoked_at"]

    deadline = time.monotonic() + 5
    while node.c.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not node.c.is_connected(), "the revoked node's session was not cut within 5 s"
    node.c.loop_stop()
    assert not Client(m["host"], m["port"], m["username"], m["password"]).connect()
    assert s.wait(lambda: _retained(s, desired) is None, what="the retained desired cleared")

    # the other node of the cluster still works, and a ward broadcast counts only it
    wait_until_accepted(keep["mqtt"]["host"], keep["mqtt"]["port"], keep["mqtt"]["username"],
                        keep["mqtt"]["password"])
    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"],
                                                  "targets": {"areas": [ward["id"]]}})
    report = s.wait(lambda: (lambda r: r if r["nodes"] else None)(
        s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")), what="the broadcast's deliveries")
    assert [n["node_id"] for n in report["nodes"]] == [keep["id"]]
    # revoking it again changes nothing
    assert s.call("POST", f"/api/v1/nodes/{answer['id']}/revoke").json()["revoked_at"] == \
        r.json()["revoked_at"]


def test_only_a_technician_of_the_nodes_area_may_revoke_it(app_only):
    from server.cli import main as cli
    s = app_only
    _, cluster = _cluster(s)
    other_ward = s.area("Phường Vũ Ninh", "BN-VN", "ward", None)
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    for name, role, area in (("kt-vn", "technician", other_ward["id"]),
                             ("cb-sh", "approver", cluster["id"])):
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    "mat-khau-123", "--area-id", str(area)]) == 0
    r = s.call("POST", f"/api/v1/nodes/{node['id']}/revoke", token=s.login("kt-vn",
                                                                            "mat-khau-123"))
    assert r.status_code in (403, 404) and r.json()["error"]["code"]
    r = s.call("POST", f"/api/v1/nodes/{node['id']}/revoke", token=s.login("cb-sh",
                                                                            "mat-khau-123"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = s.call("POST", "/api/v1/nodes/no-such-node/revoke")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_node"
    r = s.call("POST", f"/api/v1/nodes/{node['id']}/revoke", token=None)
    assert r.status_code == 401
