"""A technician asks a node for the acoustic self-test through the API, and reads what the
node's microphone heard, from the node's ``finished`` ack, on the command."""
import json
import uuid

from server.cli import main as cli

TS = 1764000000000


def ack(bridge, node_id, cmd_id, status, **fields):
    payload = {"v": 1, "id": str(uuid.uuid4()), "type": "ack", "ts": TS, "cmd_id": cmd_id,
               "status": status, **fields}
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/events", json.dumps(payload).encode())


def test_acoustic_test_is_queued_and_its_verdict_shows_on_the_command(bridge_setup):
    system, bridge, node_id = bridge_setup
    assert cli(["--instance", str(system.instance), "user", "kythuat", "--role", "technician",
                "--password", "mat-khau-123"]) == 0
    technician = system.login("kythuat", "mat-khau-123")
    cmd = system.ok("POST", f"/api/v1/nodes/{node_id}/commands", token=technician,
                    json={"type": "test", "body": {"kind": "acoustic"}})
    assert (cmd["type"], cmd["body"], cmd["target"]) == ("test", {"kind": "acoustic"},
                                                          f"node:{node_id}")
    ack(bridge, node_id, cmd["id"], "received")
    ack(bridge, node_id, cmd["id"], "started")
    detail = ("volume 80: 500Hz -21.3dBFS ok; 1000Hz -20.9dBFS ok; 2000Hz -23.0dBFS ok; "
              "3000Hz missing (-68.2dBFS, noise -71.0)")
    ack(bridge, node_id, cmd["id"], "finished", reason="tone_missing", result="fail",
        detail=detail)
    got = system.ok("GET", f"/api/v1/commands/{cmd['id']}", token=technician)
    assert (got["status"], got["reason"]) == ("finished", "tone_missing")
    assert got["result"] == {"result": "fail", "detail": detail}


def test_a_test_kind_the_protocol_does_not_know_is_refused(bridge_setup):
    system, _, node_id = bridge_setup
    r = system.call("POST", f"/api/v1/nodes/{node_id}/commands",
                    json={"type": "test", "body": {"kind": "sweep"}})
    assert r.status_code == 400, r.text
    assert "sweep" in r.json()["error"]["message"]


def test_the_api_document_offers_both_test_kinds(app_only):
    doc = app_only.call("GET", "/api/v1/openapi.json").json()
    variants = doc["components"]["schemas"]["CommandCreate"]["oneOf"]
    [test] = [v for v in variants if v["properties"]["type"] == {"const": "test"}]
    assert test["properties"]["body"]["properties"]["kind"]["enum"] == ["tone", "acoustic"]
