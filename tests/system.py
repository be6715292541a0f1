"""A whole LoaPhuong server for tests: app served over real HTTP on loopback, the dispatcher and
bridge connected to the test's Mosquitto, and helpers to call the API and run agents.

``System(tmp_path, None, start_dispatcher=False)`` is the same server without a broker or a
socket: requests to its URL are served in-process by Flask's test client (tests/wsgi_transport)
and speech comes from the fake engine (tests/fake_tts), for tests of what the API accepts."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

from device_agent.config import local_copy
from schedules.dispatcher import Dispatcher
from schedules.slots import slot_id
from server import create_app
from server.bridge import Bridge, BridgeLimits
from server.cli import init_instance
from server.keys import load_signing_key
from server.mosquitto import free_port, listens
from server.transport import MqttTransport
from tests import database, fake_tts, wsgi_transport

ADMIN_PASSWORD = "admin-test-password"
# what init_instance reads from the settings to make an instance
INSTANCE_SETTINGS = {"database_url", "signing_key_file", "signing_kid", "password_min_length"}
ROOT = Path(__file__).resolve().parent.parent
# how long a test waits for an agent told to stop (SIGTERM) to exit: its clean stop takes up to
# about 19 s by its own bounds (device_agent.agent.Agent.stop: the worker 5 + PLAYER_JOIN_S,
# queued events 2.5, the offline state 2.5, its threads 2 + 2); 15 s failed once under a
# loaded CI machine (6 December)
AGENT_STOP_S = 30


def played_events(sink: Path) -> list[dict]:
    """What a file-sink agent says it played (its ``played.jsonl``), oldest first."""
    log = sink / "played.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def sink_files(sink: Path, sha: str) -> list[Path]:
    """The audio files a file-sink agent played of the media ``sha``."""
    return [p for p in sink.glob(f"*{sha}*") if p.suffix != ".jsonl"] if sink.exists() else []


def series_and_timed_broadcast(s: System, node_id: str, bulletin_id: int, at: dt.datetime,
                               timed_after_s: float = 2) -> tuple[dict, str, dict, dt.datetime]:
    """To one node: a daily series whose first slot is ``at``, and a one-off broadcast
    ``timed_after_s`` later; returns once the node holds the slot (its desired state applied,
    so it plays from its cache whatever happens to the server then). (the series, its slot's
    id, the one-off, the one-off's start)"""
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin_id, "targets": {"nodes": [node_id]},
        "recurrence": "FREQ=DAILY", "start_at": at.isoformat()})
    slot = slot_id(bc["id"], at)
    timed_at = at + dt.timedelta(seconds=timed_after_s)
    timed = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin_id, "targets": {"nodes": [node_id]},
        "start_at": timed_at.isoformat()})

    def holds() -> bool:
        d = s.ok("GET", f"/api/v1/nodes/{node_id}/desired")
        held = {e["slot_id"] for e in (d["body"] or {}).get("schedule", [])}
        return slot in held and d["desired_applied"] == d["version"]

    s.wait(holds, at.timestamp() - time.time() - 1, "the node holding the slot")
    return bc, slot, timed, timed_at


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM every process still running, then wait for each (kill what does not stop)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# A port free_port picked is free then, but a child binds it only after its start-up (seconds on
# a busy machine), and another process may take it meanwhile: the child exits saying so.
ADDRESS_IN_USE = "Address already in use"
START_TRIES = 3  # ports tried for one child before its start fails
START_TIMEOUT = 60.0  # a web process imports, migrates and listens within seconds


