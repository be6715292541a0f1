"""`make run`'s script: it comes up, three demo nodes play a bulletin broadcast through the API,
Ctrl-C stops everything it started, and a second run reuses what the first created."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from server.mosquitto import free_port, port_open

ROOT = Path(__file__).resolve().parents[2]


def _start(var: Path, port: int, env_extra: dict) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "LOA_VAR": str(var), "LOA_PORT": str(port), **env_extra}
    proc = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "Ctrl-C stops everything" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("make run did not come up:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def _token(base: str, password: str) -> dict:
    r = requests.post(f"{base}/api/v1/auth/token", json={"username": "admin", "password": password},
                      timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_make_run_plays_a_bulletin_on_three_demo_nodes_and_stops_cleanly(tmp_path):
    var, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}"
    proc, lines = _start(var, port, {"LOA_ADMIN_PASSWORD": "mat-khau-demo"})
    try:
        assert any(f"{base}/" in line for line in lines)
        assert any("admin / mat-khau-demo" in line for line in lines)
        h = _token(base, "mat-khau-demo")
        nodes = requests.get(f"{base}/api/v1/nodes", headers=h, timeout=10).json()["nodes"]
        assert len(nodes) == 3
        # it says it runs once the nodes are up: a broadcast sent at once reaches all three
        assert all(n["online"] for n in nodes), nodes
        areas = requests.get(f"{base}/api/v1/areas", headers=h, timeout=10).json()["areas"]
        ward = next(a for a in areas if a["kind"] == "ward" and a["code"] == "HP-LECHAN")
        created = time.monotonic()
        b = requests.post(f"{base}/api/v1/bulletins", headers=h, timeout=30, json={
            "title": "Thử hệ thống", "text": "Đài truyền thanh phường thử hệ thống loa.",
            "category": "other"}).json()
        for step in ("submit", "approve"):
            assert requests.post(f"{base}/api/v1/bulletins/{b['id']}/{step}", headers=h,
                                 timeout=10).status_code == 200
        bc = requests.post(f"{base}/api/v1/broadcasts", headers=h, timeout=10, json={
            "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]}}).json()
        played = 0
        while time.monotonic() - created < 10 and played < 3:
            played = requests.get(f"{base}/api/v1/broadcasts/{bc['id']}", headers=h,
                                  timeout=10).json()["summary"]["played"]
            time.sleep(0.2)
        assert played == 3, "the three demo nodes did not all play it within 10 s of its writing"
        sinks = sorted((var / "agents").glob(f"*/played/*{b['sha256']}.mp3"))
        assert len(sinks) == 3
        assert all(hashlib.sha256(p.read_bytes()).hexdigest() == b["sha256"] for p in sinks)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert not port_open("127.0.0.1", port)

    # Secrets at rest: only the owner reads var/, the database; the password is nowhere in clear.
    assert (var.stat().st_mode & 0o777) == 0o700
    assert (var / "instance").stat().st_mode & 0o777 == 0o700
    assert (var / "instance" / "loa.db").stat().st_mode & 0o777 == 0o600
    assert "mat-khau-demo" not in (var / "run.json").read_text()

    # The second run reuses the database, nodes and password it made the first time; it does
    # not print the password again (it is not stored), only how to reset it.
    proc, lines = _start(var, port, {})
    try:
        assert not any("mat-khau-demo" in line for line in lines)
        assert any("LOA_ADMIN_PASSWORD" in line for line in lines)
        h = _token(base, "mat-khau-demo")
        nodes = requests.get(f"{base}/api/v1/nodes", headers=h, timeout=10).json()["nodes"]
        assert sorted(n["id"] for n in nodes) == ["hp-lechan-01", "hp-lechan-02", "hp-lechan-03"]
        assert requests.get(f"{base}/api/v1/broadcasts/{bc['id']}", headers=h,
                            timeout=10).json()["summary"]["played"] == 3
    finally:
        _stop(proc)
    assert proc.returncode == 0
