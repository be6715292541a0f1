"""Fan-out of "broadcast now" to N simulated nodes of one ward, against the raw broker.

Starts a whole system the way `make run` does (its own Mosquitto on free ports, the web under
waitress, the dispatcher process), provisions two wards (100 and 1,000 nodes) through the API,
and runs every node in this one asyncio process. The node side imports nothing of the project:
a small MQTT 3.1.1 client written here (persistent session, Last Will), Ed25519 verification of
every envelope with `cryptography`, acks `received`/`started`/`finished` and `played` events as
docs/protocol.md says. It measures:

- "broadcast now" through the API to the N nodes of a ward: from the API call to the last node's
  receipt of the play command, and to the server having every node's `received` ack (read from
  the database, which is what staff see); p50 and max over ``--runs``; in the same run one QoS 1
  message published by the server's account to the same group topic (the raw broker fan-out to
  the same N subscribers) and the ratio;
- at every N, the start spread of a scheduled broadcast to the ward (start_at a few seconds
  ahead; ``--spread-runs`` broadcasts, their starts pooled): each node starts on its own clock,
  the deviations of the actual starts from start_at;
- the desired-state rebuild when the 1,000-node ward gets a new daily series: from the API call
  to the last node holding a desired state with the series' slot.

``--write-docs`` rewrites its section of docs/benchmarks.md. Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import resource
import secrets
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

try:  # the server's PostgreSQL driver (its `postgres` extra, in `make`'s venv): `--database-url`
    import psycopg
    DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
except ImportError:  # SQLite only
    DB_ERRORS = (sqlite3.Error,)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench/fanout.py:begin -->", "<!-- bench/fanout.py:end -->"
PREFIX = "loa/v1"
PLAY_S = 1.0  # how long a simulated node "plays" before `finished` and `played`
# (payload, public key) of the envelopes whose signature checked out (SimNode.verified)
VERIFIED: set[tuple[bytes, bytes]] = set()
VERIFIED_MAX = 4096
SHARE_VERIFIED = True


# --- the node side: a minimal MQTT 3.1.1 client (no project imports) ---------------------------

def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _remaining_length(buf: bytearray, at: int) -> tuple[int, int] | None:
    """(the packet's remaining length, where its body starts) from the fixed header whose
    length bytes begin at ``at``; None while they have not all arrived."""
    n, mult = 0, 1
    for i in range(at, min(at + 4, len(buf))):
        byte = buf[i]
        n += (byte & 0x7F) * mult
        if not byte & 0x80:
            return n, i + 1
        mult *= 128
    if len(buf) - at >= 4:
        raise ConnectionError("malformed remaining length")
    return None


class Mqtt(asyncio.Protocol):
    """Just what a node needs: CONNECT (will, persistent session), SUBSCRIBE, PUBLISH QoS 0/1
    both ways, PUBACK, PINGREQ. ``on_message(topic, payload, t_recv)``.

    10,000 of these share the server's two cores in one process (real nodes run on CPUs of
    their own), so a node costs as little as it can: packets are parsed where the bytes arrive
    (an asyncio Protocol: no reader task woken for each packet), and what a node writes in one
    turn of the event loop goes out in one send (a command's PUBACK and the acks that answer
    it: one system call, not three)."""

    def __init__(self, on_message):
        self.on_message = on_message
        self.mid = 0
        self.acks: dict[int, asyncio.Future] = {}
        self.connack: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None  # None until connected
        self.closed: asyncio.Future | None = None  # done once the connection is gone
        self.buf = bytearray()
        self.out: list[bytes] | None = None  # what waits for this turn's send (_send)

    def _next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid

    async def connect(self, host, port, client_id, username, password, will=None,
                      clean=False, keepalive=300) -> None:
        loop = asyncio.get_running_loop()
        self.connack, self.closed = loop.create_future(), loop.create_future()
        await loop.create_connection(lambda: self, host, port)
        flags = 0x80 | 0x40 | (0x02 if clean else 0)
        payload = _str(client_id)
        if will:
            topic, msg, qos, retain = will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        payload += _str(username) + _str(password)
        self._send(_packet(0x10, _str("MQTT") + bytes([4, flags])
                           + struct.pack("!H", keepalive) + payload))
        code = await asyncio.wait_for(self.connack, 30)
        if code != 0:
            raise ConnectionError(f"CONNACK {code} for {client_id}")

    async def subscribe(self, topics: list[str], qos: int = 1) -> None:
        mid = self._next_mid()
        fut = self.acks[mid] = asyncio.get_running_loop().create_future()
        body = struct.pack("!H", mid) + b"".join(_str(t) + bytes([qos]) for t in topics)
        self._send(_packet(0x82, body))
        await asyncio.wait_for(fut, 30)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> asyncio.Future | None:
        body = _str(topic)
        fut = None
        if qos:
            mid = self._next_mid()
            fut = self.acks[mid] = asyncio.get_running_loop().create_future()
            body += struct.pack("!H", mid)
        self._send(_packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload))
        return fut

    def ping(self) -> None:
        self._send(b"\xc0\x00")

    def up(self) -> bool:
        """Connected, and the connection not closing."""
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, packet: bytes) -> None:
        """``packet`` goes out with whatever else this client writes in the same turn of the
        event loop, in one send."""
        if self.out is None:
            self.out = [packet]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self.out.append(packet)

    def _flush(self) -> None:
        out, self.out = self.out, None
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connack is not None and not self.connack.done():
            self.connack.set_exception(ConnectionError("connection closed before CONNACK"))
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        at = 0
        try:
            while len(buf) - at >= 2:
                header = _remaining_length(buf, at + 1)
                if header is None:
                    break
                n, body_at = header
                if len(buf) < body_at + n:
                    break
                self._packet(buf[at], bytes(buf[body_at:body_at + n]))
                at = body_at + n
        except ConnectionError:
            if self.transport is not None:
                self.transport.abort()
        del buf[:at]

    def _packet(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == 3:  # PUBLISH
            t = time.time()
            qos = (first >> 1) & 3
            tlen = struct.unpack_from("!H", body)[0]
            topic = body[2:2 + tlen].decode("utf-8")
            rest = body[2 + tlen:]
            if qos:
                self._send(b"\x40\x02" + rest[:2])
                rest = rest[2:]
            self.on_message(topic, rest, t)
        elif kind == 2:  # CONNACK
            if self.connack is not None and not self.connack.done():
                self.connack.set_result(body[1])
        elif kind in (4, 9):  # PUBACK, SUBACK
            fut = self.acks.pop(struct.unpack_from("!H", body)[0], None)
            if fut is not None and not fut.done():
                fut.set_result(time.time())


def canonical(env: dict) -> bytes:
    unsigned = {k: v for k, v in env.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


class Recorder:
    """What every simulated node saw, keyed so the bench can read it back."""

    def __init__(self):
        self.play: dict[str, list[float]] = defaultdict(list)     # item id -> receipts
        self.raw: dict[bytes, list[float]] = defaultdict(list)    # raw payload -> receipts
        self.starts: dict[str, list[tuple[float, int]]] = defaultdict(list)  # item -> (t, at)
        self.desired: dict[str, list[float]] = defaultdict(list)  # item in schedule -> times
        self.rejected = 0


class SimNode:
    """One speaker node as docs/protocol.md describes it (no audio: it "plays" for PLAY_S)."""

    def __init__(self, answer: dict, rec: Recorder):
        self.id = answer["id"]
        self.mqtt_conf = answer["mqtt"]
        self.groups = answer["groups"]
        self.keys = {k["kid"]: Ed25519PublicKey.from_public_bytes(
            base64.b64decode(k["public_key"])) for k in answer["server_keys"]}
        self.rec = rec
        self.seen: set[str] = set()
        self.desired_version = 0
        self.client = Mqtt(self.on_message)

    def topic(self, kind: str) -> str:
        return f"{PREFIX}/nodes/{self.id}/{kind}"

    async def start(self) -> None:
        m = self.mqtt_conf
        offline = json.dumps({"v": 1, "online": False}).encode()
        await self.client.connect(m["host"], m["port"], self.id, m["username"], m["password"],
                                  will=(self.topic("state"), offline, 1, True))
        subs = [self.topic("desired"), self.topic("cmd"), f"{PREFIX}/groups/all/cmd"]
        subs += [f"{PREFIX}/groups/{g}/cmd" for g in self.groups]
        await self.client.subscribe(subs)
        self.client.publish(self.topic("state"), json.dumps(
            {"v": 1, "online": True, "ts": int(time.time() * 1000)}).encode(), retain=True)

    def event(self, type_: str, **fields) -> None:
        ev = {"v": 1, "id": str(uuid.uuid4()), "type": type_, "ts": int(time.time() * 1000),
              **fields}
        self.client.publish(self.topic("events"), json.dumps(ev).encode())

    def envelope(self, topic: str, payload: bytes) -> dict | None:
        try:
            env = self.verified(payload)
        except (ValueError, KeyError, TypeError, InvalidSignature):
            self.rec.rejected += 1
            return None
        scope = "groups" if "/groups/" in topic else "nodes"
        name = topic.split("/")[-2]
        to = f"{'group' if scope == 'groups' else 'node'}:{name}"
        if env.get("to") != to or env["exp"] < time.time() * 1000:
            self.rec.rejected += 1
            return None
        return env

    def verified(self, payload: bytes) -> dict:
        """The envelope when its signature checks out with the node's key of its ``kid``;
        raises otherwise. A group's command reaches every node with the same bytes: each real
        node checks them on its own CPU, at the same time as the others, so this one process,
        on the server's own cores, checks each distinct envelope under each key once
        (VERIFIED) and every node still checks what is addressed to it and when it expires
        (envelope). ``--verify-each`` (SHARE_VERIFIED False): every node checks every one."""
        env = json.loads(payload)
        key = self.keys[env["kid"]]
        memo = (payload, key.public_bytes_raw())
        if SHARE_VERIFIED and memo in VERIFIED:
            return env
        key.verify(base64.b64decode(env["sig"]), canonical(env))
        if SHARE_VERIFIED:
            if len(VERIFIED) >= VERIFIED_MAX:
                VERIFIED.clear()
            VERIFIED.add(memo)
        return env

    def on_message(self, topic: str, payload: bytes, t: float) -> None:
        if payload.startswith(b"RAW "):
            self.rec.raw[payload].append(t)
            return
        if topic.endswith("/desired"):
            self.on_desired(topic, payload, t)
            return
        env = self.envelope(topic, payload)
        if env is None or env["id"] in self.seen:
            return
        self.seen.add(env["id"])
        cmd_id, body = env["id"], env["body"]
        if env["type"] != "play":
            self.event("ack", cmd_id=cmd_id, status="received")
            self.event("ack", cmd_id=cmd_id, status="finished")
            return
        item = body["item"]
        self.rec.play[item["id"]].append(t)
        self.event("ack", cmd_id=cmd_id, status="received")
        loop = asyncio.get_running_loop()
        start_at = body.get("start_at")
        delay = max(0.0, start_at / 1000 - time.time()) if start_at else 0.0
        if delay:
            loop.call_later(delay, self.begin, cmd_id, item, start_at)
        else:  # now: its `started` goes out with the `received` (Mqtt._send)
            self.begin(cmd_id, item, start_at)

    def begin(self, cmd_id: str, item: dict, start_at: int | None) -> None:
        started = time.time()  # first: what the node's clock says when it starts
        if start_at:
            self.rec.starts[item["id"]].append((started, start_at))
        self.ack(cmd_id, "started")
        asyncio.get_running_loop().call_later(self.play_s(item), self.end, cmd_id, item,
                                              started, start_at)

    def play_s(self, item: dict) -> float:
        """How long the node "plays" ``item`` before `finished` and `played`."""
        return PLAY_S

    def ack(self, cmd_id: str, status: str) -> None:
        self.event("ack", cmd_id=cmd_id, status=status)

    def end(self, cmd_id: str, item: dict, started: float, start_at: int | None) -> None:
        self.event("ack", cmd_id=cmd_id, status="finished")
        self.event("played", item_id=item["id"], cmd_id=cmd_id, sha256=item["media"]["sha256"],
                   scheduled_at=start_at, started_at=int(started * 1000),
                   ended_at=int(time.time() * 1000), result="completed")

    def on_desired(self, topic: str, payload: bytes, t: float) -> None:
        if not payload:
            return
        env = self.envelope(topic, payload)
        if env is None or env["type"] != "desired":
            return
        body = env["body"]
        if body["version"] <= self.desired_version:
            return
        self.desired_version = body["version"]
        if body.get("groups"):
            self.groups = body["groups"]
        for item_id in {e["item"]["id"] for e in body["schedule"]}:
            self.rec.desired[item_id].append(t)
        self.apply(body)
        self.event("desired_applied", version=body["version"])

    def apply(self, body: dict) -> None:
        """What a node does with a new desired state beyond holding it (here: nothing)."""


# --- the bench side: a running system, provisioned through its API ------------------------------

def accepted(port: int, username: str, password: str) -> bool:
    """One MQTT 3.1.1 CONNECT; whether the broker answers CONNACK 0 (no project imports)."""
    def s(v: str) -> bytes:
        b = v.encode()
        return struct.pack("!H", len(b)) + b
    body = s("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + s(username) + s(username) + \
        s(password)
    length, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x10" + length + body)
        reply = sock.recv(4)
        return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0


def wait_accepted(port: int, username: str, password: str, timeout: float = 60.0) -> float:
    """Seconds until the broker takes ``username``'s password (a reload reaches it)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if accepted(port, username, password):
            return time.monotonic() - t
        time.sleep(0.01)
    raise RuntimeError(f"{username} not accepted by the broker within {timeout} s")


