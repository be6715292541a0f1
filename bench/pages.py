"""Web pages at 1,000 nodes (``--nodes``): server-side render time (and the process's CPU time,
which a busy machine does not inflate) of every page in the menu, the dashboard's live-update
bytes per minute, and a first page load's bytes.

Builds a database in a temp folder: a province, one ward of ``--clusters`` clusters, ``--nodes``
nodes provisioned through the API (bulk), one approved bulletin (espeak) broadcast daily at 06:00
and 17:00 for the past ``--days`` days, and then, inserted in bulk through SQLAlchemy Core (not the
API, which would take hours): every node's play log of each of those slots (a few missed or
failed), ``--telemetry-days`` of hourly telemetry aggregates for every node (what
server/retention.py keeps beyond the raw days), ``--raw-days`` of raw telemetry every 30 s for
``--raw-nodes`` of the nodes (the node page reads one node's last 24 h of raw reports; the
other nodes' raw rows only deepen the index: the insert rate is measured and printed, so the
full 1,000 can be asked for where there is time), each node's last report, events and alerts.

Then, as the instance's admin (who sees every menu entry and every node):

- every page in the menu (server.web.NAV, iterated, so pages added later are measured too), a
  node's page, a broadcast's page and a bulletin's page rendered ``--renders`` times each
  through Flask's test client: p50, p95 and max (goal p95 < 300 ms), and the CPU time of a
  render (p50); ``--only dashboard,partials/dashboard`` renders only the pages named;
- over real HTTP (waitress, as ``python -m server`` serves): the dashboard's poll (its fragment
  every POLL_S seconds, 304 Not Modified with its ETag while nothing changed) in bytes on the
  wire, status line and headers included, per minute (goal < 5 KB/min); and a first load of the
  dashboard: its HTML and every stylesheet, script, font and image it references (also through
  the stylesheets' url(...)), gzip'd where the server compresses (it is checked) (goal < 300 KB).

``--write-docs`` rewrites its section of docs/benchmarks.md. Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast
from urllib.parse import urljoin, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fanout import machine, uptime, write_docs  # noqa: E402

BEGIN, END = "<!-- bench/pages.py:begin -->", "<!-- bench/pages.py:end -->"
PASSWORD = "bench-pages-admin-password"
HOUR_MS = 3600 * 1000
GOAL_RENDER_MS = 300
GOAL_POLL_BYTES_MIN = 5 * 1024
GOAL_FIRST_LOAD = 300 * 1024


# --- the database ------------------------------------------------------------------------------

class Bench:
    def __init__(self, tmp: Path, args):
        from server import create_app
        from server.cli import init_instance
        from server.mosquitto import free_port
        self.args = args
        self.instance = tmp / "instance"
        self.url = f"http://127.0.0.1:{free_port()}"
        config = {"mqtt_host": "127.0.0.1", "mqtt_port": 1, "mqtt_password": "no-broker",
                  "mosquitto_dir": str(tmp / "mosquitto"), "tts_engines": ["espeak"],
                  "public_url": self.url}
        self.saved = tmp / "bench-pages.json"  # what a kept database holds (--keep)
        init_instance(self.instance, PASSWORD, config)
        self.app = create_app(config, instance_path=self.instance)
        self.engine = self.app.extensions["db_engine"]
        self.api = self.app.test_client()
        token = self._api("POST", "/api/v1/auth/token",
                          {"username": "admin", "password": PASSWORD}, auth=False)["token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.data: dict = {}

    def _api(self, method: str, path: str, body=None, auth: bool = True) -> dict:
        r = self.api.open(path, method=method, json=body,
                          headers=self.headers if auth else {})
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.get_data(as_text=True)}")
        return r.get_json()

    def build(self) -> dict:
        """The fleet through the API, then the history in bulk; what was made, and how fast.
        A database kept by an earlier run (--keep) is used as it is."""
        if self.saved.exists():
            saved = json.loads(self.saved.read_text())
            self.data = saved["data"]
            return saved["built"]
        built = self._build()
        self.saved.write_text(json.dumps({"data": self.data, "built": built}))
        return built

    def province(self) -> tuple[dict, dict, list[int], list[str]]:
        """A province, one ward of ``--clusters`` clusters and ``--nodes`` nodes through the
        API (the bulk one, 500 a call): (province, ward, cluster ids, node ids)."""
        a = self.args
        province = self._api("POST", "/api/v1/areas", {"name": "Thành phố Hải Phòng",
                                                       "code": "HP", "kind": "province"})
        ward = self._api("POST", "/api/v1/areas", {"name": "Phường Lê Chân", "code": "HP-LC",
                                                   "kind": "ward", "parent_id": province["id"]})
        clusters = [self._api("POST", "/api/v1/areas", {
            "name": f"Cụm loa tổ dân phố {i}", "code": f"HP-LC-{i:02d}", "kind": "cluster",
            "parent_id": ward["id"]})["id"] for i in range(1, a.clusters + 1)]
        rng = random.Random(9)
        nodes: list[str] = []
        for start in range(0, a.nodes, 500):
            rows = [{"cluster_id": clusters[i % len(clusters)], "name": f"Loa số {i + 1}",
                     "id": f"hp-lc-{i + 1:04d}", "lat": 20.85 + rng.uniform(-0.02, 0.02),
                     "lon": 106.68 + rng.uniform(-0.02, 0.02)}
                    for i in range(start, min(a.nodes, start + 500))]
            nodes += [n["id"] for n in self._api("POST", "/api/v1/nodes/bulk", rows)["nodes"]]
        return province, ward, clusters, nodes

    def _build(self) -> dict:
        a = self.args
        t0 = time.monotonic()
        _, ward, clusters, nodes = self.province()
        b = self._api("POST", "/api/v1/bulletins", {
            "title": "Phát thanh thời sự phường", "category": "other",
            "text": "Ủy ban nhân dân phường thông báo lịch thu gom rác thải tuần này."})
        self._api("POST", f"/api/v1/bulletins/{b['id']}/submit")
        b = self._api("POST", f"/api/v1/bulletins/{b['id']}/approve")
        today = dt.datetime.now(dt.UTC).date()
        first_day = today - dt.timedelta(days=a.days)
        bc = self._api("POST", "/api/v1/broadcasts", {
            "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
            "recurrence": "FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0",
            "start_at": f"{first_day.isoformat()}T06:00:00"})
        self.data = {"ward": ward["id"], "nodes": nodes, "bulletin": b["id"],
                     "broadcast": bc["id"], "sha": b["sha256"]}
        api_s = time.monotonic() - t0
        counts = {"nodes": len(nodes), "clusters": len(clusters), "api_s": api_s}
        counts.update(self._history(first_day))
        return counts

    def _insert(self, table, rows_iter, batch: int = 20_000) -> tuple[int, float]:
        """Rows into ``table`` by executemany in batches, one transaction each; (rows, s)."""
        n, t0, buf = 0, time.monotonic(), []
        with self.engine.connect() as conn:
            for row in rows_iter:
                buf.append(row)
                if len(buf) >= batch:
                    conn.execute(table.insert(), buf)
                    conn.commit()
                    n += len(buf)
                    buf = []
            if buf:
                conn.execute(table.insert(), buf)
                conn.commit()
                n += len(buf)
        return n, time.monotonic() - t0

    def _history(self, first_day: dt.date) -> dict:
        from sqlalchemy import Table, update

        from server.models import Alert, Event, Node, PlayLog, Telemetry, TelemetryHourly
        h = History(self.args, self.data, first_day)
        out: dict = {}
        out["playlogs"], out["playlogs_s"] = self._insert(PlayLog.__table__, h.plays())
        out["hourly"], out["hourly_s"] = self._insert(TelemetryHourly.__table__, h.hourly())
        out["raw_nodes"] = min(self.args.raw_nodes, len(self.data["nodes"]))
        out["raw"], out["raw_s"] = self._insert(Telemetry.__table__, h.raw())
        # the fleet's present: most online and reporting, some offline, a few playing now
        table = cast(Table, Node.__table__)  # declarative: always a Table
        with self.engine.begin() as conn:
            for node, values in h.present():
                conn.execute(update(table).where(table.c.id == node).values(**values))
        out["events"], _ = self._insert(Event.__table__, h.events())
        out["alerts"], _ = self._insert(Alert.__table__, h.alerts())
        out["offline"] = len(h.offline)
        return out

    def db_size(self) -> int:
        return sum(p.stat().st_size for p in self.instance.glob("*.db*"))


class History:
    """The rows of a fleet's past, made up (seeded, so every run makes the same)."""

    def __init__(self, args, data: dict, first_day: dt.date):
        self.args, self.d, self.first_day = args, data, first_day
        self.rng = random.Random(30)
        self.now = dt.datetime.now(dt.UTC)
        self.now_ms = int(self.now.timestamp() * 1000)
        self.offline = set(self.rng.sample(data["nodes"], max(1, len(data["nodes"]) // 20)))

    def plays(self):
        """Every node's play log of each 06:00 and 17:00 slot (the ward's zone, UTC+7)."""
        d, rng = self.d, self.rng
        day = self.first_day
        while day <= self.now.date():
            for hour in (6, 17):
                start = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC) - \
                    dt.timedelta(hours=7)
                if start > self.now:
                    continue
                ms = int(start.timestamp() * 1000)
                slot = f"b{d['broadcast']}-{start.strftime('%Y%m%dT%H%M%SZ')}"
                for node in d["nodes"]:
                    roll = rng.random()
                    result = "played" if roll < 0.985 else "missed" if roll < 0.995 else "failed"
                    late = rng.randint(0, 40)
                    played = result == "played"
                    yield {"node_id": node, "broadcast_id": d["broadcast"],
                           "bulletin_id": d["bulletin"], "item_id": f"bc-{d['broadcast']}",
                           "slot_id": slot, "sha256": d["sha"], "scheduled_at_ms": ms,
                           "started_at_ms": ms + late if played else None,
                           "ended_at_ms": ms + late + 9_000 if played else None,
                           "result": result, "reason": None if played else "offline"}
            day += dt.timedelta(days=1)

    def hourly(self):
        hour_now = self.now_ms - self.now_ms % HOUR_MS
        for h in range(self.args.telemetry_days * 24, 0, -1):
            hour = hour_now - h * HOUR_MS
            for node in self.d["nodes"]:
                t = 45 + self.rng.uniform(-5, 8)
                yield {"node_id": node, "hour_ms": hour, "count": 120,
                       "cpu_temp_c_min": t - 2, "cpu_temp_c_avg": t, "cpu_temp_c_max": t + 3,
                       "volume_min": 80, "volume_avg": 80, "volume_max": 80,
                       "signal_dbm_min": -95, "signal_dbm_avg": -88, "signal_dbm_max": -80,
                       "disk_free_mb_min": 5100, "disk_free_mb_avg": 5120,
                       "disk_free_mb_max": 5140, "clock_offset_ms_min": -3,
                       "clock_offset_ms_avg": 0.5, "clock_offset_ms_max": 4,
                       "mem_used_pct_min": 20, "mem_used_pct_avg": 24, "mem_used_pct_max": 30,
                       "load1_min": 0.05, "load1_avg": 0.2, "load1_max": 0.9,
                       "amp_on_share": 0.02}

    def report(self, ts: int) -> dict:
        """One telemetry message as an agent sends it (docs/protocol.md)."""
        rng = self.rng
        return {"v": 1, "ts": ts, "uptime_s": 86_400, "agent_version": "1.4.0",
                "cpu_temp_c": round(44 + rng.uniform(0, 9), 1), "load1": 0.12,
                "mem_used_pct": 23.5, "disk_free_mb": 5120, "volume": 80, "amp_on": False,
                "playing": None, "clock_offset_ms": rng.randint(-4, 4),
                "net": {"type": "4g", "signal_dbm": rng.randint(-97, -79),
                        "operator": "Viettel", "access_tech": "lte", "signal_pct": 62},
                "power": {"under_voltage": False, "throttled": False}}

    def raw(self):
        nodes = self.d["nodes"][:self.args.raw_nodes]
        for ts in range(self.now_ms - self.args.raw_days * 24 * HOUR_MS, self.now_ms, 30_000):
            for node in nodes:
                yield {"node_id": node, "ts_ms": ts, "payload": self.report(ts)}

    def present(self):
        """(node, its columns now): online but for ``offline``, one in 97 playing."""
        seen_off = (self.now - dt.timedelta(hours=2)).replace(tzinfo=None)
        for i, node in enumerate(self.d["nodes"]):
            tel = self.report(self.now_ms - 15_000)
            if i % 97 == 0:
                tel["playing"] = {"item_id": f"bc-{self.d['broadcast']}", "priority": 5,
                                  "since": self.now_ms - 4_000}
            off = node in self.offline
            yield node, {"online": not off, "last_telemetry": tel,
                         "last_seen": seen_off if off else self.now.replace(tzinfo=None)}

    def events(self):
        for i, node in enumerate(self.d["nodes"]):
            for k in range(self.args.events_per_node):
                at = self.now - dt.timedelta(hours=self.rng.uniform(0, 24 * self.args.days))
                kind = "alarm" if k == 0 and i % 50 == 0 else "state"
                yield {"node_id": node, "event_id": f"ev-{i}-{k}", "type": kind,
                       "ts_ms": int(at.timestamp() * 1000),
                       "payload": {"kind": "amp_fault"} if kind == "alarm" else {"x": k},
                       "received_at": at.replace(tzinfo=None)}

    def alerts(self):
        """Each node's past offline alerts, resolved; the offline nodes' latest still open."""
        naive = self.now.replace(tzinfo=None)
        for node in self.d["nodes"]:
            for k in range(self.args.alerts_per_node):
                opened = naive - dt.timedelta(hours=self.rng.uniform(1, 24 * self.args.days))
                open_now = node in self.offline and k == 0
                yield {"kind": "node_offline", "node_id": node, "area_id": self.d["ward"],
                       "severity": "warning", "state": "open" if open_now else "resolved",
                       "detail_class": "offline", "detail": {"minutes": 120}, "episodes": [],
                       "count": 1, "first_seen": opened, "last_seen": opened,
                       "opened_at": opened, "cleared": False, "revision": 1,
                       "notified_revision": 1,
                       "resolved_at": None if open_now else opened + dt.timedelta(hours=1)}


# --- renders -----------------------------------------------------------------------------------

def login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = {"username": "admin", "password": PASSWORD}
    if token:
        form["csrf_token"] = token.group(1)
    r = client.post("/login", data=form)
    if r.status_code not in (302, 303):
        raise RuntimeError(f"login: {r.status_code}")


def page_paths(app, data: dict) -> list[tuple[str, str]]:
    """(label, path): every menu entry (NAV, as merged), then the pages of one node, one
    broadcast and one bulletin."""
    from flask import url_for

    from server.web import NAV
    with app.test_request_context():
        paths = [(e.endpoint.removeprefix("web."), url_for(e.endpoint)) for e in NAV]
        paths += [("node_page", url_for("web.node_page", node_id=data["nodes"][0])),
                  ("broadcast", url_for("web.broadcast", broadcast_id=data["broadcast"])),
                  ("bulletin", url_for("web.bulletin", bulletin_id=data["bulletin"])),
                  ("partials/dashboard", url_for("web.dashboard_partial"))]
    return paths


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def renders(app, paths, n: int) -> list[dict]:
    """``n`` rounds, each rendering every page once, after one unmeasured round (templates
    compiled, the database's pages in the cache): a burst of other work on a shared machine
    then lands on one render of many pages, not on every render of one."""
    client = app.test_client()
    login(client)
    times: dict[str, list[float]] = {label: [] for label, _ in paths}
    cpu: dict[str, list[float]] = {label: [] for label, _ in paths}
    last: dict[str, tuple[int, int]] = {}
    for round_ in range(n + 1):
        for label, path in paths:
            t, c = time.perf_counter(), time.process_time()
            r = client.get(path)
            body = r.get_data()
            ms = (time.perf_counter() - t) * 1000
            cpu_ms = (time.process_time() - c) * 1000
            last[label] = (r.status_code, len(body))
            if round_:
                times[label].append(ms)
                cpu[label].append(cpu_ms)
    out = []
    for label, path in paths:
        status, size = last[label]
        ts = times[label]
        out.append({"label": label, "path": path, "status": status, "bytes": size,
                    "p50": statistics.median(ts), "p95": pct(ts, 95), "max": max(ts),
                    "cpu": statistics.median(cpu[label])})
        print(f"  {label:24} {status} {size:>8} B  p50 {out[-1]['p50']:7.1f} ms  "
              f"p95 {out[-1]['p95']:7.1f} ms  CPU p50 {out[-1]['cpu']:7.1f} ms", flush=True)
    return out


# --- on the wire -------------------------------------------------------------------------------

class Http:
    """Raw HTTP/1.1 over one keep-alive socket, counting every byte received."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, headers: dict | None = None,
                body: bytes = b"") -> tuple[int, dict, bytes, int]:
        """(status, headers, body, bytes on the wire) of one request."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "Accept-Encoding: gzip, deflate, br"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = self.file.readline()
        wire = len(status_line)
        status = int(status_line.split()[1])
        got: dict[str, str] = {}
        while True:
            line = self.file.readline()
            wire += len(line)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "set-cookie":
                name, _, rest = v.strip().partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            got[k.lower()] = v.strip()
        length = int(got.get("content-length", "0"))
        if got.get("transfer-encoding") == "chunked":
            raise RuntimeError("chunked answers are not counted here")
        data = self.file.read(length) if length else b""
        return status, got, data, wire + len(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def http_login(http: Http) -> None:
    _s, _h, page, _w = http.request("GET", "/login")
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = f"username=admin&password={PASSWORD}"
    if token:
        form += "&csrf_token=" + token.group(1).decode()
    status, _h, _b, _w = http.request("POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded"}, form.encode())
    if status not in (302, 303):
        raise RuntimeError(f"login over HTTP: {status}")


def wire(url: str) -> dict:
    """The dashboard's poll and a first load, over HTTP to waitress."""
    from server.web.dashboard import POLL_S
    http = Http(url)
    http_login(http)
    out: dict = {"poll_s": POLL_S}
    status, headers, body, first = http.request("GET", "/partials/dashboard")
    out["poll_full"] = first
    out["poll_body"] = len(body)
    out["poll_encoding"] = headers.get("content-encoding", "none")
    etag = headers.get("etag")
    status, headers, body, again = http.request("GET", "/partials/dashboard",
                                                {"If-None-Match": etag} if etag else {})
    out["poll_304"] = again if status == 304 else None
    out["poll_status"] = status
    out["poll_headers"] = again - len(body)
    http.close()

    # a first load: a new browser (cookie only), the page, then what it references, once each
    http = Http(url)
    http_login(http)
    status, headers, html, w = http.request("GET", "/")
    items = [("/", headers.get("content-type", ""), len(html), w,
              headers.get("content-encoding", "none"))]
    seen = {"/"}
    queue = [urljoin("/", u) for u in re.findall(
        rb'(?:<link[^>]+href|<script[^>]+src|<img[^>]+src)="([^"]+)"', html)
        for u in [u.decode()]]
    while queue:
        path = queue.pop(0)
        if path in seen or urlsplit(path).netloc:
            continue
        seen.add(path)
        status, headers, body, w = http.request("GET", path)
        ctype = headers.get("content-type", "")
        items.append((path, ctype, len(body), w, headers.get("content-encoding", "none")))
        if "css" in ctype:
            queue += [urljoin(path, u.strip("'\"")) for u in
                      re.findall(r"url\(([^)]+)\)", body.decode("utf-8", "replace"))
                      if not u.strip("'\"").startswith("data:")]
    http.close()
    out["first_load"] = items
    return out


def serve(app, port: int):
    from waitress.server import create_server
    server = create_server(app, host="127.0.0.1", port=port, threads=4, ident="LoaPhuong")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server


# --- report ------------------------------------------------------------------------------------

def kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


def report(args, built: dict, rendered: list[dict], onwire: dict, db_bytes: int,
           before: str, after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = (f".venv/bin/python bench/pages.py --nodes {args.nodes} --days {args.days} "
           f"--telemetry-days {args.telemetry_days} --raw-days {args.raw_days} "
           f"--raw-nodes {args.raw_nodes} --renders {args.renders}"
           + (f" --clusters {args.clusters}" if args.clusters != 20 else "")
           + (f" --events-per-node {args.events_per_node}" if args.events_per_node != 20 else "")
           + (f" --alerts-per-node {args.alerts_per_node}" if args.alerts_per_node != 3 else "")
           + (f" --only {args.only}" if args.only else "") + " --write-docs")
    make = args.nodes == 1000 and not args.only  # what `make bench-pages` runs
    slow = [r for r in rendered if r["p95"] >= GOAL_RENDER_MS]

    def rate(what: str) -> float:
        return built[what] / built[f"{what}_s"]
    lines = [BEGIN, f"## Web pages at {args.nodes:,} nodes", "",
             f"- Date: {now}", f"- Machine: {machine()}",
             f"- Command: `{cmd}`" + (" (`make bench-pages`)" if make else ""),
             f"- Load average (`uptime`) before: {before}; after: {after}", "",
             f"Data (SQLite, {db_bytes / 1024 / 1024:.0f} MB): {built['nodes']} nodes in "
             f"{built['clusters']} clusters of one ward ({built['offline']} offline), one "
             f"broadcast daily at 06:00 and 17:00 for {args.days} days and "
             f"{built['playlogs']:,} play logs of it ({rate('playlogs'):,.0f} rows/s "
             f"inserted); {built['hourly']:,} hourly telemetry aggregates "
             f"({args.telemetry_days} days × every node; {rate('hourly'):,.0f} rows/s); "
             f"{built['raw']:,} raw reports every 30 s over {args.raw_days} days for "
             f"{built['raw_nodes']} of the nodes ({rate('raw'):,.0f} rows/s, so "
             f"every node's {args.raw_days} days raw, "
             f"{built['nodes'] * args.raw_days * 2880:,} rows, would take about "
             f"{built['nodes'] * args.raw_days * 2880 / rate('raw') / 60:,.0f}"
             f" min to insert here); {built['events']:,} events; {built['alerts']:,} alerts "
             f"({built['offline']} open).", "",
             f"Server-side render, as the admin (every menu entry, every node), Flask test "
             f"client, {args.renders} rounds of every page after one unmeasured round (goal "
             f"p95 < {GOAL_RENDER_MS} ms; CPU: the process's CPU time for a render, p50, "
             f"which other work on the machine does not inflate):", "",
             "| page | path | status | HTML | p50 | p95 | max | CPU | goal |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rendered:
        lines.append(f"| {r['label']} | `{r['path']}` | {r['status']} | {kb(r['bytes'])} | "
                     f"{r['p50']:.0f} ms | {r['p95']:.0f} ms | {r['max']:.0f} ms | "
                     f"{r['cpu']:.0f} ms | "
                     f"{'met' if r['p95'] < GOAL_RENDER_MS else 'not met'} |")
    per_min = 60 / onwire["poll_s"]
    unchanged = (onwire["poll_304"] or onwire["poll_full"]) * per_min
    changed = onwire["poll_full"] * per_min
    lines += ["", f"Dashboard live update over HTTP (waitress): a poll every {onwire['poll_s']} s "
              f"({per_min:.0f} a minute). Answered 304 Not Modified (its ETag) while nothing "
              f"changed: {onwire['poll_304'] or '—'} bytes on the wire (status line and "
              f"headers), {kb(unchanged)}/min (goal < {kb(GOAL_POLL_BYTES_MIN)}/min: "
              f"{'met' if unchanged < GOAL_POLL_BYTES_MIN else 'not met'}). A changed fragment: "
              f"{onwire['poll_full']} bytes ({onwire['poll_body']} of body, content-encoding "
              f"{onwire['poll_encoding']}), so a minute in which every poll brings a change "
              f"costs {kb(changed)}.", ""]
    total = sum(i[3] for i in onwire["first_load"])
    encodings = sorted({i[4] for i in onwire["first_load"]})
    lines += [f"First load of the dashboard by a logged-in browser with nothing cached: "
              f"{kb(total)} on the wire in {len(onwire['first_load'])} requests (goal < "
              f"{kb(GOAL_FIRST_LOAD)}: {'met' if total < GOAL_FIRST_LOAD else 'not met'}); "
              f"content-encoding of the answers: {', '.join(encodings)} (asked with "
              f"`Accept-Encoding: gzip, deflate, br`).", "",
              "| resource | type | body | on the wire |", "| --- | --- | ---: | ---: |"]
    for path, ctype, body, w, _enc in onwire["first_load"]:
        lines.append(f"| `{path}` | {ctype.split(';')[0]} | {kb(body)} | {kb(w)} |")
    lines += ["", f"Pages over the goal: {', '.join(r['label'] for r in slow) or 'none'}.", "",
              END]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--days", type=int, default=365, help="days of play logs")
    ap.add_argument("--telemetry-days", type=int, default=30, help="days of hourly aggregates")
    ap.add_argument("--raw-days", type=int, default=7, help="days of raw telemetry")
    ap.add_argument("--raw-nodes", type=int, default=50, help="nodes with raw telemetry")
    ap.add_argument("--events-per-node", type=int, default=20)
    ap.add_argument("--alerts-per-node", type=int, default=3)
    ap.add_argument("--renders", type=int, default=20)
    ap.add_argument("--keep", help="build the database in this folder and keep it; a later "
                    "run with the same folder measures it again without building it")
    ap.add_argument("--only", help="render only these pages (labels as printed, by commas: "
                    "dashboard,partials/dashboard)")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    before = uptime()
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        bench = Bench(folder, args)
        t = time.monotonic()
        built = bench.build()
        print(f"built in {time.monotonic() - t:.0f} s: " + json.dumps(
            {k: round(v, 1) if isinstance(v, float) else v for k, v in built.items()}),
            flush=True)
        paths = page_paths(bench.app, bench.data)
        if args.only:
            paths = [(label, path) for label, path in paths if label in args.only.split(",")]
        rendered = renders(bench.app, paths, args.renders)
        port = urlsplit(bench.url).port
        assert port is not None  # the bench's own http://127.0.0.1:PORT
        # its loop runs in a daemon thread until the process ends: closing waitress under its
        # running loop only makes that loop fail on the closed descriptors
        serve(bench.app, port)
        onwire = wire(bench.url)
        section = report(args, built, rendered, onwire, bench.db_size(), before, uptime())
        bench.engine.dispose()
    print(section)
    if args.write_docs:
        write_docs(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
