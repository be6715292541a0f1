"""The host's side of ``make test-pi-install`` (hardware/test-install-root.sh prepares the
debootstrap root, mounts /proc, /sys and /dev in it, then runs this).

On the host: a real Mosquitto on a free loopback port, the node's broker account and a
server-side client (tests/agent_harness.NodeHarness), a media server, and the provisioning
answer (server/nodes.agent_config, the server's own format) served once behind a one-time token.
In the root (chroot, the host's network): hardware/install-pi.sh installs the agent from the
provisioning URL, then runs again over an install made by the older script (/etc/loa-agent,
/var/lib/loa-agent) and must upgrade and migrate it; then the installed agent starts as its
unit would (its user, its ExecStart, a notify socket and WATCHDOG_USEC), comes online, plays a
signed command into its file sink, pings the watchdog, and stops cleanly on SIGTERM. Every
check that fails ends the run with the reason; timings are printed at the end.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_agent import __version__  # noqa: E402
from server.config import Settings  # noqa: E402
from server.models import Node  # noqa: E402
from server.mosquitto import MosquittoFiles, MosquittoProcess, free_port  # noqa: E402
from server.nodes import AGENT_STATE_DIR, agent_config  # noqa: E402
from tests.agent_harness import MediaServer, NodeHarness  # noqa: E402
from tests.brokers import TestBroker  # noqa: E402

INSTALL_DIR = "/tmp/loa-install"       # in the root: hardware/, the wheel, the wheelhouse
NOTIFY = "/run/loa-notify.sock"        # in the root: systemd's notify socket, played by us
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT = "/etc/systemd/system/loa-agent.service"
INSTALL_TIMEOUT_S = 3600
AGENT_WAIT_S = 180.0                   # an agent under qemu-user starts in tens of seconds
NODE = "pi-root-1"


class Failed(Exception):
    pass


def check(condition: object, what: str) -> None:
    if not condition:
        raise Failed(what)
    print(f"   ok: {what}")


class Timings:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str):
        timings = self

        class _Step:
            def __enter__(self):
                print(f"== [{time.monotonic() - timings.start:6.1f}s] {name}", flush=True)
                self.t0 = time.monotonic()

            def __exit__(self, *exc):
                timings.steps.append((name, time.monotonic() - self.t0))

        return _Step()

    def report(self) -> str:
        lines = [f"   {seconds:7.1f}s  {name}" for name, seconds in self.steps]
        lines.append(f"   {time.monotonic() - self.start:7.1f}s  in all (this helper)")
        return "\n".join(lines)


# --- the provisioning answer, served once ------------------------------------------------------

class OneTimeAnswer:
    """The provisioning answer at ``url``, for one request bearing ``token``; every later
    request is refused (410), as a one-time link would be."""

    def __init__(self, answer: dict):
        self.token = secrets.token_urlsafe(24)
        self.body = json.dumps(answer).encode()
        self.served = 0
        self.refused = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    outer.refused += 1
                    self.send_error(401)
                elif outer.served:
                    outer.refused += 1
                    self.send_error(410)
                else:
                    outer.served += 1
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(outer.body)))
                    self.end_headers()
                    self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/provisioning/{NODE}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the root --------------------------------------------------------------------------------

class Root:
    def __init__(self, path: Path):
        self.path = path

    def host(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def argv(self, argv: list[str], env: dict[str, str] | None = None,
             user: tuple[int, int, list[int]] | None = None) -> list[str]:
        """chroot with a clean environment (none of the host's PIP_*, PATH, VIRTUAL_ENV)."""
        spec = []
        if user is not None:
            uid, gid, groups = user
            spec = [f"--userspec={uid}:{gid}", f"--groups={','.join(map(str, groups))}"]
        base = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        return ["chroot", *spec, str(self.path), "/usr/bin/env", "-i",
                *(f"{k}={v}" for k, v in base.items()), *argv]

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout)

    def install(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> str:
        """hardware/install-pi.sh in the root, its output shown as it runs and returned."""
        argv = self.argv([f"{INSTALL_DIR}/hardware/install-pi.sh", *args], env)
        out: list[str] = []
        with open(log, "a", encoding="utf-8", buffering=1) as f, subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                f.write(line)
                if line.startswith("==") or "not started" in line or "moved" in line \
                        or "removed" in line or "mixer" in line or line.startswith("done:") \
                        or line.startswith("agent ") or "rror" in line:
                    print(f"   | {line}", end="", flush=True)
            rc = proc.wait(INSTALL_TIMEOUT_S)
        if rc != 0:
            print("".join(out[-40:]))
            raise Failed(f"install-pi.sh {' '.join(args)} exited {rc} (log: {log})")
        return "".join(out)

    def account(self, name: str) -> tuple[int, int]:
        for line in self.host("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3])
        raise Failed(f"no user {name} in the root")

    def groups_of(self, name: str) -> list[int]:
        gids = []
        for line in self.host("/etc/group").read_text().splitlines():
            fields = line.split(":")
            if name in fields[3].split(","):
                gids.append(int(fields[2]))
        return gids

    def toml(self, inside: str) -> dict:
        with open(self.host(inside), "rb") as f:
            return tomllib.load(f)


def unit_settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def make_media(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-ac", "1", "-b:a", "32k",
                    str(folder / "short.mp3")], check=True)


def start_broker(folder: Path) -> TestBroker:
    directory = folder / "mosquitto"
    files = MosquittoFiles(directory)
    broker = TestBroker(MosquittoProcess(directory, free_port()), files)
    broker.write()
    broker.process.start()
    return broker


# --- the checks -------------------------------------------------------------------------------

def check_first_install(root: Root, out: str, answer: OneTimeAnswer) -> None:
    check(answer.served == 1, "the provisioning answer was fetched once, with its token")
    check("is installed and enabled, not started" in out,
          "without systemd as PID 1 the unit is installed, not started, and the script says so")
    config = root.toml("/etc/loaphuong/agent.toml")
    check(config["node_id"] == NODE and config["state_dir"] == AGENT_STATE_DIR,
          "/etc/loaphuong/agent.toml is the provisioned config")
    uid, gid = root.account("loa")
    st = root.host("/etc/loaphuong/agent.toml").stat()
    check(st.st_mode & 0o777 == 0o640 and st.st_uid == 0 and st.st_gid == gid,
          "the config (it holds the node's password) is 0640 root:loa")
    st = root.host(AGENT_STATE_DIR).stat()
    check(st.st_uid == uid and st.st_mode & 0o777 == 0o750,
          f"{AGENT_STATE_DIR} belongs to loa (0750)")
    unit = unit_settings(root.host(UNIT).read_text())
    check(unit.get("Type") == "notify" and unit.get("WatchdogSec")
          and unit.get("ProtectSystem") == "strict"
          and unit.get("StateDirectory") == "loaphuong/agent",
          "the unit: Type=notify, WatchdogSec, ProtectSystem=strict, StateDirectory")
    link = root.host("/etc/systemd/system/multi-user.target.wants/loa-agent.service")
    check(link.is_symlink() and root.host(os.readlink(link)) == root.host(UNIT),
          "the unit is enabled (multi-user.target wants it)")
    check("makestep 1 -1" in root.host("/etc/chrony/conf.d/loaphuong.conf").read_text()
          and root.host("/usr/sbin/chronyd").exists(), "chrony installed, steps a far-off clock")
    check("SystemMaxUse=" in root.host("/etc/systemd/journald.conf.d/loaphuong.conf").read_text(),
          "journald limits")
    listed = root.run(["/opt/loa-agent/venv/bin/python", "-m", "pip", "list", "--format",
                       "json"])
    names = {d["name"].lower() for d in json.loads(listed.stdout)}
    check("loaphuong-agent" in names and not names & {"flask", "sqlalchemy", "gtts", "pydub",
                                                      "apscheduler", "loaphuong"},
          f"the venv holds the agent and none of the server ({len(names)} packages)")


def make_old_install(root: Root) -> None:
    """What the older script left: /etc/loa-agent/agent.toml with the old paths, state in
    /var/lib/loa-agent (here with a marker the upgrade must carry over)."""
    old_etc = root.host("/etc/loa-agent")
    old_etc.mkdir(mode=0o750)
    text = root.host("/etc/loaphuong/agent.toml").read_text()
    (old_etc / "agent.toml").write_text(
        text.replace(f'state_dir = "{AGENT_STATE_DIR}"', 'state_dir = "/var/lib/loa-agent"'))
    root.host("/etc/loaphuong/agent.toml").unlink()
    root.host(AGENT_STATE_DIR).rename(root.host("/var/lib/loa-agent"))
    root.host("/var/lib/loa-agent/kept-across-upgrade").write_text("outbox\n")


def check_upgrade(root: Root, out: str) -> None:
    check("moved the config from /etc/loa-agent/agent.toml" in out
          and not root.host("/etc/loa-agent").exists(), "the old /etc/loa-agent was migrated")
    check(root.toml("/etc/loaphuong/agent.toml")["state_dir"] == AGENT_STATE_DIR,
          "the migrated config points at the new state folder")
    check(root.host(f"{AGENT_STATE_DIR}/kept-across-upgrade").exists()
          and not root.host("/var/lib/loa-agent").exists(),
          "the old state moved to /var/lib/loaphuong/agent")
    check("mixer left as it is" in out, "an upgrade leaves the mixer level alone")


def receive_notify(sock: socket.socket, want: str, deadline: float) -> list[str]:
    got: list[str] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            fields = sock.recv(4096).decode().split("\n")
        except TimeoutError:
            break
        got.append(" ".join(fields))
        if want in fields:
            return got
    raise Failed(f"no {want} on the notify socket; got {got}")


def run_installed_agent(root: Root, h: NodeHarness, timings: Timings) -> None:
    unit = unit_settings(root.host(UNIT).read_text())
    uid, gid = root.account(unit["User"])
    sink_inside = f"{AGENT_STATE_DIR}/sink"
    h.sink = root.host(sink_inside)
    notify_path = root.host(NOTIFY)
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    os.chown(notify_path, uid, gid)
    argv = [*shlex.split(unit["ExecStart"]), "--player", "file", "--sink-dir", sink_inside]
    env = {"NOTIFY_SOCKET": NOTIFY, "WATCHDOG_USEC": "4000000", "PYTHONUNBUFFERED": "1",
           "HOME": AGENT_STATE_DIR}
    user = (uid, gid, root.groups_of(unit["User"]))
    log_path = root.path.parent / "agent.log"
    with timings.step("the installed agent starts in the root as its unit would"):
        print(f"   {' '.join(argv)}  (as {unit['User']}, uid {uid})")
        with open(log_path, "wb") as log:   # the child keeps its own copy
            proc = subprocess.Popen(root.argv(argv, env, user), stdout=log,
                                    stderr=subprocess.STDOUT)
    try:
        with timings.step("READY=1 on the notify socket, online on the host's broker"):
            deadline = time.monotonic() + AGENT_WAIT_S
            receive_notify(notify, "READY=1", deadline)
            print("   ok: READY=1")
            online = h.wait_message(lambda t, v: t == h.topic("state")
                                    and v.get("online") is True,
                                    timeout=max(1.0, deadline - time.monotonic()))
            check(online and online[1].get("agent_version") == __version__,
                  f"online on the host's broker, agent {__version__}")
        with timings.step("a signed play command ends in the file sink"):
            env_play = h.play("short", item_id="from-the-pi-root")
            h.wait_ack(env_play["id"], "finished", timeout=AGENT_WAIT_S)
            line = h.wait_sink(lambda e: e["item_id"] == "from-the-pi-root", timeout=30)
            check(line["result"] == "completed"
                  and line["sha256"] == env_play["body"]["item"]["media"]["sha256"],
                  "ack finished; the sink holds exactly the signed item's audio")
            check(list(h.sink.glob(f"*-from-the-pi-root-{line['sha256']}.mp3")),
                  f"the played file is in {sink_inside} in the root")
        with timings.step("telemetry and the watchdog"):
            found = h.wait_message(lambda t, v: t == h.topic("telemetry"), timeout=AGENT_WAIT_S)
            check(found and found[1]["agent_version"] == __version__,
                  "telemetry from the installed agent")
            receive_notify(notify, "WATCHDOG=1", time.monotonic() + 30)
            print("   ok: WATCHDOG=1 (the agent pings systemd's watchdog)")
        with timings.step("SIGTERM: it stops cleanly"):
            proc.send_signal(signal.SIGTERM)
            receive_notify(notify, "STOPPING=1", time.monotonic() + 30)
            check(proc.wait(60) == 0, "the agent exits 0 on SIGTERM (STOPPING=1 first)")
            offline = h.wait_message(lambda t, v: t == h.topic("state")
                                     and v.get("online") is False, timeout=10)
            check(offline, "it said online=false before leaving")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
        notify_path.unlink(missing_ok=True)
        if log_path.stat().st_size:
            print(f"   (agent log: {log_path})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="the prepared root (host path)")
    p.add_argument("--wheel", required=True, help="the agent's wheel, as a path in the root")
    p.add_argument("--wheelhouse", required=True, help="the wheelhouse, as a path in the root")
    p.add_argument("--log", type=Path, required=True, help="install-pi.sh's whole output")
    p.add_argument("--machine", required=True,
                   help="what the root's Python must say it runs on (aarch64, x86_64)")
    args = p.parse_args(argv)
    root = Root(args.root)
    timings = Timings()
    work = Path(tempfile.mkdtemp(prefix="pi-root-check-"))
    broker = answer = media = h = None
    try:
        with timings.step("Mosquitto on the host (loopback), the media, the node's account"):
            broker = start_broker(work)
            print(f"   mosquitto pid {broker.process.pid} port {broker.port}")
            make_media(work / "media")
            media = MediaServer(work / "media")
            h = NodeHarness(broker, work, media, node=NODE)
            s = Settings(topic_prefix=broker.prefix, node_mqtt_host=broker.host,
                         node_mqtt_port=broker.port, node_telemetry_s=5)
            keys = [{"kid": h.signer.kid, "public_key": h.signer.public_key}]
            node = Node(id=NODE, name="Pi root check")  # as provisioned, never stored
            answer = OneTimeAnswer({"id": NODE, "mqtt": {"host": broker.host,
                                                         "port": broker.port,
                                                         "username": NODE,
                                                         "password": h.password,
                                                         "tls": False},
                                    "config": agent_config(s, node, h.password, h.groups, keys,
                                                           s.timezone)})
        offline = ["--wheel", args.wheel, "--wheelhouse", args.wheelhouse]
        with timings.step("install-pi.sh, first install, from the provisioning URL + token"):
            # the token through the environment (LOA_PROVISION_TOKEN), out of `ps`'s sight
            out = root.install(["--provision", answer.url, *offline], args.log,
                               {"LOA_PROVISION_TOKEN": answer.token})
            check_first_install(root, out, answer)
            machine = root.run(["/opt/loa-agent/venv/bin/python", "-c",
                                "import platform; print(platform.machine())"]).stdout.strip()
            check(machine == args.machine, f"the installed agent's Python runs on {machine}")
        with timings.step("install-pi.sh again over the older script's layout (upgrade)"):
            make_old_install(root)
            out = root.install(offline, args.log)
            check_upgrade(root, out)
        run_installed_agent(root, h, timings)
    except (Failed, AssertionError) as err:   # the harness's waits assert
        print(f"FAILED: {err}", flush=True)
        return 1
    finally:
        if h is not None:
            h.close()
        if media is not None:
            media.close()
        if answer is not None:
            answer.close()
        if broker is not None:
            broker.process.stop()   # by its PID (Popen.terminate)
        shutil.rmtree(work, ignore_errors=True)
        print("timings:\n" + timings.report())
    print("PASSED: install-pi.sh ran to the end in the root and its agent played a signed "
          "command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
