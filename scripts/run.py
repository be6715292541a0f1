"""``make run``: the whole system on one machine, for trying it out.

Creates (first run) or reuses (later runs) everything under var/: the database, signing key and
admin account; a Mosquitto config with per-node passwords and the ACL; demo areas and three
demo speaker nodes provisioned through the API. Starts Mosquitto on its own port, the web server,
one dispatcher and the three agents (their file-sink players write what they play under
var/agents/*/played/), prints the URL and the login, and stops all of it on Ctrl-C.
Honours LOA_PORT (web port, default 8080) and LOA_ADMIN_PASSWORD; LOA_VAR moves var/.

The broker has a loopback plain listener for the server's own processes and a TLS listener for
the nodes, with a project CA made on the first run (var/tls/; keys 0600); the demo agents
verify the broker with that CA. var/ and the instance folder are 0700, the database 0600, and
the admin password is printed only on the run that created or reset it, never stored.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import requests
import tomli_w
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.cli import init_instance  # noqa: E402
from device_agent.config import local_copy  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.files import write_atomic  # noqa: E402
from server.models import Node, make_engine  # noqa: E402
from server.mosquitto import (MosquittoProcess, TlsListener, ensure_tls_files,  # noqa: E402
                              free_port, port_open)

VAR = Path(os.environ.get("LOA_VAR", ROOT / "var")).resolve()
INSTANCE = VAR / "instance"
MOSQUITTO = VAR / "mosquitto"
AGENTS = VAR / "agents"
TLS = VAR / "tls"
STATE = VAR / "run.json"
DEMO_NODES = ("Loa chợ Cột Đèn", "Loa nhà văn hoá khu phố 3", "Loa trường THCS Lê Lợi")


def say(msg: str) -> None:
    print(f"[loa] {msg}", flush=True)


def load_state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save_state(state: dict) -> None:
    write_atomic(STATE, json.dumps(state, indent=2, ensure_ascii=False), 0o600)


def write_config(state: dict, web_port: int) -> None:
    """instance/config.toml: the broker account and ports; rewritten each run (ports may move)."""
    INSTANCE.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = {"mqtt_host": "127.0.0.1", "mqtt_port": state["mqtt_port"],
              "mqtt_tls_port": state["mqtt_tls_port"], "ca_file": str(TLS / "ca.pem"),
              "mqtt_username": "loa-dispatcher", "mqtt_password": state["mqtt_password"],
              "mosquitto_dir": str(MOSQUITTO), "public_url": f"http://127.0.0.1:{web_port}"}
    write_atomic(INSTANCE / "config.toml", "# Written by scripts/run.py (make run) on every "
                 "start.\n" + tomli_w.dumps(config), 0o600)


def spawn(name: str, args: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    # Its own session: Ctrl-C reaches only this script, which then stops the children in
    # order (agents first, so they can say they go offline while the broker still runs).
    return subprocess.Popen(args, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s (see {VAR}/logs/)")


def provision_demo(base: str, password: str, state: dict) -> None:
    """Demo areas and three nodes, through the API as any integration would."""
    http = requests.Session()
    token = http.post(f"{base}/api/v1/auth/token",
                      json={"username": "admin", "password": password}, timeout=10).json()["token"]
    http.headers["Authorization"] = f"Bearer {token}"

    def post(path, payload):
        r = http.post(f"{base}{path}", json=payload, timeout=30)
        r.raise_for_status()
        return r.json()
    province = post("/api/v1/areas", {"name": "Thành phố Hải Phòng", "code": "HP",
                                      "kind": "province"})
    ward = post("/api/v1/areas", {"name": "Phường Lê Chân", "code": "HP-LECHAN", "kind": "ward",
                                  "parent_id": province["id"]})
    cluster = post("/api/v1/areas", {"name": "Cụm loa khu phố 3", "code": "HP-LECHAN-KP3",
                                     "kind": "cluster", "parent_id": ward["id"]})
    other_ward = post("/api/v1/areas", {"name": "Phường Ngô Quyền", "code": "HP-NGOQUYEN",
                                        "kind": "ward", "parent_id": province["id"]})
    post("/api/v1/areas", {"name": "Cụm loa chợ Cát Bi", "code": "HP-NGOQUYEN-CB",
                           "kind": "cluster", "parent_id": other_ward["id"]})
    nodes = []
    for i, name in enumerate(DEMO_NODES, start=1):
        answer = post("/api/v1/nodes", {"cluster_id": cluster["id"], "name": name,
                                        "id": f"hp-lechan-{i:02d}"})
        d = AGENTS / answer["id"]
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "agent.toml", answer["config"], 0o600)
        nodes.append(answer["id"])
    state.update(demo_nodes=nodes, demo_ward=ward["id"])
    save_state(state)


def fix_agent_config(config: Path, state: dict) -> None:
    """Each start: the broker's ports may have moved since the agent was provisioned; a demo
    agent connects over TLS with the project CA beside its config (an agent provisioned by an
    older run is moved over), and its reboot command only writes a marker file there."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["mqtt"].update(tls=True, port=state["mqtt_tls_port"])
    text = local_copy(tomli_w.dumps(data), config.parent,
                      (TLS / "ca.pem").read_text(encoding="ascii"))
    write_atomic(config, text, 0o600)


