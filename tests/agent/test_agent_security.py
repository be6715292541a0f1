"""What the node refuses, and how it says so: forged, unknown-key, expired, future, misdirected
and malformed envelopes (ack ``rejected`` + alarm ``rejected_command``, same reason), replays
(alarm only, also after a restart), key changes, unknown command types."""
import base64
import time
import uuid

import pytest

from device_agent.protocol import canonical_bytes
from tests.agent_harness import Signer, to_toml


def resign(signer: Signer, env: dict) -> dict:
    """Sign an envelope as given (floats, missing fields and all), bypassing sign_envelope."""
    env = {k: v for k, v in env.items() if k != "sig"}
    env["sig"] = base64.b64encode(signer.key.sign(canonical_bytes(env))).decode()
    return env


def _forged(h):
    env = h.envelope("set_volume", {"volume": 10})
    return h.topic("cmd"), resign(Signer(h.signer.kid), env)   # same kid, another key


def _tampered(h):
    env = h.envelope("set_volume", {"volume": 10})
    env["body"]["volume"] = 100
    return h.topic("cmd"), env


def _unknown_kid(h):
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 10}, signer=Signer("srv-other"))


def _expired(h):
    now = int(time.time() * 1000)
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 10}, ts=now - 120_000,
                                      ttl_ms=60_000)


def _future(h):
    now = int(time.time() * 1000)
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 10}, ts=now + 10 * 60_000)


def _other_node(h):
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 10}, to="node:hp-99-z")


def _group_to_on_node_topic(h):
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 10}, to="group:area-1")


def _to_other_group_on_group_topic(h):
    return h.group_topic("area-1"), h.envelope("set_volume", {"volume": 10}, to="group:area-7")


def _desired_on_cmd_topic(h):
    return h.topic("cmd"), h.envelope("desired", {"version": 5})


def _command_on_desired_topic(h):
    return h.topic("desired"), h.envelope("set_volume", {"volume": 10})


def _float(h):
    env = h.envelope("set_volume", {"volume": 10})
    env["body"]["volume"] = 50.5
    return h.topic("cmd"), resign(h.signer, env)


def _missing_to(h):
    env = h.envelope("set_volume", {"volume": 10})
    del env["to"]
    return h.topic("cmd"), resign(h.signer, env)


def _v2(h):
    env = h.envelope("set_volume", {"volume": 10})
    env["v"] = 2
    return h.topic("cmd"), resign(h.signer, env)


def _play_without_item(h):
    return h.topic("cmd"), h.envelope("play", {"priority": 3})


def _volume_150(h):
    return h.topic("cmd"), h.envelope("set_volume", {"volume": 150})


def _no_signature(h):
    env = h.envelope("set_volume", {"volume": 10})
    del env["sig"]
    return h.topic("cmd"), env


CASES = [
    ("forged_signature", _forged, "bad_signature"),
    ("tampered_body", _tampered, "bad_signature"),
    ("missing_signature", _no_signature, "bad_signature"),
    ("unknown_kid", _unknown_kid, "unknown_kid"),
    ("expired", _expired, "expired"),
    ("ts_in_future", _future, "future"),
    ("to_other_node", _other_node, "wrong_target"),
    ("group_to_on_node_topic", _group_to_on_node_topic, "wrong_target"),
    ("to_other_group_on_group_topic", _to_other_group_on_group_topic, "wrong_target"),
    ("desired_on_cmd_topic", _desired_on_cmd_topic, "wrong_target"),
    ("command_on_desired_topic", _command_on_desired_topic, "wrong_target"),
    ("float_in_body", _float, "malformed"),
    ("missing_to", _missing_to, "malformed"),
    ("version_2", _v2, "malformed"),
    ("play_without_item", _play_without_item, "malformed"),
    ("volume_150", _volume_150, "malformed"),
]


@pytest.mark.parametrize("build,reason", [(b, r) for _, b, r in CASES],
                         ids=[name for name, _, _ in CASES])
def test_bad_envelope_is_rejected_with_reason_in_ack_and_alarm(node, build, reason):
    topic, env = build(node)
    node.publish(topic, env)
    ack = node.wait_ack(env["id"], "rejected")
    assert ack["reason"] == reason
    alarm = node.wait_event("alarm", code="rejected_command", cmd_id=env["id"])
    assert alarm["reason"] == reason
    node.marker()
    assert node.acks(env["id"]) == ["rejected"]          # nothing was carried out
    assert node.agent.status()["volume"] == 80


