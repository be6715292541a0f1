"""Helpers for the agent tests (their fixtures: tests/conftest.py, tests/agent/conftest.py): a
local HTTP media server, a signing key, and ``NodeHarness``: one in-process Agent with a
file-sink player on the ``broker`` fixture's Mosquitto, watched by a client on the server account.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.agent import Agent
from device_agent.config import load_config
from device_agent import schemas
from device_agent.protocol import envelope_json, public_key_b64, sign_envelope
from tests.mqtt_helpers import Client, wait_until_accepted

WAIT_S = 10.0


# --- media ---------------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class MediaServer:
    """Serves ``media_dir`` on 127.0.0.1; ``media(name)`` is the protocol's media object."""

    def __init__(self, directory: Path):
        self.directory = directory
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def media(self, name: str, *, sha256: str | None = None) -> dict:
        path = self.directory / f"{name}.mp3"
        data = path.read_bytes()
        seconds = {"long": 3, "blip": 0.3}.get(name, 1)
        return {"sha256": sha256 or hashlib.sha256(data).hexdigest(),
                "url": f"{self.base}/{name}.mp3", "bytes": len(data),
                "duration_ms": int(seconds * 1000)}

    def item(self, name: str, item_id: str | None = None, **media_kw) -> dict:
        return {"id": item_id or f"{name}-{uuid.uuid4().hex[:6]}", "title": name,
                "media": self.media(name, **media_kw)}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- signing -------------------------------------------------------------------------------------

class Signer:
    """A server signing key; ``envelope`` builds a signed envelope at the current time."""

    def __init__(self, kid: str = "srv-test-1"):
        self.kid = kid
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    def envelope(self, type_: str, to: str, body: dict, *, ttl_ms: int = 60_000,
                 ts: int | None = None, msg_id: str | None = None) -> dict:
        now = int(time.time() * 1000) if ts is None else ts
        return sign_envelope(self.key, self.kid, type_, to, body, now, ttl_ms, msg_id)