class System:
    """Mosquitto, web (waitress) and dispatcher as `make run` starts them, in a temp folder."""

    def __init__(self, base: Path, dispatcher: bool = True,
                 trace_dispatcher: tuple[Path, float] | None = None, bridge_workers: int = 0,
                 database_url: str | None = None):
        """``trace_dispatcher``: (file, seconds) to run the dispatcher under tracemalloc
        (bench/_traced.py), its growth by source line written to the file that often.
        ``bridge_workers``: that many bridge-only processes beside the dispatcher, sharing the
        nodes' telemetry and events with it (docs/scaling.md; procs[2:]).
        ``database_url``: an empty PostgreSQL database for the instance instead of its SQLite
        file; ``db`` is what ``connect_ro`` reads (the file, or that URL)."""
        sys.path.insert(0, str(ROOT))
        import tomli_w
        from server.cli import init_instance
        from server.config import load_settings
        from server.mosquitto import MosquittoProcess, free_port
        self.base = base
        self.instance = base / "instance"
        self.instance.mkdir(mode=0o700, parents=True)
        self.mqtt_port, self.web_port = free_port(), free_port()
        self.mqtt_password = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.web_port}"
        config = {"mqtt_host": "127.0.0.1", "mqtt_port": self.mqtt_port,
                  "mqtt_username": "loa-dispatcher", "mqtt_password": self.mqtt_password,
                  "mosquitto_dir": str(base / "mosquitto"), "public_url": self.url,
                  "tts_engines": ["espeak"]}
        if bridge_workers:
            config.update(bridge_shared_group="loa", bridge_workers=bridge_workers)
        if database_url:
            config["database_url"] = database_url
        (self.instance / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        self.admin_password = secrets.token_urlsafe(16)
        init_instance(self.instance, self.admin_password)
        url = load_settings(self.instance).database_url
        self.db: Path | str = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") \
            else url
        py = sys.executable
        subprocess.run([py, "-m", "server.cli", "--instance", str(self.instance), "sync-broker"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        self.broker = MosquittoProcess(base / "mosquitto", self.mqtt_port)
        self.broker.start()
        self.procs = []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name, args in (("web", ["-m", "server", "--instance", str(self.instance),
                                    "--port", str(self.web_port)]),
                           ("dispatcher", ["-m", "schedules", "--instance",
                                           str(self.instance)]),
                           *((f"bridge-{n}", ["-m", "schedules", "--instance", str(self.instance),
                                               "--bridge-only", str(n)])
                             for n in range(1, bridge_workers + 1)))[:2 + bridge_workers
                                                                       if dispatcher else 1]:
            if name == "dispatcher" and trace_dispatcher is not None:
                args = [str(ROOT / "bench" / "_traced.py"), str(trace_dispatcher[0]),
                        str(trace_dispatcher[1]), *args]
            with open(base / f"{name}.log", "ab") as log:  # the child keeps its own copy
                self.procs.append(subprocess.Popen([py, *args], cwd=ROOT, stdout=log,
                                                   stderr=subprocess.STDOUT, env=env))
        self.http = requests.Session()
        deadline = time.monotonic() + 60
        while True:
            try:
                r = self.http.post(f"{self.url}/api/v1/auth/token", timeout=5, json={
                    "username": "admin", "password": self.admin_password})
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web did not start; see {base}/web.log")
            time.sleep(0.2)
        self.http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        self.local = threading.local()

    def bench_account(self, read_sys: bool = False) -> tuple[str, str]:
        """An account of the bench's own that may publish to the group topics (the broker
        makes the username the client id, so the dispatcher's account cannot be borrowed),
        and with ``read_sys`` read the broker's own figures ($SYS); added after provisioning,
        which rewrites the files from the registry."""
        from server.mosquitto import MosquittoFiles, password_hash
        user, password = "loa-bench", secrets.token_urlsafe(16)
        d = self.base / "mosquitto"
        with open(d / "passwd", "a", encoding="utf-8") as f:
            f.write(f"{user}:{password_hash(password)}\n")
        with open(d / "acl", "a", encoding="utf-8") as f:
            f.write(f"\nuser {user}\ntopic write {PREFIX}/groups/#\n"
                    + ("topic read $SYS/#\n" if read_sys else ""))
        MosquittoFiles(d).reload()
        # the broker reads both files at one reload: once it takes the password, the ACL too
        wait_accepted(self.mqtt_port, user, password)
        return user, password

    def post(self, path: str, body: dict | list | None) -> dict:
        http = getattr(self.local, "http", None)
        if http is None:  # one session per thread: provisioning runs a few at once
            http = self.local.http = requests.Session()
            http.headers.update(self.http.headers)
        r = http.post(f"{self.url}{path}", json=body, timeout=120)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        return r.json()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.broker.stop()


def approved(sysm: System, title: str, category: str, text: str) -> dict:
    """A bulletin written, submitted and approved through the API, as a ward's staff do: the
    approved bulletin (its media rendered, ``duration_ms``)."""
    made = sysm.post("/api/v1/bulletins", {"title": title, "category": category, "text": text})
    sysm.post(f"/api/v1/bulletins/{made['id']}/submit", None)
    return sysm.post(f"/api/v1/bulletins/{made['id']}/approve", None)


def libpq_url(url: str) -> str:
    """A database URL as libpq (psycopg) takes it: without SQLAlchemy's driver name."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class PgReader:
    """A PostgreSQL connection read as the benches read SQLite's: ``execute(sql, args)`` with
    ``?`` placeholders, each statement its own snapshot (autocommit)."""

    def __init__(self, url: str):
        self.con = psycopg.connect(libpq_url(url), autocommit=True)

    def execute(self, sql: str, args: tuple = ()):
        return self.con.execute(sql.replace("?", "%s"), args)

    def close(self) -> None:
        self.con.close()


def connect_ro(db: Path | str, timeout: float = 30):
    """A reading connection to the server's database: ``db`` is the SQLite file, or a
    PostgreSQL URL (``--database-url``). What the benches count and time, never written."""
    if isinstance(db, str):
        return PgReader(db)
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout,
                           check_same_thread=False)


def stored_time(value: str | dt.datetime) -> float:
    """A stored naive UTC time (SQLite gives its text, PostgreSQL a datetime) as time.time()."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC).timestamp()


def acked(db: Path | str, broadcast_id: int) -> int:
    """Deliveries of the broadcast whose node has acknowledged at least `received`."""
    con = connect_ro(db, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM deliveries WHERE broadcast_id = ? AND status "
                           "NOT IN ('pending', 'sent', 'cancelled')", (broadcast_id,)
                           ).fetchone()[0]
    finally:
        con.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def wait_for(predicate, timeout: float, step: float = 0.005) -> float | None:
    """time.time() when ``predicate()`` first held, None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        await asyncio.sleep(step)
    return None


async def fanout_run(sysm: System, rec: Recorder, raw: Mqtt, ward: dict, n: int,
                     bulletin_id: int, seq: int) -> dict:
    # the raw broker: one QoS 1 message of the envelope's size to the same subscribers
    payload = b"RAW %d " % seq + b"x" * 700
    t0 = time.time()
    raw.publish(f"{PREFIX}/groups/{ward['group']}/cmd", payload)
    t_raw = await wait_for(lambda: len(rec.raw[payload]) >= n, 30, 0.001)
    raw_ms = (max(rec.raw[payload]) - t0) * 1000 if t_raw else float("nan")
    await asyncio.sleep(0.5)
    # "broadcast now" through the API
    t0 = time.time()
    bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
        "bulletin_id": bulletin_id, "targets": {"areas": [ward["id"]]}})
    item = f"bc-{bc['id']}"
    t_api = time.time()
    got_all = await wait_for(lambda: len(rec.play[item]) >= n, 30, 0.001)
    t_acks = await wait_for(lambda: acked(sysm.db, bc["id"]) >= n, 30, 0.01)
    last = (max(rec.play[item]) - t0) * 1000 if got_all else float("nan")
    await asyncio.sleep(PLAY_S + 1.5)  # the played events go in before the next run
    return {"raw_ms": raw_ms, "last_ms": last, "api_ms": (t_api - t0) * 1000,
            "acks_ms": (t_acks - t0) * 1000 if t_acks else float("nan"),
            "received": len(rec.play[item])}


async def start_spread(sysm: System, rec: Recorder, ward: dict, n: int, bulletin_id: int,
                       lead_s: float = 8.0) -> dict:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=lead_s)
    bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
        "bulletin_id": bulletin_id, "targets": {"areas": [ward["id"]]},
        "start_at": start.isoformat().replace("+00:00", "Z")})
    item = f"bc-{bc['id']}"
    await wait_for(lambda: len(rec.starts[item]) >= n, lead_s + 30, 0.01)
    devs = [(t - at / 1000) * 1000 for t, at in rec.starts[item]]
    await asyncio.sleep(PLAY_S + 1.5)
    return {"devs": devs, "expected": n}


def spread_stats(runs: list[dict]) -> dict:
    """The starts of every broadcast of one N pooled (p50, p99, max of start minus start_at),
    and the widest first-to-last of any one broadcast."""
    devs = [d for r in runs for d in r["devs"]]
    if not devs:
        return {"broadcasts": len(runs), "n": 0, "expected": sum(r["expected"] for r in runs)}
    return {"broadcasts": len(runs), "n": len(devs),
            "expected": sum(r["expected"] for r in runs),
            "p50": pct(devs, 50), "p99": pct(devs, 99), "max": max(devs),
            "spread": max(max(r["devs"]) - min(r["devs"]) for r in runs if r["devs"])}


async def rebuild(sysm: System, rec: Recorder, ward: dict, n: int, bulletin_id: int,
                  k: int) -> dict:
    # a daily series at a free minute tomorrow-ish, each run another one (no conflict)
    start = (dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
             + dt.timedelta(hours=2, minutes=7 * k))
    t0 = time.time()
    bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
        "bulletin_id": bulletin_id, "targets": {"areas": [ward["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat().replace("+00:00", "Z")})
    item = f"bc-{bc['id']}"
    done = await wait_for(lambda: len(rec.desired[item]) >= n, 60, 0.005)
    return {"ms": (max(rec.desired[item]) - t0) * 1000 if done else float("nan"),
            "nodes": len(rec.desired[item])}


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


async def bench(args) -> dict:
    sizes = sorted(args.nodes)
    raise_fd_limit(2 * sum(sizes) + 1024)  # this process and the broker it starts
    base = Path(tempfile.mkdtemp(prefix="loa-bench-fanout-"))
    print(f"system in {base}", flush=True)
    sysm = await in_thread(System, base)
    rec = Recorder()
    nodes: list[SimNode] = []
    try:
        province = sysm.post("/api/v1/areas", {"name": "Tỉnh thử", "code": "BENCH",
                                               "kind": "province"})
        wards = {}
        gate = asyncio.Semaphore(4)
        for n in sizes:
            ward = sysm.post("/api/v1/areas", {"name": f"Phường {n}", "code": f"BENCH-W{n}",
                                               "kind": "ward", "parent_id": province["id"]})
            cluster = sysm.post("/api/v1/areas", {"name": f"Cụm {n}", "code": f"BENCH-W{n}-C",
                                                  "kind": "cluster", "parent_id": ward["id"]})
            wards[n] = ward
            t = time.monotonic()

            async def provision(i: int, cluster_id: int = cluster["id"], n: int = n) -> dict:
                async with gate:
                    return await in_thread(sysm.post, "/api/v1/nodes", {
                        "cluster_id": cluster_id, "name": f"Loa {i}", "id": f"w{n}-n{i:04d}"})
            answers = await asyncio.gather(*(provision(i) for i in range(n)))
            nodes += [SimNode(answer, rec) for answer in answers]
            ward["group"] = answers[0]["groups"][1]  # nearest first: cluster, ward, …
            print(f"provisioned {n} nodes in {time.monotonic() - t:.1f} s", flush=True)
        for i in range(0, len(nodes), 100):
            await asyncio.gather(*(node.start() for node in nodes[i:i + 100]))
        print(f"{len(nodes)} nodes connected", flush=True)

        async def keepalive():
            while True:
                await asyncio.sleep(60)
                for node in nodes:
                    node.client.ping()
        pinger = asyncio.create_task(keepalive())
        raw = Mqtt(lambda *_: None)
        user, password = await in_thread(sysm.bench_account)
        await raw.connect("127.0.0.1", sysm.mqtt_port, user, user, password, clean=True)
        # every node holds its first desired state before anything is measured
        await wait_for(lambda: all(nd.desired_version for nd in nodes), 120, 0.1)
        bulletin = approved(sysm, "Thông báo thử", "other", "Ủy ban nhân dân phường thông báo.")
        await asyncio.sleep(2)
        results: dict = {"fanout": {}, "spread": {}, "rebuild": []}
        seq = 0
        for n in sizes:
            runs = []
            for _ in range(args.runs):
                seq += 1
                r = await fanout_run(sysm, rec, raw, wards[n], n, bulletin["id"], seq)
                print(f"N={n}: {r}", flush=True)
                runs.append(r)
            results["fanout"][n] = runs
        for n in sizes:
            runs = [await start_spread(sysm, rec, wards[n], n, bulletin["id"])
                    for _ in range(args.spread_runs)]
            results["spread"][n] = spread_stats(runs)
            print(f"start spread N={n}: {results['spread'][n]}", flush=True)
        big = sizes[-1]
        for k in range(args.rebuilds):
            r = await rebuild(sysm, rec, wards[big], big, bulletin["id"], k)
            print(f"rebuild: {r}", flush=True)
            results["rebuild"].append(r)
        results["rejected"] = rec.rejected
        results["dispatcher_cpu_s"] = cpu_seconds(sysm.procs[1].pid)
        pinger.cancel()
        return results
    finally:
        await in_thread(sysm.stop)


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# --- report -------------------------------------------------------------------------------------

def machine() -> str:
    cpus = os.cpu_count()
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(line.split()[1] for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    mosq = mosq.splitlines()[0] if mosq else "mosquitto"
    return (f"{cpus} CPUs ({model}){mem}, Linux {platform.release()}, Python "
            f"{platform.python_version()}, {mosq}")


def report(results: dict, args, load_before: str, load_after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [BEGIN, '## Fan-out: "broadcast now" to N nodes of one ward, against the raw broker',
             "", f"- Date: {now}", f"- Machine: {machine()}",
             f"- Command: `.venv/bin/python bench/fanout.py --nodes "
             f"{' '.join(map(str, args.nodes))} --runs {args.runs} --rebuilds {args.rebuilds} "
             f"--spread-runs {args.spread_runs} --write-docs` (`make bench-fanout`)",
             f"- Load average (`uptime`) before: {load_before}; after: {load_after}", "",
             "| N | runs | API call to last node's receipt | raw broker fan-out | ratio "
             "| API call to every `received` at the server | target | result |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for n, runs in results["fanout"].items():
        last = [r["last_ms"] for r in runs]
        raw = [r["raw_ms"] for r in runs]
        acks = [r["acks_ms"] for r in runs]
        ratio = statistics.median(last) / statistics.median(raw)
        met = f"ratio {'met' if ratio <= 2 else 'not met'}"
        if n >= 1000:
            met += f"; acks {'met' if max(acks) <= 1000 else 'not met'}"
        target = "ratio <= 2" + (", every ack <= 1 s" if n >= 1000 else "")
        lines.append(f"| {n} | {len(runs)} | {statistics.median(last):.0f} ms (max "
                     f"{max(last):.0f}) | {statistics.median(raw):.0f} ms (max {max(raw):.0f}) | "
                     f"{ratio:.1f}x | {statistics.median(acks):.0f} ms (max {max(acks):.0f}) | "
                     f"{target} | {met} |")
    lines += ["", "Start spread of a scheduled broadcast to the ward (start_at 8 s ahead), "
              "actual start minus start_at on each node's clock, the starts of every "
              "broadcast of one N pooled:", "",
              "| N | broadcasts | starts | p50 | p99 | max | first to last (widest broadcast) "
              "| target | result |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for n, s in results["spread"].items():
        if not s["n"]:
            lines.append(f"| {n} | {s['broadcasts']} | 0 of {s['expected']} | | | | "
                         f"| p99 < 20 ms | no node started |")
            continue
        lines.append(f"| {n} | {s['broadcasts']} | {s['n']} of {s['expected']} | "
                     f"{s['p50']:.1f} ms | {s['p99']:.1f} ms | {s['max']:.1f} ms | "
                     f"{s['spread']:.1f} ms | p99 < 20 ms | "
                     f"{'met' if s['p99'] < 20 and s['n'] == s['expected'] else 'not met'} |")
    lines.append("")
    rb = [r["ms"] for r in results["rebuild"]]
    if rb:
        lines.append(f"Desired-state rebuild when the {max(results['fanout'])}-node ward gets a "
                     f"new daily series, API call to the last node holding it: median "
                     f"{statistics.median(rb):.0f} ms, max {max(rb):.0f} ms over {len(rb)} "
                     f"(target < 2 s: {'met' if max(rb) < 2000 else 'not met'}).")
    if results.get("dispatcher_cpu_s") is not None:
        lines.append(f"The dispatcher process (dispatcher and bridge) used "
                     f"{results['dispatcher_cpu_s']:.1f} s of CPU over the whole run, "
                     f"provisioning included. Envelopes the nodes refused: "
                     f"{results['rejected']}.")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_docs(section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section between ``begin`` and ``end`` (the markers it starts and ends
    with) in docs/benchmarks.md, or add it at the end."""
    text = DOCS.read_text(encoding="utf-8")
    if begin in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text, encoding="utf-8")


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__().strip("[]") \
        .replace("'", "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rebuilds", type=int, default=3)
    ap.add_argument("--spread-runs", type=int, default=3,
                    help="scheduled broadcasts per N whose start spread is measured")
    ap.add_argument("--write-docs", action="store_true")
    return run_and_report(ap.parse_args(), lambda args: asyncio.run(bench(args)), report)


def run_and_report(args, run, report_fn, begin: str = BEGIN, end: str = END) -> int:
    """``run(args)`` (the results), then its section of docs/benchmarks.md from
    ``report_fn(results, args, load before, load after)``: printed, and with --write-docs
    written between ``begin`` and ``end``."""
    before = uptime()
    results = run(args)
    section = report_fn(results, args, before, uptime())
    print(section)
    if args.write_docs:
        write_docs(section, begin, end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