def test_unreadable_payload_raises_only_an_alarm(node):
    node.publish(node.topic("cmd"), b"{not json")
    alarm = node.wait_event("alarm", code="rejected_command")
    assert alarm["reason"] == "malformed" and "cmd_id" not in alarm
    node.marker()
    assert [e for e in node.events("ack") if e["status"] == "rejected"] == []


def test_group_command_for_group_no_longer_in_list_is_rejected_wrong_target(make_node):
    """The persistent session still holds an old group's subscription after re-provisioning:
    what arrives through it is refused."""
    h = make_node(groups=("area-1", "area-2"))
    h.stop_agent()
    h.config_data["groups"] = ["area-1"]
    h.config_path.write_text(to_toml(h.config_data))
    env = h.envelope("set_volume", {"volume": 10}, to="group:area-2")
    h.publish(h.group_topic("area-2"), env)     # queued in the node's session while it is off
    h.start_agent()
    assert h.wait_ack(env["id"], "rejected")["reason"] == "wrong_target"
    assert h.wait_event("alarm", cmd_id=env["id"])["reason"] == "wrong_target"


def test_group_command_for_own_group_and_all_is_accepted(node):
    for group in ("area-1", "all"):
        env = node.envelope("set_volume", {"volume": 30}, to=f"group:{group}")
        node.publish(node.group_topic(group), env)
        node.wait_ack(env["id"], "finished")
    assert node.agent.status()["volume"] == 30


def test_replay_raises_alarm_only_also_after_agent_restart(node):
    env = node.send("set_volume", {"volume": 40})
    node.wait_ack(env["id"], "finished")
    node.publish(node.topic("cmd"), env)
    alarm = node.wait_event("alarm", code="rejected_command", cmd_id=env["id"])
    assert alarm["reason"] == "replayed"
    node.restart_agent()
    node.publish(node.topic("cmd"), env)
    node.marker()
    alarms = node.events("alarm", cmd_id=env["id"], reason="replayed")
    assert len(alarms) == 2
    assert node.acks(env["id"]) == ["received", "finished"]


def test_retained_desired_redelivered_after_restart_is_silent(node):
    env = node.send("desired", {"version": 1, "volume": 55})
    node.wait_event("desired_applied", version=1)
    node.restart_agent()
    node.marker()
    assert node.events("alarm") == []
    assert len(node.events("desired_applied")) == 1
    assert node.agent.status()["volume"] == 55
    assert node.acks(env["id"]) == []


def test_keys_add_revoke_and_refuse_to_revoke_last_key(node):
    k1, k2 = node.signer, Signer("srv-2026-2")
    add = node.send("keys", {"keys": [{"kid": k2.kid, "public_key": k2.public_key}]})
    node.wait_ack(add["id"], "finished")
    by_k2 = node.send("set_volume", {"volume": 21}, signer=k2)
    node.wait_ack(by_k2["id"], "finished")

    revoke = node.send("keys", {"revoke": [k1.kid]}, signer=k2)
    node.wait_ack(revoke["id"], "finished")
    by_k1 = node.send("set_volume", {"volume": 22})
    assert node.wait_ack(by_k1["id"], "rejected")["reason"] == "unknown_kid"

    last = node.send("keys", {"revoke": [k2.kid]}, signer=k2)
    assert node.wait_ack(last["id"], "failed")["reason"] == "last_key"

    node.restart_agent()                          # trust is kept in state_dir
    assert node.agent.status()["trusted_kids"] == [k2.kid]
    again = node.send("set_volume", {"volume": 23}, signer=k2)
    node.wait_ack(again["id"], "finished")
    by_k1 = node.send("set_volume", {"volume": 24})
    assert node.wait_ack(by_k1["id"], "rejected")["reason"] == "unknown_kid"


def test_unknown_command_type_gets_only_failed_unsupported_type(node):
    env = node.send("dance", {"style": "múa lân"})
    assert node.wait_ack(env["id"], "failed")["reason"] == "unsupported_type"
    node.marker()
    assert node.acks(env["id"]) == ["failed"]


def test_event_ids_are_unique(node):
    for volume in (10, 20, 30):
        node.wait_ack(node.send("set_volume", {"volume": volume})["id"], "finished")
    ids = [e["id"] for e in node.events()]
    assert len(ids) == len(set(ids)) and all(uuid.UUID(i) for i in ids)