# --- the node under test -------------------------------------------------------------------------

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def to_toml(data: dict) -> str:
    """Enough TOML for the agent's config: scalars, then tables, then arrays of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v
                                                 and isinstance(v[0], dict))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for entry in v:
                lines += ["", f"[[{k}]]"] + [f"{kk} = {_toml_value(vv)}"
                                               for kk, vv in entry.items()]
    return "\n".join(lines) + "\n"


class NodeHarness:
    """One node: its broker account, config file, Agent (file sink), and a server-side client
    that records everything under the node's topics."""

    def __init__(self, broker, tmp_path: Path, media: MediaServer, *, node: str = "hp-01-a",
                 groups=("area-1",), realtime: bool = False, telemetry_s: int = 30,
                 amplifier=None, signer: Signer | None = None, player=None, recorder=None,
                 probe=None, **extra):
        self.broker, self.media, self.node = broker, media, node
        self.groups = list(groups)
        self.amplifier = amplifier
        self.player = player  # a Player to use instead of the config's file sink
        self.recorder = recorder  # a Recorder for the acoustic test instead of arecord
        self.probe = probe  # a MachineProbe for telemetry instead of one on this machine
        self.signer = signer or Signer()
        self.password = uuid.uuid4().hex
        self.dir = tmp_path / f"node-{node}"
        self.sink = self.dir / "sink"
        self.state = self.dir / "state"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_data = {
            "node_id": node, "topic_prefix": broker.prefix, "groups": self.groups,
            "state_dir": str(self.state), "telemetry_s": telemetry_s, "tz": "Asia/Ho_Chi_Minh",
            "mqtt": {"host": broker.host, "port": broker.port, "username": node,
                     "password": self.password, "tls": False, "ca_file": "",
                     "reconnect_min_s": 0.1, "reconnect_max_s": 0.4},
            "server_keys": [{"kid": self.signer.kid, "public_key": self.signer.public_key}],
            "player": {"kind": "file", "sink_dir": str(self.sink), "realtime": realtime},
            "amp": {"kind": "none", "gpio_pin": 17},
            "system": {"reboot_command": f"touch {self.dir / 'rebooted'}"},
            **extra,
        }
        self.config_path = self.dir / "agent.toml"
        self.config_path.write_text(to_toml(self.config_data), encoding="utf-8")
        broker.add_node(node, self.password, self.groups)
        wait_until_accepted(broker.host, broker.port, node, self.password)
        self.server = self.connect_server()
        self.agent: Agent | None = None

    # --- topics ----------------------------------------------------------------------------------
    def topic(self, kind: str) -> str:
        return f"{self.broker.prefix}/nodes/{self.node}/{kind}"

    def group_topic(self, group: str) -> str:
        return f"{self.broker.prefix}/groups/{group}/cmd"

    # --- lifecycle -------------------------------------------------------------------------------
    def connect_server(self, client_id: str | None = None) -> Client:
        c = Client(self.broker.host, self.broker.port, self.broker.server_user,
                   self.broker.server_password, client_id=client_id or f"srv-{self.node}",
                   clean=False)
        assert c.connect()
        c.subscribe(f"{self.broker.prefix}/nodes/{self.node}/#")
        return c

    def start_agent(self, wait_online: bool = True) -> Agent:
        mark = len(self.server.messages)
        self.agent = Agent(load_config(self.config_path), amplifier=self.amplifier,
                           player=self.player, recorder=self.recorder, probe=self.probe)
        self.agent.start()
        if wait_online:
            assert self.wait_message(lambda t, v: t == self.topic("state")
                                     and v.get("online") is True, since=mark), "never online"
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def restart_agent(self) -> Agent:
        self.stop_agent()
        return self.start_agent()

    def close(self) -> None:
        self.stop_agent()
        self.server.close()
        self.check_schemas()

    def check_schemas(self) -> None:
        """Everything the node published fits the protocol's JSON Schemas."""
        for topic, payload, _ in list(self.server.messages):
            kind = topic.rsplit("/", 1)[-1]
            schema = {"events": schemas.EVENT, "state": schemas.STATE,
                      "telemetry": schemas.TELEMETRY}.get(kind)
            if schema is not None and topic.startswith(self.topic("")[:-1]):
                value = self._json(payload)
                problem = schemas.first_error(schema, value)
                assert problem is None, f"{kind} message {value} breaks its schema: {problem}"

    # --- sending ---------------------------------------------------------------------------------
    def envelope(self, type_: str, body: dict, *, to: str | None = None,
                 signer: Signer | None = None, **kw) -> dict:
        return (signer or self.signer).envelope(type_, to or f"node:{self.node}", body, **kw)

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        if isinstance(payload, dict):
            payload = envelope_json(payload)
        self.server.publish(topic, payload, retain=retain)

    def send(self, type_: str, body: dict, *, topic: str | None = None, **kw) -> dict:
        """Sign and publish a command on the node's cmd topic, or a desired state (retained,
        as the server does) on its desired topic; return the envelope."""
        env = self.envelope(type_, body, **kw)
        kind = "desired" if type_ == "desired" else "cmd"
        self.publish(topic or self.topic(kind), env, retain=kind == "desired")
        return env

    def play(self, name: str = "short", priority: int = 3, item_id: str | None = None,
             **body) -> dict:
        return self.send("play", {"item": self.media.item(name, item_id), "priority": priority,
                                  **body})

    # --- observing -------------------------------------------------------------------------------
    def _json(self, payload):
        try:
            return json.loads(payload)
        except ValueError:
            return None

    def wait_message(self, predicate, timeout: float = WAIT_S, since: int = 0):
        """The first message (topic, JSON) from index ``since`` on that fits, or None."""
        c = self.server
        deadline = time.monotonic() + timeout
        with c._cond:
            while True:
                for topic, payload, _ in c.messages[since:]:
                    value = self._json(payload)
                    if isinstance(value, dict) and predicate(topic, value):
                        return topic, value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                c._cond.wait(left)

    def events(self, type_: str | None = None, **match) -> list[dict]:
        out = []
        for topic, payload, _ in list(self.server.messages):
            if topic != self.topic("events"):
                continue
            value = self._json(payload)
            if (isinstance(value, dict) and (type_ is None or value.get("type") == type_)
                    and all(value.get(k) == v for k, v in match.items())):
                out.append(value)
        return out

    def wait_event(self, type_: str, timeout: float = WAIT_S, **match) -> dict:
        found = self.wait_message(lambda t, v: t == self.topic("events")
                                  and v.get("type") == type_
                                  and all(v.get(k) == val for k, val in match.items()), timeout)
        assert found, f"no {type_} event matching {match}; got {self.events()}"
        return found[1]

    def wait_ack(self, cmd_id: str, status: str, timeout: float = WAIT_S) -> dict:
        return self.wait_event("ack", timeout, cmd_id=cmd_id, status=status)

    def acks(self, cmd_id: str) -> list[str]:
        return [e["status"] for e in self.events("ack", cmd_id=cmd_id)]

    def marker(self) -> dict:
        """A round trip (an amp command): once its ack arrives, earlier messages were handled."""
        env = self.send("amp", {"on": True})
        self.wait_ack(env["id"], "finished")
        return env

    def sink_lines(self) -> list[dict]:
        path = self.sink / "played.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def wait_sink(self, predicate, timeout: float = WAIT_S) -> dict:
        """The first line of the sink that fits. The sink is a file: it is read again whenever
        a message of the node arrives (each play's line is written before its ``played``
        event is sent) and at least every 50 ms (offline, nothing arrives), within the bound."""
        c = self.server
        deadline = time.monotonic() + timeout
        while True:
            for line in self.sink_lines():
                if predicate(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no sink line fits; lines: {self.sink_lines()}")
            with c._cond:
                c._cond.wait(min(left, 0.05))