def _interrupt(*_):
    raise KeyboardInterrupt


def _prepare_state() -> tuple[dict, str | None]:
    """The run's saved state with fresh secrets and free ports; also a password older runs kept."""
    VAR.mkdir(parents=True, exist_ok=True)
    VAR.chmod(0o700)
    state = load_state()
    kept_password = state.pop("admin_password", None)  # older runs kept it here in clear
    if not state.get("mqtt_password"):
        state["mqtt_password"] = secrets.token_urlsafe(24)
    for key in ("mqtt_port", "mqtt_tls_port"):
        if not state.get(key) or port_open("127.0.0.1", state[key]):
            state[key] = free_port()
    save_state(state)
    return state, kept_password


def _admin_password(state: dict, kept_password: str | None) -> str:
    """The admin password to show once: a new one, one older runs kept, or "" (known already)."""
    password, _ = init_instance(INSTANCE, os.environ.get("LOA_ADMIN_PASSWORD"))
    password = password or kept_password or ""  # shown this once more, then forgotten
    if not password and not state.get("demo_nodes"):
        # a first run stopped before it provisioned the demo: it needs the (unstored) password
        password, _ = init_instance(INSTANCE, secrets.token_urlsafe(12))
    return password


def _stop_all(procs: list[tuple[str, subprocess.Popen]], broker: MosquittoProcess) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this short
        signal.signal(sig, signal.SIG_IGN)
    for _name, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for _name, proc in reversed(procs):
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    broker.stop()


