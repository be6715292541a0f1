"""The agent as the Pi runs it: ``python -m device_agent --config FILE`` goes online (retained
state), goes offline through its Last Will when killed, stops cleanly on SIGTERM; and the
package stands alone (imports nothing from server/, schedules/, audio/)."""
import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.agent_harness import NodeHarness

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("server", "schedules", "audio")


def spawn(h: NodeHarness) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "device_agent", "--config",
                             str(h.config_path), "--player", "file", "--sink-dir", str(h.sink),
                             "--log-level", "WARNING"],
                            cwd=h.dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def state_since(h, mark, online):
    return h.wait_message(lambda t, v: t == h.topic("state") and v.get("online") is online,
                          since=mark)


def test_agent_process_goes_online_then_offline_by_last_will_on_sigkill(broker, tmp_path,
                                                                        media_server):
    h = NodeHarness(broker, tmp_path, media_server)
    proc = spawn(h)
    assert proc.stderr is not None
    try:
        online = state_since(h, 0, True)
        assert online, proc.stderr.read().decode() if proc.poll() is not None else "not online"
        assert online[1]["agent_version"]
        env = h.play("short")
        h.wait_ack(env["id"], "finished")
        mark = len(h.server.messages)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        _, will = state_since(h, mark, False)
        assert will == {"v": 1, "online": False}            # exactly the Last Will
    finally:
        if proc.poll() is None:
            proc.kill()
        h.close()
    # and it is retained: a newcomer reads the node as offline
    late = h.connect_server(client_id="late-reader")
    assert late.wait_for(lambda t, v: t == h.topic("state") and v == {"v": 1, "online": False})
    late.close()


def test_agent_process_stops_cleanly_on_sigterm(broker, tmp_path, media_server):
    h = NodeHarness(broker, tmp_path, media_server)
    proc = spawn(h)
    try:
        assert state_since(h, 0, True)
        mark = len(h.server.messages)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        _, offline = state_since(h, mark, False)
        assert offline["online"] is False and "ts" in offline   # published by the agent itself
    finally:
        if proc.poll() is None:
            proc.kill()
        h.close()


def test_bad_config_stops_the_process_with_the_key_named(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('node_id = "hp-01-a"\n[mqtt]\nhost = "x"\nport = 99999\npassword = "p"\n'
                   '[[server_keys]]\nkid = "k"\npublic_key = "AAAA"\n')
    done = subprocess.run([sys.executable, "-m", "device_agent", "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "mqtt.port" in done.stderr


def test_device_agent_imports_nothing_from_server_schedules_or_audio():
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {FORBIDDEN!r}:
                    raise ImportError("device_agent must not import " + name)
        sys.meta_path.insert(0, Block())
        import device_agent
        for mod in pkgutil.iter_modules(device_agent.__path__):
            importlib.import_module("device_agent." + mod.name)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

    for path in (ROOT / "device_agent").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in FORBIDDEN], (path, names)
