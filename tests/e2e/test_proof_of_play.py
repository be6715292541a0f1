"""Proof of play only counts for what a node was sent: node B, connected with its own broker
account, cannot record plays (or acks) of a command addressed to node A, and a play of other
audio than the broadcast's is recorded as failed, never as completed."""
import uuid

from sqlalchemy import select

from server.models import Event
from tests.mqtt_helpers import Client


def _setup(system):
    ward = system.area("Phường Phú Hội", "PH", "ward")
    c1 = system.area("Cụm 1", "PH-1", "cluster", ward["id"])
    c2 = system.area("Cụm 2", "PH-2", "cluster", ward["id"])
    a = system.ok("POST", "/api/v1/nodes", json={"cluster_id": c1["id"], "name": "Loa A"})
    b = system.ok("POST", "/api/v1/nodes", json={"cluster_id": c2["id"], "name": "Loa B"})
    bulletin = system.approved_bulletin()
    return c1, a, b, bulletin


def _connect(system, node: dict) -> Client:
    client = Client("127.0.0.1", system.broker.port, node["mqtt"]["username"],
                    node["mqtt"]["password"], client_id=node["id"])
    assert client.connect(), "the node's broker account was refused"
    return client


def _sent(system, bc_id: int) -> dict:
    def sent():
        report = system.ok("GET", f"/api/v1/broadcasts/{bc_id}")
        return report if report["nodes"] and all(
            n["status"] == "sent" for n in report["nodes"]) else None
    return system.wait(sent, what="the play command published")


def _broadcast(system, bulletin: dict, **targets) -> tuple[dict, str]:
    """A broadcast, once its play command is published: (broadcast, the command id)."""
    bc = system.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": bulletin["id"],
                                                       "targets": targets})
    return bc, _sent(system, bc["id"])["nodes"][0]["command_id"]


def _played(node: dict, bc: dict, cmd_id: str, sha256: str) -> tuple[str, dict]:
    """(events topic of ``node``, a completed play of ``bc``'s command claimed by it)."""
    return (f"loa/v1/nodes/{node['id']}/events",  # the test broker's prefix
            _event("played", item_id=f"bc-{bc['id']}", cmd_id=cmd_id, sha256=sha256,
                   started_at=1764000000000, ended_at=1764000005000, result="completed"))


def _event(type_: str, **fields) -> dict:
    return {"v": 1, "id": str(uuid.uuid4()), "type": type_, "ts": 1764000000000, **fields}


def _rejected(system, node_id: str, count: int) -> dict:
    return system.wait(lambda: (lambda n: n if n["rejected"]["messages"] >= count else None)(
        system.ok("GET", f"/api/v1/nodes/{node_id}")), what=f"{count} refused messages")


def test_node_cannot_record_a_play_of_another_nodes_command(system):
    _, a, b, bulletin = _setup(system)
    bc, cmd_id = _broadcast(system, bulletin, nodes=[a["id"]])
    intruder = _connect(system, b)
    try:
        topic, played = _played(b, bc, cmd_id, bulletin["sha256"])
        intruder.publish(topic, played)
        intruder.publish(topic, _event("ack", cmd_id=cmd_id, status="finished"))
        node_b = _rejected(system, b["id"], 2)
    finally:
        intruder.close()
    assert node_b["rejected"]["last_reason"] == "unknown_command"
    report = system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert [n["node_id"] for n in report["nodes"]] == [a["id"]]
    assert report["nodes"][0]["status"] == "sent" and report["nodes"][0]["played"] is None
    assert report["summary"]["played"] == 0 and report["summary"]["acked"] == 0
    assert system.ok("GET", "/api/v1/playlogs")["playlogs"] == []
    with system.app.extensions["db_sessions"]() as db:  # kept as the raw event, traceable
        kept = db.scalars(select(Event.type).where(Event.node_id == b["id"])).all()
    assert sorted(kept) == ["ack", "played"]


def test_node_cannot_record_a_play_of_a_group_command_for_another_cluster(system):
    c1, a, b, bulletin = _setup(system)
    bc, cmd_id = _broadcast(system, bulletin, areas=[c1["id"]])
    intruder = _connect(system, b)
    try:
        intruder.publish(*_played(b, bc, cmd_id, bulletin["sha256"]))
        _rejected(system, b["id"], 1)
    finally:
        intruder.close()
    assert system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["summary"]["played"] == 0
    assert system.ok("GET", "/api/v1/playlogs")["playlogs"] == []


def test_play_of_other_audio_than_the_broadcast_is_recorded_failed(system):
    _, a, _, bulletin = _setup(system)
    bc, cmd_id = _broadcast(system, bulletin, nodes=[a["id"]])
    node = _connect(system, a)
    try:
        node.publish(*_played(a, bc, cmd_id, "0" * 64))
        _rejected(system, a["id"], 1)
    finally:
        node.close()
    report = system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")
    assert report["nodes"][0]["played"] == "failed" and report["summary"]["played"] == 0
    logs = system.ok("GET", "/api/v1/playlogs")["playlogs"]
    assert [(p["result"], p["reason"]) for p in logs] == [("failed", "sha256_mismatch")]


def test_node_records_the_play_of_its_own_command(system):
    _, a, _, bulletin = _setup(system)
    bc, cmd_id = _broadcast(system, bulletin, nodes=[a["id"]])
    node = _connect(system, a)
    try:
        topic, played = _played(a, bc, cmd_id, bulletin["sha256"])
        node.publish(topic, played)
        node.publish(topic, _event("ack", cmd_id=cmd_id, status="finished"))
        report = system.wait(lambda: (lambda r: r if r["summary"]["played"] == 1 and
                                      r["summary"]["acked"] == 1 else None)(
            system.ok("GET", f"/api/v1/broadcasts/{bc['id']}")), what="the play recorded")
    finally:
        node.close()
    assert report["nodes"][0]["status"] == "finished"
    assert system.ok("GET", f"/api/v1/nodes/{a['id']}")["rejected"]["messages"] == 0
    assert [p["node_id"] for p in system.ok("GET", "/api/v1/playlogs")["playlogs"]] == [a["id"]]
