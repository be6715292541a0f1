"""PostgreSQL briefly gone, with real parts: a PostgreSQL of the test's own (Debian's package,
tests/pg_server.py), the dispatcher and the web as real processes on it, a real agent and
Mosquitto. The server is stopped as in a crash (``pg_ctl stop -m immediate``) for some seconds
while the node plays a slot from its cache, sends acks, `played` events and telemetry, and a
timed broadcast falls due; then started again.

Nothing the node reported is lost or stored twice, nothing is sent or played twice, the web
answers a clear 503 meanwhile (not a 500 traceback) and works again after, and the dispatcher
says when the database is gone and when it is back. Every wait is on a condition with a
deadline."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import requests
from sqlalchemy import func, select

from server.i18n import t
from server.models import Command, Event, PlayLog, Telemetry
from tests.pg_server import PostgresServer, Unavailable
from tests.system import System, played_events, series_and_timed_broadcast

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone


@pytest.fixture
def postgres():
    """A PostgreSQL of this test's own, which it may stop and start (skipped, saying why,
    where Debian's server package is not installed); durable, as a production server is:
    a commit it acknowledged survives its crash."""
    try:
        server = PostgresServer(durable=True)
    except Unavailable as err:
        pytest.skip(str(err))
    try:
        server.start()
        yield server
    finally:
        server.close()


def _get(url: str, path: str, token: str) -> requests.Response | None:
    try:
        return requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
    except requests.RequestException:
        return None


def test_postgres_gone_for_seconds_loses_nothing_sends_nothing_twice_and_the_web_says_503(
        tmp_path, broker, postgres):
    url = postgres.create_database("loa")
    instance = tmp_path / "instance"
    instance.mkdir()
    # the processes the test starts read the database from the instance's config
    (instance / "config.toml").write_text(f"database_url = {json.dumps(url)}\n")
    s = System(tmp_path, broker, start_dispatcher=False, database_url=url, lease_ttl_s=30,
               lease_renew_s=1, worker_stale_s=6, schedule_lead_s=0)
    try:
        proc, log = s.start_dispatcher_process("a")
        web, web_url = s.start_web_process("1")
        ward = s.area("Phường Lê Chân", "HP-LC", "ward")
        cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
        node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
        _agent, sink = s.start_agent(node)
        b = s.approved_bulletin("Bản tin", "Thông báo.")
        long = s.approved_bulletin("Lịch cắt điện", "Ủy ban nhân dân phường Lê Chân thông báo "
                                   "lịch cắt điện khu phố ba từ bảy giờ sáng đến mười một giờ "
                                   "trưa ngày mai.")  # a few seconds of speech
        s.wait(lambda: "lease dispatcher acquired" in log.read_text(), 60,
               "the dispatcher acting")
        s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], 30,
               "the agent online")
        at = (dt.datetime.now(TZ) + dt.timedelta(seconds=12)).replace(microsecond=0)
        # the slot and the one-off fall due while the database is gone
        bc, slot, timed, timed_at = series_and_timed_broadcast(s, node["id"], b["id"], at)
        plays = lambda bc_id: [p for p in played_events(sink)  # noqa: E731
                               if p["item_id"] == f"bc-{bc_id}"]
        nodes = _get(web_url, "/api/v1/nodes", s.token)
        assert nodes is not None and nodes.status_code == 200
        # playing now: received before the database goes, its `finished` ack and `played`
        # event sent while it is gone
        now = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": long["id"],
                                                       "targets": {"nodes": [node["id"]]}})
        s.wait(lambda: (r := s.ok("GET", f"/api/v1/broadcasts/{now['id']}"))["nodes"]
               and r["nodes"][0]["status"] in ("received", "started"), 10,
               "the node acknowledging the broadcast")

        postgres.stop("immediate")  # gone, as in a crash
        gone_at = time.time()
        s.wait(lambda: plays(bc["id"]), at.timestamp() - time.time() + 15,
               "the slot played from the cache")
        s.wait(lambda: "ALARM database unavailable" in log.read_text(), 20,
               "the dispatcher saying the database is gone")
        (answer,) = s.wait(lambda: (r := _get(web_url, "/api/v1/nodes", s.token)) is not None
                           and [r], 20, "the web answering")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == {"code": "database_unavailable",
                                          "message": t("err.database_unavailable", "vi")}
        assert answer.headers["Retry-After"] == "5"
        health = requests.get(f"{web_url}/healthz", timeout=10)
        assert health.status_code == 503
        s.wait(lambda: time.time() > max(timed_at.timestamp() + 1, gone_at + 6), 30,
               "the timed broadcast past due, the database gone a few seconds")

        postgres.start()
        back_at = time.time()
        s.wait(lambda: "database available again" in log.read_text(), 30,
               "the dispatcher saying the database is back")
        s.wait(lambda: (r := _get(web_url, "/api/v1/nodes", s.token)) is not None
               and r.status_code == 200, 30, "the web working again")
        report = s.wait(lambda: (r := s.ok("GET", f"/api/v1/broadcasts/{timed['id']}"))
                        ["nodes"] and r["nodes"][0]["played"] == "completed" and r, 60,
                        "the timed broadcast sent after the outage and played")
        assert len(report["nodes"]) == 1
        (played_now,) = s.ok("GET", f"/api/v1/broadcasts/{now['id']}")["nodes"]
        assert (played_now["status"], played_now["played"]) == ("finished", "completed")
        assert len(plays(now["id"])) == 1
        assert min(p["ended_at"] for p in plays(now["id"])) > gone_at * 1000, \
            "it finished before the database went: no ack was held"
        with s.app.extensions["db_sessions"]() as db:
            rows = list(db.scalars(select(PlayLog).where(PlayLog.node_id == node["id"],
                                                         PlayLog.slot_id == slot)))
            assert len(rows) == 1 and rows[0].result == "completed"  # stored once
            assert db.scalar(select(func.count()).select_from(Command).where(
                Command.type == "play", Command.broadcast_id == timed["id"])) == 1  # made once
            ids = list(db.scalars(select(Event.event_id).where(Event.node_id == node["id"])))
            assert len(ids) == len(set(ids))
            sent_meanwhile = list(db.scalars(select(Telemetry.ts_ms).where(
                Telemetry.node_id == node["id"], Telemetry.ts_ms > gone_at * 1000,
                Telemetry.ts_ms < back_at * 1000)))
        assert len(sent_meanwhile) >= 2, "telemetry sent while the database was gone is lost"
        assert len(sent_meanwhile) == len(set(sent_meanwhile))
        assert len(plays(bc["id"])) == 1 and len(plays(timed["id"])) == 1  # played once
        assert s.ok("GET", f"/api/v1/nodes/{node['id']}")["rejected"]["messages"] == 0
        said = log.read_text()
        assert "lease dispatcher lost" not in said  # the outage is shorter than the lease
        # one line each way, not a traceback a tick
        assert "ALARM database unavailable: the dispatcher's duties wait" in said
        assert "database available again: the dispatcher's duties run again" in said
        assert "Traceback" not in said
        assert "Traceback" not in (tmp_path / "web-1.log").read_text()
        assert proc.poll() is None and web.poll() is None
    finally:
        s.stop()