def start_listening(start: Callable[[int], tuple[subprocess.Popen, Path]],
                    serving: Callable[[int], bool], count: int = 1,
                    timeout: float = START_TIMEOUT) -> list[tuple[subprocess.Popen, int]]:
    """Start ``count`` children that listen on ports free_port picks (``start(port)``: the
    child and its log) and wait until each listens there itself and is ``serving(port)``:
    [(child, port)], in order.
    A child that exits with ADDRESS_IN_USE in its log is started again on another port (up to
    START_TRIES ports); one that exits otherwise fails the start at once, with its log, rather
    than at the deadline; the children are stopped then."""
    children: list[tuple[int, subprocess.Popen, Path, int]] = []  # port, child, log, tries
    ready: list[tuple[subprocess.Popen, int] | None] = [None] * count
    try:
        for _ in range(count):
            port = free_port()
            children.append((port, *start(port), 1))
        deadline = time.monotonic() + timeout
        while True:
            for i, (port, proc, log, tries) in enumerate(children):
                if ready[i]:
                    continue
                if proc.poll() is not None:
                    out = log.read_text(errors="replace") if log.exists() else ""
                    assert ADDRESS_IN_USE in out and tries < START_TRIES, \
                        f"{log.name}: the process exited ({proc.returncode}):\n{out[-3000:]}"
                    port = free_port()
                    children[i] = (port, *start(port), tries + 1)
                elif listens(proc.pid, port) and serving(port):  # not another's port
                    ready[i] = (proc, port)
            if all(ready):
                break
            if time.monotonic() > deadline:
                late = [c[2].name for c, r in zip(children, ready, strict=True) if not r]
                raise AssertionError(f"not serving within {timeout}s: {late}")
            time.sleep(0.1)
    except BaseException:
        stop_processes([proc for _, proc, _, _ in children])
        raise
    return [r for r in ready if r]


