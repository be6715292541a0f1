"""Signing key rotation with real agents: a new key is announced signed by the old one, signing
switches once the nodes acked it, and the old key is revoked so nothing signed by it plays."""
from __future__ import annotations

import json

from sqlalchemy import select

from device_agent.protocol import command_topic, envelope_json, sign_envelope
from server import keys
from server.cli import main as cli
from server.models import Command, Event, ServerKey, now_ms


def _cli(system, capsys, *args) -> tuple[int, str, str]:
    code = cli(["--instance", str(system.instance), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _cluster(system) -> dict:
    ward = system.area("Phường 1", "P1", "ward")
    return system.area("Cụm 1", "P1-1", "cluster", ward["id"])


def _node(system, cluster, name="Loa") -> dict:
    return system.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": name})


def _db(system):
    return system.app.extensions["db_sessions"]()


def _ack(system, cmd_id: str) -> dict | None:
    with _db(system) as db:
        for e in db.scalars(select(Event).where(Event.type == "ack")):
            if e.payload.get("cmd_id") == cmd_id and e.payload["status"] not in ("received",):
                return e.payload
    return None


def _keys_cmd(system, kid: str, field: str) -> str:
    with _db(system) as db:
        for c in db.scalars(select(Command).where(Command.type == "keys")):
            if kid in json.dumps(c.body.get(field, [])):
                return c.id
    raise AssertionError(f"no keys command with {kid} in {field}")


def test_rotated_key_is_acked_then_signs_plays_and_the_revoked_old_key_is_refused(system, capsys):
    s = system
    cluster = _cluster(s)
    node = _node(s, cluster)
    s.start_agent(node)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="agent online")
    old_kid = node["server_keys"][0]["kid"]
    _, old_key = keys.load_signing_key(s.settings.signing_key_file, old_kid)

    code, out, err = _cli(s, capsys, "keys", "rotate")
    assert code == 0, err
    with _db(s) as db:
        new_kid = db.scalar(select(ServerKey.kid).where(ServerKey.state == "next"))
    assert new_kid in out
    announce = _keys_cmd(s, new_kid, "keys")
    with _db(s) as db:
        assert json.loads(db.get(Command, announce).payload)["kid"] == old_kid
    ack = s.wait(lambda: _ack(s, announce), what="the agent acks the new key")
    assert ack["status"] == "finished"

    later = _node(s, cluster, "Loa sau")
    assert {k["kid"] for k in later["server_keys"]} == {old_kid, new_kid}
    assert new_kid in later["config"]

    code, out, err = _cli(s, capsys, "keys", "activate", new_kid)
    assert code == 0, err
    assert "2 of 2 nodes" in out

    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts",
              json={"bulletin_id": b["id"], "targets": {"nodes": [node["id"]]}})
    s.wait(lambda: s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["summary"]["played"] == 1,
           what="the play signed by the new key is played")
    with _db(s) as db:
        play = db.scalar(select(Command).where(Command.broadcast_id == bc["id"]))
        assert json.loads(play.payload)["kid"] == new_kid

    code, out, err = _cli(s, capsys, "keys", "revoke", old_kid)
    assert code == 0, err
    revocation = _keys_cmd(s, old_kid, "revoke")
    with _db(s) as db:
        assert json.loads(db.get(Command, revocation).payload)["kid"] == new_kid
    assert s.wait(lambda: _ack(s, revocation), what="revocation acked")["status"] == "finished"
    assert old_kid not in keys.read_key_file(s.settings.signing_key_file)
    after = _node(s, cluster, "Loa cuối")
    assert [k["kid"] for k in after["server_keys"]] == [new_kid]

    target = f"node:{node['id']}"
    forged = sign_envelope(old_key, old_kid, "set_volume", target, {"volume": 5}, now_ms(), 60000)
    assert s.transport.publish(command_topic(s.settings.topic_prefix, "set_volume", target),
                               envelope_json(forged), qos=1)
    refused = s.wait(lambda: _ack(s, forged["id"]), what="the old key's command is refused")
    assert (refused["status"], refused["reason"]) == ("rejected", "unknown_kid")


def test_activation_waits_for_every_node_and_the_active_key_cannot_be_revoked(app_only, capsys):
    s = app_only
    node = _node(s, _cluster(s))  # provisioned, never online: it cannot ack
    old_kid = node["server_keys"][0]["kid"]
    assert _cli(s, capsys, "keys", "rotate")[0] == 0
    code, _, err = _cli(s, capsys, "keys", "rotate")
    assert code == 1 and "under way" in err
    with _db(s) as db:
        new_kid = db.scalar(select(ServerKey.kid).where(ServerKey.state == "next"))

    code, _, err = _cli(s, capsys, "keys", "activate", new_kid)
    assert code == 1 and "0 of 1 nodes" in err and node["id"] in err
    code, out, _ = _cli(s, capsys, "keys", "list")
    assert code == 0 and "nodes trusting it: 0/1" in out

    code, _, err = _cli(s, capsys, "keys", "revoke", old_kid)
    assert code == 1 and "active key" in err
    code, out, err = _cli(s, capsys, "keys", "activate", new_kid, "--force")
    assert code == 0 and "0 of 1 nodes" in out
    with _db(s) as db:
        states = {k.kid: k.state for k in db.scalars(select(ServerKey))}
    assert states == {old_kid: "retired", new_kid: "active"}
    code, _, err = _cli(s, capsys, "keys", "revoke", new_kid)
    assert code == 1 and "active key" in err
    code, _, err = _cli(s, capsys, "keys", "activate", "no-such-key")
    assert code == 1 and "no key no-such-key" in err

    assert _cli(s, capsys, "audit-verify")[0] == 0
    actions = [e["action"] for e in s.ok("GET", "/api/v1/audit", params={"action": "keys"})
               ["entries"]]
    assert actions == ["keys.activate", "keys.rotate"]


def test_a_node_first_online_after_the_rotation_gets_the_key_when_it_is_resent(system, capsys):
    s = system
    node = _node(s, _cluster(s))  # provisioned before the rotation, powered on only after it
    assert _cli(s, capsys, "keys", "rotate")[0] == 0
    with _db(s) as db:
        new_kid = db.scalar(select(ServerKey.kid).where(ServerKey.state == "next"))
        announce = db.scalar(select(Command.id).where(Command.type == "keys"))
    s.wait(lambda: _published(s, announce), what="the announcement is published")
    s.start_agent(node)
    s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], what="agent online")
    code, _, err = _cli(s, capsys, "keys", "activate", new_kid)
    assert code == 1 and node["id"] in err

    code, out, err = _cli(s, capsys, "keys", "resend", new_kid)
    assert code == 0 and node["id"] in out, err
    with _db(s) as db:
        again = db.scalar(select(Command.id).where(Command.node_id == node["id"],
                                                   Command.type == "keys"))
    assert s.wait(lambda: _ack(s, again), what="the resent key is acked")["status"] == "finished"
    code, out, err = _cli(s, capsys, "keys", "activate", new_kid)
    assert code == 0 and "1 of 1 nodes" in out, err


def _published(system, cmd_id: str) -> bool:
    with _db(system) as db:
        return db.get(Command, cmd_id).published_at is not None
