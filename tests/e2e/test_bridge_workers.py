"""Two bridge worker processes (``python -m schedules --bridge-only N``) split what many nodes
send through the MQTT shared subscription ``$share/loa/...`` on a real Mosquitto 2: every
event and every telemetry message is stored exactly once, both workers take a share, each
node's last values are its newest though the workers record them in any order, and a worker
killed with kill -9 in the middle of the stream loses nothing.

What Mosquitto 2 does with a killed member's share (checked here, written in docs/scaling.md):
it does not hand the killed worker's unconfirmed messages to the other member, and it keeps
giving the dead member its turn, queueing in its persistent session; all of it arrives when
the worker comes back under the same account (systemd restarts it), and what it had stored but
not yet confirmed is delivered again and stored once. Every wait is on a condition with a
deadline."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.models import Event, Node, Telemetry, now_ms
from server.nodes import sync_broker_accounts
from tests.mqtt_helpers import Client, wait_until_accepted
from tests.system import ROOT, System, stop_processes

NODES = 12
GROUP = "loa"


@pytest.fixture(params=["sqlite", "postgresql"])
def workers(request, tmp_path, broker):
    """The web (in-process) with nodes provisioned, no dispatcher, and a way to run bridge
    worker processes on its instance; on SQLite, and on PostgreSQL when DATABASE_URL names
    one (where the workers really write at once: a node's rows are locked per batch)."""
    db = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}
    s = System(tmp_path, broker, start_dispatcher=False, bridge_shared_group=GROUP,
               bridge_workers=2, **db)
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    nodes = s.ok("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": cluster["id"], "name": f"Loa {n}"} for n in range(NODES)])["nodes"]
    # the broker's files from the registry, with the bridge workers' accounts (as at start)
    assert sync_broker_accounts(s.settings, s.app.extensions["db_sessions"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOA_MQTT_HOST": "127.0.0.1",
           "LOA_MQTT_PORT": str(broker.port), "LOA_MQTT_USERNAME": broker.server_user,
           "LOA_MQTT_PASSWORD": broker.server_password, "LOA_PUBLIC_URL": s.url,
           "LOA_MOSQUITTO_DIR": str(broker.files.directory),
           "LOA_BRIDGE_SHARED_GROUP": GROUP, "LOA_BRIDGE_WORKERS": "2",
           "LOA_DATABASE_URL": s.settings.database_url}
    procs: list[subprocess.Popen] = []
    clients: list[Client] = []

    def start(n: int, run: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"bridge-{n}-{run}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "schedules", "--instance",
                                     str(s.instance), "--bridge-only", str(n)], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        shared = f"subscribed to $share/{GROUP}/{broker.prefix}/nodes/+/"
        s.wait(lambda: all(shared + kind in log.read_text() for kind in ("telemetry", "events")),
               timeout=30, what=f"bridge worker {n} subscribed")
        return proc, log

    for node in nodes:
        wait_until_accepted("127.0.0.1", broker.port, node["id"], node["mqtt"]["password"])
        c = Client("127.0.0.1", broker.port, node["id"], node["mqtt"]["password"])
        assert c.connect()
        clients.append(c)
    s.nodes, s.clients, s.start_worker = nodes, clients, start  # type: ignore[attr-defined]
    yield s
    for c in clients:
        c.close()
    stop_processes(procs)
    s.stop()


def _send_round(s, round_no: int) -> list:
    """Every node sends one alarm event and one telemetry message, QoS 1, without waiting for
    the broker's answers (the caller waits on them): many in flight at once."""
    sent = []
    base = now_ms()
    for n, (node, c) in enumerate(zip(s.nodes, s.clients, strict=True)):
        topic = f"{s.settings.topic_prefix}/nodes/{node['id']}"
        event = {"v": 1, "id": str(uuid.uuid4()), "type": "alarm", "ts": base + n,
                 "code": "disk_low", "detail": f"round {round_no}"}
        telemetry = {"v": 1, "ts": base + round_no * 1000 + n, "uptime_s": round_no}
        sent.append(c.c.publish(f"{topic}/events", json.dumps(event), qos=1))
        sent.append(c.c.publish(f"{topic}/telemetry", json.dumps(telemetry), qos=1))
    return sent


def _acked_by_broker(sent: list) -> None:
    for info in sent:
        info.wait_for_publish(10)
        assert info.is_published(), "the broker did not take a node's message"


def _stored(s) -> tuple[dict, dict]:
    """node -> events stored, node -> telemetry rows stored."""
    with s.app.extensions["db_sessions"]() as db:
        events = {n: c for n, c in db.execute(select(Event.node_id, func.count())
                                              .group_by(Event.node_id))}
        rows = {n: c for n, c in db.execute(select(Telemetry.node_id, func.count())
                                            .group_by(Telemetry.node_id))}
    return events, rows


def _all_stored(s, rounds: int) -> None:
    """Wait until every node has ``rounds`` events and telemetry rows stored; say what was
    stored when it does not come."""
    def done() -> bool:
        events, rows = _stored(s)
        return all(events.get(n["id"], 0) >= rounds and rows.get(n["id"], 0) >= rounds
                   for n in s.nodes)
    try:
        s.wait(done, timeout=30, what="every message stored")
    except AssertionError as err:
        raise AssertionError(f"{err}: events, telemetry per node {_stored(s)}") from None
    events, rows = _stored(s)
    assert set(events.values()) == {rounds} and set(rows.values()) == {rounds}  # once each


def _received(log: Path) -> int:
    """How many messages a worker that stopped cleanly says it was handed."""
    found = re.search(r"stopped: (\d+) messages received", log.read_text())
    assert found, f"{log.name}: the worker did not stop cleanly"
    return int(found.group(1))


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_two_bridge_workers_share_the_ingest_and_store_each_message_once(workers):
    s = workers
    one, one_log = s.start_worker(1, "a")
    two, two_log = s.start_worker(2, "a")
    rounds = 6
    for r in range(rounds):
        _acked_by_broker(_send_round(s, r))
    _all_stored(s, rounds)
    _stop(one)
    _stop(two)
    shares = _received(one_log), _received(two_log)
    assert min(shares) > 0, f"one worker took everything: {shares}"
    assert sum(shares) == 2 * rounds * NODES
    # recorded by two workers in any order, each node's last values are its newest
    with s.app.extensions["db_sessions"]() as db:
        for node in db.scalars(select(Node).where(Node.id.in_([n["id"] for n in s.nodes]))):
            newest = db.scalar(select(func.max(Telemetry.ts_ms))
                               .where(Telemetry.node_id == node.id))
            assert node.last_telemetry["ts"] == newest and node.last_telemetry["uptime_s"] == \
                rounds - 1


def test_a_bridge_worker_killed_mid_stream_loses_nothing_once_it_is_back(workers):
    s = workers
    s.start_worker(1, "a")
    two, _ = s.start_worker(2, "a")
    _acked_by_broker(_send_round(s, 0))
    in_flight = _send_round(s, 1)
    two.send_signal(signal.SIGKILL)  # with messages of round 1 handed to it, unconfirmed
    assert two.wait(10) == -signal.SIGKILL
    _acked_by_broker(in_flight)
    rounds = 5
    for r in range(2, rounds):  # the broker still gives the dead member its turn
        _acked_by_broker(_send_round(s, r))
    two, two_log = s.start_worker(2, "b")  # the same account, as systemd restarts it
    _all_stored(s, rounds)
    _stop(two)
    # everything it got came after the stream ended: its share, kept for it by the broker
    assert _received(two_log) > 0