def web_serving(port: int) -> bool:
    """A web process on ``port`` answers (its health: 200, or 503 without a dispatcher)."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code \
            in (200, 503)
    except requests.RequestException:
        return False


@dataclass(frozen=True)
class Snapshot:
    """A server instance left by a System, copied by another instead of made again (``template``):
    its folder (the ``instance`` and the broker's files), its admin's API token and what was made
    in it (``data``, e.g. wards and the tokens of their users)."""
    folder: Path
    token: str
    data: Any = None


def preparation(request, table: dict[str, Callable]) -> Callable | None:
    """The build (``make_app(prepare=...)``) of the fixtures a test takes that ``table`` (a
    part's conftest's) or its module's ``PREPARED`` names: fixture name to the function that
    makes it in an app; None when it takes none of them. One per test."""
    table = {**table, **getattr(request.module, "PREPARED", {})}
    wanted = {table[name] for name in request.fixturenames if name in table}
    assert len(wanted) <= 1, f"{request.node.name}: more than one prepared instance"
    return wanted.pop() if wanted else None


class System:
    def __init__(self, tmp_path: Path, broker=None, start_dispatcher: bool = True,
                 template: Snapshot | None = None, **overrides):
        """``template``: an instance another System left, copied instead of making one (its
        database, signing key, admin and the admin's login) when the overrides do not change
        those; ``copied`` says whether it was."""
        self.tmp = tmp_path
        self.broker = broker
        self.instance = tmp_path / "instance"
        self.port = free_port()  # in-process: never bound, only names this server's URL
        self.url = f"http://127.0.0.1:{self.port}"
        if broker is None:
            assert not start_dispatcher, "the dispatcher needs a broker"
            config = {"mqtt_host": "127.0.0.1", "mqtt_port": 1, "mqtt_password": "no-broker",
                      "mosquitto_dir": str(tmp_path / "mosquitto"), "tts_engines": [fake_tts.NAME]}
        else:
            config = {"mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                      "mqtt_username": broker.server_user, "mqtt_password": broker.server_password,
                      "mosquitto_dir": str(broker.files.directory), "tts_engines": ["espeak"]}
        config.update({"public_url": self.url, "worker_stale_s": 20, "node_telemetry_s": 2})
        if "database_url" not in overrides:  # PostgreSQL with the tests' switch on
            overrides = {**database.instance_database(self.instance), **overrides}
        config.update(overrides)
        self.copied = template is not None and not INSTANCE_SETTINGS & set(overrides) \
            and not self.instance.exists()
        if template is not None and self.copied:
            # the broker's files too (password file and ACL, which name no path), when the
            # template's System wrote them; it never had a broker either
            for part in ("instance", "mosquitto"):
                if (template.folder / part).exists():
                    shutil.copytree(template.folder / part, tmp_path / part)
        else:
            init_instance(self.instance, ADMIN_PASSWORD, config)
        self.app = create_app(config, instance_path=self.instance)
        self.settings = self.app.config["SETTINGS"]
        self.server = None
        if broker is None:
            wsgi_transport.mount(self.url, self.app)
        else:
            self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
            self.thread = threading.Thread(target=self.server.serve_forever,
                                           kwargs={"poll_interval": 0.05}, daemon=True)
            self.thread.start()
        self.http = requests.Session()
        if broker is None:  # served in-process: no proxy or .netrc to look up in the environment
            self.http.trust_env = False  # at every request (a fifth of its cost in requests)
        self.token = template.token if template is not None and self.copied \
            else self.login("admin", ADMIN_PASSWORD)
        self.prepared: Any = None  # what make_app(prepare=...) made in it (tests/conftest.py)
        self.dispatcher: Dispatcher | None = None
        self.bridge: Bridge | None = None
        self.transport: MqttTransport | None = None
        self.agents: list[subprocess.Popen] = []
        self.processes: list[subprocess.Popen] = []  # python -m schedules, started by a test
        if start_dispatcher:
            self.start_dispatcher()

    def start_dispatcher(self) -> None:
        s = self.settings
        sessions = self.app.extensions["db_sessions"]
        self.transport = transport = MqttTransport(
            s.mqtt_host, s.mqtt_port, s.mqtt_username, s.mqtt_password,
            client_id=s.mqtt_username,  # the broker forces it
            connect=False)  # as python -m schedules: subscribed first
        self.bridge = Bridge(sessions, transport, s.topic_prefix,
                             limits=BridgeLimits.from_settings(s), tz=s.timezone)
        self.bridge.start()
        transport.connect()
        assert transport.wait_connected(10), "dispatcher could not connect to the broker"
        # the bridge's subscriptions confirmed (their log lines written) before a test goes on
        assert transport.wait_subscribed(10), "the broker did not confirm the bridge's " \
            "subscriptions"
        kid, key = load_signing_key(s.signing_key_file)
        self.dispatcher = dispatcher = Dispatcher(s, sessions, transport, key, kid)
        dispatcher.start(interval_s=0.2)

    def start_process(self, name: str, module: str, *args: str) -> subprocess.Popen:
        """A real server process (``python -m {module} --instance …``) on this instance and
        broker, with this system's lease and database times; its output in ``{name}.log``.
        stop() ends it (SIGTERM) if it runs."""
        s = self.settings
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOA_MQTT_HOST": s.mqtt_host,
               "LOA_MQTT_PORT": str(s.mqtt_port), "LOA_MQTT_USERNAME": s.mqtt_username,
               "LOA_MQTT_PASSWORD": s.mqtt_password, "LOA_PUBLIC_URL": self.url,
               "LOA_MOSQUITTO_DIR": str(s.mosquitto_dir),
               "LOA_LEASE_TTL_S": str(s.lease_ttl_s), "LOA_LEASE_RENEW_S": str(s.lease_renew_s),
               "LOA_DATABASE_BUSY_TIMEOUT_S": str(s.database_busy_timeout_s),
               "LOA_TTS_ENGINES": ",".join(s.tts_engines),
               # its temporary files in the test's folder, not the machine's /tmp: a render
               # cut short by a kill (tests/e2e/test_faults_server.py) leaves its folder there
               "TMPDIR": str(self.tmp / f"{name}.tmp")}
        (self.tmp / f"{name}.tmp").mkdir(exist_ok=True)
        with open(self.tmp / f"{name}.log", "wb") as out:  # the child keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", module, "--instance",
                                     str(self.instance), *args], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def start_dispatcher_process(self, name: str) -> tuple[subprocess.Popen, Path]:
        """``python -m schedules`` (start_process); its log is ``dispatcher-{name}.log``."""
        return self.start_process(f"dispatcher-{name}", "schedules"), \
            self.tmp / f"dispatcher-{name}.log"

    def start_web_process(self, name: str) -> tuple[subprocess.Popen, str]:
        """``python -m server`` (waitress, as ``make run`` starts the web) on a port of its
        own (start_process, start_listening), once it serves: the process and its URL. Its log
        is ``web-{name}.log``."""
        def start(port: int) -> tuple[subprocess.Popen, Path]:
            return self.start_process(f"web-{name}", "server", "--port", str(port)), \
                self.tmp / f"web-{name}.log"

        [(proc, port)] = start_listening(start, web_serving)
        return proc, f"http://127.0.0.1:{port}"

    def stop_dispatcher(self) -> None:
        """End the dispatcher and its bridge as a stopped ``python -m schedules`` would: the
        scheduler, then the broker connection (its persistent session keeps what comes)."""
        if self.dispatcher:
            self.dispatcher.stop()
            self.dispatcher = None
        if self.transport:
            self.transport.stop()
            self.transport = None

    # --- API -----------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        r = self.http.post(f"{self.url}/api/v1/auth/token",
                           json={"username": username, "password": password}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def call(self, method: str, path: str, token: str | None = "default", **kw):
        headers = kw.pop("headers", {})
        tok = self.token if token == "default" else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return self.http.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def area(self, name, code, kind, parent_id=None) -> dict:
        return self.ok("POST", "/api/v1/areas", json={"name": name, "code": code, "kind": kind,
                                                      "parent_id": parent_id})

    def approved_bulletin(self, title="Thông báo",
                          text="Ủy ban nhân dân phường thông báo.") -> dict:
        b = self.ok("POST", "/api/v1/bulletins", json={"title": title, "text": text,
                                                       "category": "other"})
        self.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
        return self.ok("POST", f"/api/v1/bulletins/{b['id']}/approve")

    def wait(self, predicate, timeout=15.0, what="condition"):
        """Poll an API-reading predicate until it returns a truthy value (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)

    # --- agents --------------------------------------------------------------------------------

    def start_agent(self, provisioned: dict, name: str | None = None,
                    env: dict | None = None, prefix: list[str] | None = None,
                    state_dir: Path | None = None) -> tuple[subprocess.Popen, Path]:
        """Run the real agent process with the config provisioning returned and a file sink;
        its reboot command only touches ``rebooted`` in the agent's folder. ``prefix`` goes
        before the command (``ip netns exec NAME`` runs it in a network namespace);
        ``state_dir`` is its state folder (the agent's folder's ``state`` by default)."""
        base = self.tmp / "agents" / (name or provisioned["id"])
        base.mkdir(parents=True, exist_ok=True)
        config = base / "agent.toml"
        # never the provisioned `systemctl reboot` on the test host: a marker file instead
        config.write_text(local_copy(provisioned["config"], base,
                                     provisioned["mqtt"].get("ca_pem")), encoding="utf-8")
        sink = base / "sink"
        with open(base / "agent.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "device_agent", "--config", str(config),
                 "--state-dir", str(state_dir or base / "state"), "--player", "file",
                 "--sink-dir", str(sink)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        self.agents.append(proc)
        return proc, sink

    def stop_agents(self) -> None:
        """SIGTERM to every agent still running, then wait for each (killed after 10 s)."""
        stop_processes(self.agents, 10)

    def stop(self) -> None:
        self.stop_agents()
        stop_processes(self.processes, 15)
        if self.dispatcher:
            self.dispatcher.stop()
        if self.bridge:
            self.bridge.stop()
        if self.transport:
            self.transport.stop()
        if self.server:
            self.server.shutdown()
        else:
            wsgi_transport.unmount(self.url)
        self.http.close()
        self.app.extensions["db_engine"].dispose()
