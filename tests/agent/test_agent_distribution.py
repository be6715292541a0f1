"""The agent installs alone: its own distribution (agent/pyproject.toml, ``loaphuong-agent``)
built from this repository into a wheel, installed in a clean virtualenv from the local
wheelhouse only (no network), holds nothing of the server, and its ``loa-agent`` runs a node:
online on a real Mosquitto, a signed play ends in its file sink.

The tests on the installed agent run agent processes and need the wheelhouse of
``make test-deps``, so they are end-to-end (marker ``e2e``: not in `make test-fast`)."""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent_wheelhouse import default_dest
from device_agent import __version__
from tests.agent_harness import NodeHarness

ROOT = Path(__file__).resolve().parents[2]

SERVER_ONLY = {"flask", "sqlalchemy", "gtts", "pydub", "apscheduler", "alembic", "waitress",
               "pydantic", "flask-wtf", "flask-limiter", "lunar-vn", "python-dateutil"}
PIP_TIMEOUT_S = 300
# on the installed agent: end to end, and on one xdist worker (`--dist loadgroup`), which
# builds the wheel and the virtualenv once for all of them
GROUP = pytest.mark.xdist_group("agent-distribution")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", spec)
    assert match, spec
    return canonical(match.group(0))


def load_toml(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def clean_env() -> dict[str, str]:
    """The environment without anything that would let the checkout's code in."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(argv: list, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=PIP_TIMEOUT_S, env=clean_env(), **kw)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def venv_pip(venv: Path) -> list:
    """This environment's pip working on ``venv`` (which has none of its own)."""
    return [sys.executable, "-m", "pip", "--python", venv / "bin" / "python"]


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory) -> Path:
    """A clean virtualenv with only the agent's wheel and its dependencies, all installed from
    the wheelhouse ``make test-deps`` fetched; the wheel is built from a copy of agent/ and
    device_agent/ alone, so nothing else of the repository can slip in. The virtualenv is made
    without pip (ensurepip takes most of ten seconds) and this environment's pip installs into
    it, so it holds the agent and its dependencies only."""
    wheelhouse = default_dest()
    if not any(wheelhouse.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {wheelhouse}: run `make test-deps` (it fetches the agent's "
                    "dependency wheels once, so this test installs them offline)")
    base = tmp_path_factory.mktemp("agentdist")
    src = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    for part in ("agent", "device_agent"):
        shutil.copytree(ROOT / part, src / part, ignore=ignore)
    offline = ["--no-index", "--find-links", wheelhouse]
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *offline,
         "--wheel-dir", base / "dist", src / "agent"], cwd=base)
    wheels = list((base / "dist").glob("loaphuong_agent-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    run([*venv_pip(venv), "install", "--quiet", *offline, wheels[0]], cwd=base)
    return venv


def test_agent_dependencies_are_exactly_what_device_agent_imports():
    agent = load_toml(ROOT / "agent" / "pyproject.toml")["project"]
    imported = set()
    for path in (ROOT / "device_agent").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"device_agent", "__future__"}
    provided = importlib.metadata.packages_distributions()
    needed = {canonical(dist) for module in third_party for dist in provided[module]}
    declared = {requirement_name(spec) for spec in agent["dependencies"]}
    optional = {requirement_name(spec) for specs in agent.get("optional-dependencies", {}).values()
                for spec in specs}  # gpio: imported only by an agent configured to use it
    assert declared | optional == needed and not declared & optional
    # the same bounds as the server's, which installs the same libraries
    server = load_toml(ROOT / "pyproject.toml")["project"]["dependencies"]
    assert set(agent["dependencies"]) <= {spec.split("#")[0].strip() for spec in server}


@pytest.mark.e2e
@GROUP
def test_clean_virtualenv_holds_the_agent_and_nothing_of_the_server(agent_venv):
    listed = run([*venv_pip(agent_venv), "list", "--format", "json"])
    installed = {canonical(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    assert installed.get("loaphuong-agent") == __version__
    assert "loaphuong" not in installed
    assert not SERVER_ONLY & set(installed), sorted(SERVER_ONLY & set(installed))

    # every module of the package imports from the venv, and none of the checkout's packages
    # (server, schedules, audio) exists there
    script = ("import importlib, pkgutil, device_agent, importlib.util as u\n"
              "mods = [m.name for m in pkgutil.iter_modules(device_agent.__path__)]\n"
              "[importlib.import_module('device_agent.' + m) for m in mods]\n"
              "print(device_agent.__file__)\n"
              "print(sorted(n for n in ('server', 'schedules', 'audio', 'flask') "
              "if u.find_spec(n)))\n")
    done = run([agent_venv / "bin" / "python", "-c", script], cwd=agent_venv)
    where, others = done.stdout.splitlines()
    assert Path(where).is_relative_to(agent_venv) and others == "[]"

    version = run([agent_venv / "bin" / "loa-agent", "--version"], cwd=agent_venv)
    assert version.stdout.strip() == f"loa-agent {__version__}"
    helped = run([agent_venv / "bin" / "loa-agent", "--help"], cwd=agent_venv)
    assert "--config" in helped.stdout and "--sink-dir" in helped.stdout
    # and the launcher systemd starts (updates over the air, rollback)
    launcher = run([agent_venv / "bin" / "loa-agent-launcher", "--help"], cwd=agent_venv)
    assert "--confirm-s" in launcher.stdout and "--max-starts" in launcher.stdout


@pytest.mark.e2e
@GROUP
def test_installed_agent_checks_its_config_and_names_the_bad_key(agent_venv, tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('node_id = "hp-01-a"\n[mqtt]\nhost = "x"\nport = 99999\npassword = "p"\n'
                   '[[server_keys]]\nkid = "k"\npublic_key = "AAAA"\n')
    done = subprocess.run([str(agent_venv / "bin" / "loa-agent"), "--config", str(cfg)],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "mqtt.port" in done.stderr


@pytest.mark.e2e
@GROUP
def test_installed_agent_plays_a_signed_command_from_a_real_broker(agent_venv, broker, tmp_path,
                                                                    media_server):
    h = NodeHarness(broker, tmp_path, media_server, telemetry_s=1)
    proc = subprocess.Popen([str(agent_venv / "bin" / "loa-agent"), "--config",
                             str(h.config_path), "--player", "file", "--sink-dir", str(h.sink),
                             "--log-level", "WARNING"],
                            cwd=h.dir, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        online = h.wait_message(lambda t, v: t == h.topic("state") and v.get("online") is True)
        assert online, proc.stderr.read().decode() if proc.poll() is not None else "not online"
        assert online[1]["agent_version"] == __version__
        env = h.play("short", item_id="from-the-wheel")
        h.wait_ack(env["id"], "finished")
        line = h.wait_sink(lambda entry: entry["item_id"] == "from-the-wheel")
        assert line["result"] == "completed"
        assert line["sha256"] == env["body"]["item"]["media"]["sha256"]
        assert list(h.sink.glob(f"*-from-the-wheel-{line['sha256']}.mp3"))
        # its health readings too (h.close() checks every message against the schemas)
        found = h.wait_message(lambda t, v: t == h.topic("telemetry"))
        assert found, "no telemetry from the installed agent"
        assert found[1]["agent_version"] == __version__
        assert {"registration", "rsrp_dbm"} <= set(found[1]["net"])
        assert "under_voltage" in found[1]["power"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        h.close()

