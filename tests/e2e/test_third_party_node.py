"""A node written by someone else from PROTOCOL.md alone, provisioned through the API, receives
commands it can verify with the keys provisioning gave it, and its acks are recorded."""
import ast
from pathlib import Path

from tests.third_party_node import ThirdPartyNode


def test_third_party_node_imports_nothing_of_ours():
    tree = ast.parse(Path(__file__).parent.parent.joinpath("third_party_node.py").read_text())
    roots = {(n.module or "").split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom)}
    roots |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
              for a in n.names}
    assert not roots & {"server", "schedules", "audio", "device_agent", "tests"}


def test_provisioned_third_party_node_verifies_desired_state_and_commands(system):
    province = system.area("Tỉnh Thừa Thiên Huế", "TTH", "province")
    ward = system.area("Phường Phú Hội", "TTH-PH", "ward", province["id"])
    cluster = system.area("Cụm 1", "TTH-PH-1", "cluster", ward["id"])
    provisioned = system.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                           "name": "Loa bên thứ ba"})
    assert provisioned["groups"] == ["tth-ph-1", "tth-ph", "tth"]
    node = ThirdPartyNode(provisioned)
    try:
        desired = node.wait_verified("desired")
        assert desired and desired["body"]["groups"] == provisioned["groups"]
        cmd = system.ok("POST", f"/api/v1/nodes/{provisioned['id']}/commands",
                        json={"type": "amp", "body": {"on": True}})
        got = node.wait_verified("amp")
        assert got and got["id"] == cmd["id"] and got["body"] == {"on": True}
        assert node.refused == []
        system.wait(lambda: system.ok("GET", f"/api/v1/commands/{cmd['id']}")["status"]
                    == "finished", what="the third-party ack recorded")
        system.wait(lambda: system.ok("GET", f"/api/v1/nodes/{provisioned['id']}")["online"],
                    what="online state recorded")
    finally:
        node.close()