def _start_all(procs: list[tuple[str, subprocess.Popen]], broker: MosquittoProcess, tls,
               state: dict, password: str, web_port: int, logs: Path) -> str:
    """Broker, web, dispatcher and the demo agents, appended to ``procs``; the web's base URL."""
    py = sys.executable
    # the broker's files come from the registry before it starts
    subprocess.run([py, "-m", "server.cli", "--instance", str(INSTANCE), "sync-broker"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    broker.start()  # with its open-files limit raised for a province's nodes
    say(f"mosquitto on 127.0.0.1:{state['mqtt_port']}, TLS for nodes on "
        f"127.0.0.1:{state['mqtt_tls_port']} (CA {tls.ca_cert}; pid {broker.pid})")
    if broker.open_files is not None:
        say(("" if broker.open_files.enough else "WARNING: ") + broker.open_files.message)
    procs.append(("web", spawn("web", [py, "-m", "server", "--instance", str(INSTANCE),
                                       "--port", str(web_port)], logs / "web.log")))
    procs.append(("dispatcher", spawn("dispatcher", [py, "-m", "schedules", "--instance",
                                                     str(INSTANCE)], logs / "dispatcher.log")))
    base = f"http://127.0.0.1:{web_port}"
    wait_http(f"{base}/api/v1/openapi.json")
    if not state.get("demo_nodes"):
        provision_demo(base, password, state)
    agents_from_ms = int(time.time() * 1000)
    for node_id in state["demo_nodes"]:
        d = AGENTS / node_id
        fix_agent_config(d / "agent.toml", state)
        procs.append((node_id, spawn(node_id, [
            # through the launcher, as systemd runs a node: it can take agent updates
            py, "-m", "device_agent.launcher", "--config", str(d / "agent.toml"),
            "--state-dir", str(d / "state"), "--player", "file",
            "--sink-dir", str(d / "played")], logs / f"{node_id}.log")))
    wait_nodes_online(state["demo_nodes"], agents_from_ms, logs)
    return base


def wait_nodes_online(node_ids: list[str], since_ms: int, logs: Path,
                      timeout: float = 60.0) -> None:
    """Until the server has each demo node's "online" state from this start: an agent that has
    not yet subscribed (its first connect, with no broker session) would miss a broadcast sent
    now, and hear of it only by the dispatcher's re-send 30 s later. A node that does not come
    up in time is named with its log, and the rest runs anyway."""
    engine = make_engine(load_settings(INSTANCE).database_url)
    query = select(Node.id, Node.online, Node.last_state).where(Node.id.in_(node_ids))
    late = set(node_ids)
    deadline = time.monotonic() + timeout
    try:
        while late and time.monotonic() < deadline:
            with engine.connect() as conn:
                up = {node_id for node_id, online, last in conn.execute(query)
                      if online and (last or {}).get("ts", 0) >= since_ms}
            late = set(node_ids) - up
            if late:
                time.sleep(0.2)
    finally:
        engine.dispose()
    for node_id in sorted(late):
        say(f"WARNING: demo node {node_id} is not online after {timeout:.0f} s; "
            f"see {logs}/{node_id}.log")


def _announce(base: str, password: str, state: dict, logs: Path) -> None:
    say(f"LoaPhuong is running: {base}/")
    if password:
        say(f"login: admin / {password}   (shown only now: it is not stored anywhere)")
    else:
        say("login: admin (its password was shown by the run that set it; to reset it: "
            "LOA_ADMIN_PASSWORD=… make run)")
    say(f"demo nodes: {', '.join(state['demo_nodes'])} in ward id {state['demo_ward']}; "
        f"what they play lands in {AGENTS}/<node>/played/")
    say(f"logs: {logs}/  —  Ctrl-C stops everything")


def _watch(procs: list[tuple[str, subprocess.Popen]], logs: Path) -> None:
    """Until Ctrl-C, SIGTERM or one of the processes exits."""
    try:
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    say(f"{name} exited with {proc.returncode}; see {logs}/{name}.log")
                    raise KeyboardInterrupt
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping…")


def main() -> int:
    # Ctrl-C and SIGTERM stop everything, also when started from a shell that ignores SIGINT
    # for background jobs (Python then would not turn it into KeyboardInterrupt by itself).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    web_port = int(os.environ.get("LOA_PORT", "8080"))
    if port_open("127.0.0.1", web_port):
        say(f"port {web_port} is taken: set LOA_PORT to a free port")
        return 2
    state, kept_password = _prepare_state()
    tls = ensure_tls_files(TLS, ["127.0.0.1", "localhost"])
    write_config(state, web_port)
    password = _admin_password(state, kept_password)

    procs: list[tuple[str, subprocess.Popen]] = []
    broker = MosquittoProcess(MOSQUITTO, state["mqtt_port"],
                              max_packet_size=load_settings(INSTANCE).mqtt_max_packet_bytes,
                              tls=TlsListener(state["mqtt_tls_port"], tls.cert, tls.key,
                                              bind="127.0.0.1"))
    logs = VAR / "logs"
    try:
        base = _start_all(procs, broker, tls, state, password, web_port, logs)
        _announce(base, password, state, logs)
    except (Exception, KeyboardInterrupt) as err:
        say(f"start failed: {err!r}" if not isinstance(err, KeyboardInterrupt) else "stopping…")
        _stop_all(procs, broker)
        return 1

    try:
        _watch(procs, logs)
    finally:
        _stop_all(procs, broker)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
