"""A speaker node as someone else would write it from PROTOCOL.md alone: it imports nothing of
ours (only paho-mqtt, cryptography and the standard library)."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion


class ThirdPartyNode:
    def __init__(self, provisioned: dict):
        self.p = provisioned
        self.node = provisioned["id"]
        self.prefix = provisioned["topic_prefix"]
        self.keys = {k["kid"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(k["public_key"]))
                     for k in provisioned["server_keys"]}
        self.verified: list[dict] = []
        self.refused: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.node, clean_session=False)
        m = provisioned["mqtt"]
        self.c.username_pw_set(m["username"], m["password"])
        self.c.will_set(f"{self.prefix}/nodes/{self.node}/state",
                        json.dumps({"v": 1, "online": False}), qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect(m["host"], m["port"])
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props):
        for t in (f"{self.prefix}/nodes/{self.node}/desired",
                  f"{self.prefix}/nodes/{self.node}/cmd",
                  f"{self.prefix}/groups/all/cmd",
                  *[f"{self.prefix}/groups/{g}/cmd" for g in self.p["groups"]]):
            client.subscribe(t, 1)
        client.publish(f"{self.prefix}/nodes/{self.node}/state",
                       json.dumps({"v": 1, "online": True}), qos=1, retain=True)

    def check(self, topic: str, env: dict) -> str | None:
        """None when the envelope is good, else the rejection reason."""
        if not isinstance(env, dict) or env.get("v") != 1 or "to" not in env:
            return "malformed"
        key = self.keys.get(env.get("kid"))
        if key is None:
            return "unknown_kid"
        unsigned = {k: v for k, v in env.items() if k != "sig"}
        data = json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        try:
            key.verify(base64.b64decode(env.get("sig", "")), data)
        except (InvalidSignature, ValueError):
            return "bad_signature"
        kind = topic.rsplit("/", 1)[1]
        if env["to"] != f"node:{self.node}" and not topic.startswith(f"{self.prefix}/groups/"):
            return "wrong_target"
        if (env["type"] == "desired") != (kind == "desired"):
            return "wrong_target"
        now = int(time.time() * 1000)
        if now > env["exp"]:
            return "expired"
        if env["ts"] > now + 300_000:
            return "future"
        return None

    def _on_message(self, client, userdata, msg):
        env = json.loads(msg.payload)
        reason = self.check(msg.topic, env)
        with self.cond:
            if reason:
                self.refused.append((env.get("id"), reason))
            else:
                self.verified.append(env)
            self.cond.notify_all()
        if reason is None and env["type"] != "desired":
            self.event({"type": "ack", "cmd_id": env["id"], "status": "received"})
            self.event({"type": "ack", "cmd_id": env["id"], "status": "finished"})

    def event(self, fields: dict) -> None:
        body = {"v": 1, "id": str(uuid.uuid4()), "ts": int(time.time() * 1000), **fields}
        self.c.publish(f"{self.prefix}/nodes/{self.node}/events", json.dumps(body), qos=1)

    def wait_verified(self, type_: str, timeout: float = 10.0) -> dict | None:
        with self.cond:
            self.cond.wait_for(lambda: any(e["type"] == type_ for e in self.verified), timeout)
            return next((e for e in self.verified if e["type"] == type_), None)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
