"""The reports page's numbers over a year: how long a six-monthly and a yearly report take for a
ward of ``--nodes`` nodes (``--clusters`` clusters) with a bulletin aired twice a day for a year
(one play log per node and slot, one in twenty slots unreported) and an hourly telemetry row per
node and hour, the way the dispatcher's rollup keeps them (server/retention.py).

In-process on SQLite: the instance, areas, nodes, bulletin and both daily series are made
through the API (Flask's test client, espeak speaking the bulletin); the play logs and hourly
rows, being what nodes and the dispatcher would write, are inserted in bulk. Then the page's
``summarise`` (server/report_summary.py), the CSV and the PDF are timed, ``--runs`` times each.
``--write-docs`` rewrites its section of docs/benchmarks.md. Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, update

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from schedules.slots import slot_id  # noqa: E402
from server import create_app  # noqa: E402
from server.cli import init_instance  # noqa: E402
from server.models import Broadcast, Node, PlayLog, TelemetryHourly  # noqa: E402
from server.retention import HOUR_MS  # noqa: E402

BEGIN, END = "<!-- bench/reports.py:begin -->", "<!-- bench/reports.py:end -->"
PASSWORD = "bench-mat-khau-123"
TZ = dt.timezone(dt.timedelta(hours=7))


class Api:
    def __init__(self, app):
        self.client = app.test_client()
        r = self.client.post("/api/v1/auth/token",
                             json={"username": "admin", "password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {r.get_json()['token']}"}

    def ok(self, method: str, path: str, **kw):
        r = self.client.open(path, method=method, headers=self.headers, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.get_data(True)}"
        return r.get_json()


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def build(tmp: Path, nodes: int, clusters: int, days: int):
    instance = tmp / "instance"
    config = {"mqtt_host": "127.0.0.1", "mqtt_port": 1, "mqtt_password": "no-broker",
              "mosquitto_dir": str(tmp / "mosquitto"), "tts_engines": ["espeak"]}
    init_instance(instance, PASSWORD, config)
    app = create_app(config, instance_path=instance)
    api = Api(app)
    ward = api.ok("POST", "/api/v1/areas", json={"name": "Phường Lê Chân", "code": "LC",
                                                 "kind": "ward"})
    cluster_ids = [api.ok("POST", "/api/v1/areas", json={
        "name": f"Cụm {c + 1}", "code": f"LC-{c + 1}", "kind": "cluster",
        "parent_id": ward["id"]})["id"] for c in range(clusters)]
    made = api.ok("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": cluster_ids[i % clusters], "name": f"Loa số {i}"} for i in range(nodes)])
    node_ids = [n["id"] for n in (made["nodes"] if isinstance(made, dict) else made)]
    b = api.ok("POST", "/api/v1/bulletins", json={
        "title": "Thông báo", "text": "Ủy ban nhân dân phường thông báo.", "category": "health"})
    api.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
    b = api.ok("POST", f"/api/v1/bulletins/{b['id']}/approve")
    today = dt.datetime.now(TZ).date()
    first = today - dt.timedelta(days=days)
    series = []
    for hour in (6, 17):
        start = dt.datetime.combine(first, dt.time(hour), TZ)
        bc = api.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": start.isoformat()})
        series.append((bc["id"], start))
    sessions = app.extensions["db_sessions"]
    long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days + 2)
    with sessions() as db:
        db.execute(update(Node).values(created_at=long_ago))
        db.execute(update(Broadcast).values(created_at=long_ago))
        rows = []
        n = 0
        for bc_id, start in series:
            for day in range(days):
                at = start + dt.timedelta(days=day)
                sid = slot_id(bc_id, at)
                for node_id in node_ids:
                    n += 1
                    if n % 20 == 0:
                        continue  # unreported
                    rows.append({"node_id": node_id, "broadcast_id": bc_id,
                                 "bulletin_id": b["id"], "item_id": f"bc-{bc_id}",
                                 "slot_id": sid, "sha256": b["sha256"],
                                 "scheduled_at_ms": ms(at), "started_at_ms": ms(at),
                                 "ended_at_ms": ms(at) + b["duration_ms"],
                                 "result": "completed"})
        db.execute(insert(PlayLog), rows)
        hour0 = ms(dt.datetime.combine(first, dt.time(), TZ))
        hours = days * 24
        for node_id in node_ids:
            db.execute(insert(TelemetryHourly), [
                {"node_id": node_id, "hour_ms": hour0 + h * HOUR_MS, "count": 120}
                for h in range(hours) if h % 50])  # one hour in fifty unheard
        db.commit()
    return app, len(rows), nodes * hours


def timed(fn, runs: int) -> tuple[float, float]:
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t)
    return statistics.median(took), max(took)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    from flask import g

    from server.models import User
    from server import report_summary as reports
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        app, plays, hourly = build(Path(tmp), args.nodes, args.clusters, args.days)
        print(f"data: {plays} play logs, {hourly} hourly rows in {time.perf_counter() - t:.0f} s",
              flush=True)
        today = dt.datetime.now(TZ).date()
        results = []
        with app.test_request_context("/reports"), app.extensions["db_sessions"]() as db:
            g.db, g.user = db, db.get(User, 1)
            for label, span in (("six months (182 days)", 182), ("a year (365 days)", 365)):
                first = today - dt.timedelta(days=span)
                last = today - dt.timedelta(days=1)
                made: list = []

                def run(first=first, last=last, made=made):
                    made[:] = [reports.summarise(
                        db, app.config["SETTINGS"], areas=None, first_day=first, last_day=last,
                        tz="Asia/Ho_Chi_Minh", now=dt.datetime.now(dt.UTC))]
                page = timed(run, args.runs)
                summary = made[0]
                csv_t = timed(lambda s=summary: reports.csv_text(s), args.runs)
                pdf_t = timed(lambda s=summary: reports.pdf_bytes(s, "Phường Lê Chân"),
                              args.runs)
                results.append((label, summary.total["planned"], page, csv_t, pdf_t))
                print(label, summary.total, f"summary {page[0]:.2f} s (max {page[1]:.2f}),"
                      f" csv {csv_t[0]:.3f} s, pdf {pdf_t[0]:.2f} s", flush=True)
    if args.write_docs:
        sys.path.insert(0, str(HERE))
        from fanout import uptime, write_docs
        lines = [BEGIN, "## Reports: a six-monthly and a yearly report", "",
                 f"`python bench/reports.py --nodes {args.nodes} --clusters {args.clusters} "
                 f"--days {args.days} --write-docs` on the 2-core machine, SQLite, "
                 f"{dt.date.today().isoformat()}: {args.nodes} nodes in {args.clusters} clusters,"
                 f" a bulletin aired twice a day for {args.days} days ({plays} play logs), an "
                 f"hourly telemetry row per node and hour ({hourly} rows). Median of "
                 f"{args.runs} runs (max in brackets), load average {uptime()} at the end (other "
                 "work shares the machine: upper bounds).", "",
                 "| period | planned items | the numbers (`summarise`) | CSV | PDF |",
                 "| --- | --- | --- | --- | --- |"]
        for label, planned, page, csv_t, pdf_t in results:
            lines.append(f"| {label} | {planned:,} | {page[0]:.2f} s ({page[1]:.2f} s) | "
                         f"{csv_t[0]:.3f} s | {pdf_t[0]:.2f} s |")
        lines += ["", END, ""]
        write_docs("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
