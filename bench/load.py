"""10,000 nodes on one machine: a whole system under a province's load (issue 10).

Starts a whole system as `make run` does (its own Mosquitto with its open-files limit raised for
the fleet, the web under waitress, the dispatcher process with the bridge), provisions a province
of ``--nodes`` nodes through the bulk API (``POST /api/v1/nodes/bulk``) and runs every node in
this one asyncio process (bench/fanout.py's client and node: no project imports on the node
side). Each node connects with its credentials and Last Will at a bounded rate (``--ramp`` a
second), subscribes to its topics, verifies every signed envelope (each distinct envelope's
signature once for the whole process, as 10,000 real nodes check theirs on their own CPUs and
not on the server's; ``--verify-each``: every node every one, SimNode.verified), acks
commands (`received`, `started`, then `finished` and `played` after the item's duration),
applies its desired state,
plays the slots of its schedule on its own clock (a `played` event each) and sends telemetry
every ``--telemetry-s`` seconds, the fleet's spread evenly over the period. It measures:

- over a steady period of ``--steady-s`` seconds: the ingest lag (time in the message to the
  row written) of telemetry and of `played` events, p50/p99, minute by minute; whether any
  queue grows: the broker's stored and dropped messages ($SYS) and the bridge's backlog (what
  the nodes sent minus the rows written) sampled over time;
- a daily series to every node made at the start of that period with its slot a minute or two
  ahead: the rebuild and publish of N desired states (API call to the last node holding it)
  and every node's `played` of the slot stored at the server;
- an emergency to all N nodes (``--emergency-text``, by default a storm warning of 94 words
  read aloud in about 40 s): the API call to every node's `received` ack stored,
  with when the nodes received it (first, median, last), how many acks were stored by 1, 1.5,
  2, 2.5 and 3 s, and the CPU the fleet's event loop took meanwhile;
- `GET /api/v1/nodes` (first page, a filtered page) and the dashboard (`/` and its live part),
  ``--calls`` calls each, p50/p95;
- the RSS of web, dispatcher and broker (VmRSS, each with the processes it started: the
  dispatcher's pass process; sampled every 2 s, max) and the broker's open
  files.

The database is SQLite (the instance's file), or with ``--database-url`` a new database of the
run's own on that PostgreSQL server (dropped after; the server's own processes are not counted in
the RSS). What watches the server (the samplers, the count of stored acks) runs at the server's
priority, not the fleet's.

``--write-docs`` rewrites its section of docs/benchmarks.md (one for SQLite, one for
PostgreSQL). Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fanout import (DB_ERRORS, Mqtt, Recorder, SimNode, System, approved,  # noqa: E402
                    connect_ro, in_thread, libpq_url, machine, pct, raise_fd_limit,
                    run_and_report, stored_time, uptime, wait_for)
import fanout  # noqa: E402
from provision import Fleet  # noqa: E402



def markers(n: int, postgresql: bool = False) -> tuple[str, str]:
    """The markers of one fleet size's part of the section in docs/benchmarks.md (one part
    for SQLite, one for PostgreSQL)."""
    name = f"{n} postgresql" if postgresql else f"{n}"
    return f"<!-- bench/load.py {name}:begin -->", f"<!-- bench/load.py {name}:end -->"


@contextlib.contextmanager
def own_database(server_url: str | None) -> Iterator[str | None]:
    """A new empty PostgreSQL database on the server of ``server_url`` (its own database is
    only connected to, to create this one) for the run, dropped after; None for SQLite."""
    if not server_url:
        yield None
        return
    import psycopg
    name = f"loa_bench_{secrets.token_hex(4)}"
    url = libpq_url(server_url)
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as err:
        raise SystemExit(f"--database-url: cannot make the run's database on {server_url}: "
                         f"{err}") from err
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_version(url: str | None) -> str:
    """What the report says of the database."""
    if not url:
        return "SQLite (the instance's file, WAL)"
    con = connect_ro(url)
    try:
        version = con.execute("SHOW server_version").fetchone()[0]
        sync = con.execute("SHOW synchronous_commit").fetchone()[0]
    finally:
        con.close()
    return (f"PostgreSQL {version.split()[0]} (`--database-url`, a database of the run's own; "
            f"synchronous_commit {sync}; its processes are not in the RSS below)")


# how often the stored `received` acks of an emergency are counted (2.5 ms of CPU a count at
# 10,000 nodes): the time is an upper bound by at most this
ACK_COUNT_EVERY_S = 0.05
# the emergency broadcast to every node: a storm warning as a province sends one (94 words,
# about 40 s read aloud), so the nodes' `finished` and `played` come when they have
# played it, as on a real node, and not in the first seconds beside the receipts
EMERGENCY_TEXT = HERE / "texts" / "emergency.txt"
HORIZON_S = 3600  # a node sets timers only for the slots of the next hour (the bench's span)
SYS_TOPICS = ("$SYS/broker/store/messages/count", "$SYS/broker/publish/messages/dropped",
              "$SYS/broker/clients/connected", "$SYS/broker/messages/received",
              "$SYS/broker/heap/current")


class Counters:
    """What the fleet sent, for the bridge's backlog (sent minus written)."""

    def __init__(self):
        self.telemetry = 0
        self.events = 0
        self.connected = 0
        self.failed: list[str] = []


class LoadNode(SimNode):
    """A node under a province's load: telemetry, desired slots played, items played for their
    duration."""

    def __init__(self, answer: dict, rec: Recorder, counters: Counters):
        super().__init__(answer, rec)
        self.counters = counters
        self.booted = time.time()
        self.up = False  # connected and subscribed
        self.slots: set[str] = set()
        self.played_slots: dict[str, float] = {}

    def event(self, type_: str, **fields) -> None:
        self.counters.events += 1
        super().event(type_, **fields)

    def play_s(self, item: dict) -> float:
        return max(0.5, (item.get("media") or {}).get("duration_ms", 1000) / 1000)

    def telemetry(self) -> None:
        now = time.time()
        self.counters.telemetry += 1
        self.client.publish(self.topic("telemetry"), json.dumps({
            "v": 1, "ts": int(now * 1000), "uptime_s": int(now - self.booted),
            "agent_version": "load-1", "cpu_temp_c": 48.5, "load1": 0.1,
            "mem_used_pct": 31.0, "disk_free_mb": 900, "volume": 80, "amp_on": True,
            "playing": None, "net": {"type": "4g", "signal_dbm": -85, "operator": "Viettel"},
            "clock_offset_ms": 3, "desired_version": self.desired_version,
            "cache_bytes": 1_000_000}).encode(), qos=0)

    def telemetry_every(self, period: float, phase: float) -> None:
        loop = asyncio.get_running_loop()

        def tick(at: float) -> None:
            if self.client.up():  # not while a reconnect still opens its socket
                self.telemetry()
            loop.call_at(at + period, tick, at + period)
        first = loop.time() + phase
        loop.call_at(first, tick, first)

    def apply(self, body: dict) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        for entry in body["schedule"]:
            at = entry["start_at"] / 1000
            if entry["slot_id"] in self.slots or not now - 60 <= at <= now + HORIZON_S:
                continue
            self.slots.add(entry["slot_id"])
            loop.call_later(max(0.0, at - now), self.play_slot, entry)

    def play_slot(self, entry: dict) -> None:
        started = time.time()
        self.played_slots[entry["slot_id"]] = started
        asyncio.get_running_loop().call_later(self.play_s(entry["item"]), self.slot_played,
                                              entry, started)

    def slot_played(self, entry: dict, started: float) -> None:
        item = entry["item"]
        self.event("played", item_id=item["id"], slot_id=entry["slot_id"],
                   sha256=item["media"]["sha256"], scheduled_at=entry["start_at"],
                   started_at=int(started * 1000), ended_at=int(time.time() * 1000),
                   result="completed")


# --- what the bench samples while the fleet runs ------------------------------------------------

def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_children() -> dict[int, list[int]]:
    """Every process's children, by parent pid (read once for a whole sample)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    return children


def tree_rss_kb(pid: int, children: dict[int, list[int]]) -> int | None:
    """RSS of ``pid`` and every process under it (the dispatcher's pass process,
    schedules/background.py: its memory is the dispatcher's too)."""
    own = rss_kb(pid)
    if own is None:
        return None
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        own += rss_kb(child) or 0
        todo += children.get(child, ())
    return own


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fleet_priority(nice: int) -> str:
    """Give this process's threads (the simulated fleet's; the ones it starts later inherit
    it) the niceness ``nice``, the server's processes keeping theirs. 10,000 real nodes answer
    on CPUs of their own, at once; here they share the server's two cores, and at the same
    priority their receipts waited behind the server's own work (docs/benchmarks.md). The
    server still gives up the CPU they use. What the report says of it."""
    try:
        for tid in os.listdir("/proc/self/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
    except OSError as err:  # a negative niceness needs root (or CAP_SYS_NICE)
        print(f"the fleet runs at the server's priority: {err}", flush=True)
        return f"the server's priority (nice {nice} refused: {err.strerror})"
    return f"nice {nice}, the server's processes at their own (0)"


def observer_priority() -> None:
    """The calling thread back at the server's priority (0): what watches the server (the
    samplers, the count of stored acks) is not the fleet, and at the fleet's raised priority
    it took the CPU from what it measures. Threads inherit their creator's niceness."""
    with contextlib.suppress(OSError):  # (raising one's niceness is always allowed)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 0)


class Sampler(threading.Thread):
    """Every ``every`` s: RSS of the server's processes and the broker, the broker's open files,
    and the rows written (for the backlog)."""

    def __init__(self, pids: dict[str, int], db: Path | str, counters: Counters,
                 every: float = 2.0):
        super().__init__(daemon=True, name="sampler")
        self.pids, self.db, self.counters, self.every = pids, db, counters, every
        self.rss: dict[str, list[int]] = defaultdict(list)
        self.broker_files: list[int] = []
        self.backlog: list[tuple[float, int, int]] = []  # (t, telemetry, events) not written
        self.loads: list[str] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        observer_priority()
        con = connect_ro(self.db)
        tel0: int | None = None
        ev0 = 0
        sent0 = (0, 0)
        while not self.stop_flag.wait(self.every):
            children = process_children()
            for name, pid in self.pids.items():
                # a server process with what it started; the load tool started them all
                kb = rss_kb(pid) if name in ("load tool", "broker") else \
                    tree_rss_kb(pid, children)
                if kb is not None:
                    self.rss[name].append(kb)
            files = open_files(self.pids["broker"])
            if files is not None:
                self.broker_files.append(files)
            sent = (self.counters.telemetry, self.counters.events)
            try:
                tel = con.execute("SELECT max(id) FROM telemetry").fetchone()[0] or 0
                ev = con.execute("SELECT max(id) FROM events").fetchone()[0] or 0
            except DB_ERRORS:
                continue
            if tel0 is None:
                tel0, ev0, sent0 = tel, ev, sent
            self.backlog.append((time.time(), (sent[0] - sent0[0]) - (tel - tel0),
                                 (sent[1] - sent0[1]) - (ev - ev0)))
        con.close()


class LagProbe(threading.Thread):
    """Telemetry rows as they appear (polled every ``every`` s: the time a row was first seen
    is an upper bound of its written time, by at most ``every`` plus the poll itself); `played`
    events by their stored ``received_at``."""

    def __init__(self, db: Path | str, every: float = 0.5):
        super().__init__(daemon=True, name="lag-probe")
        self.db, self.every = db, every
        self.telemetry: list[tuple[float, float]] = []  # (written, lag s)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        observer_priority()
        con = connect_ro(self.db)
        last = con.execute("SELECT coalesce(max(id), 0) FROM telemetry").fetchone()[0]
        while not self.stop_flag.wait(self.every):
            try:
                rows = con.execute("SELECT id, ts_ms FROM telemetry WHERE id > ?",
                                   (last,)).fetchall()
            except DB_ERRORS:
                continue
            seen = time.time()
            for row_id, ts in rows:
                self.telemetry.append((seen, seen - ts / 1000))
                last = max(last, row_id)
        con.close()


def played_lags(db: Path | str, since_ms: int) -> list[tuple[float, float]]:
    """(written, lag s) of every `played` event of node time ``since_ms`` or later: its
    stored received_at (UTC) minus its ts."""
    con = connect_ro(db)
    try:
        rows = con.execute("SELECT received_at, ts_ms FROM events WHERE type = 'played' "
                           "AND ts_ms >= ?", (since_ms,)).fetchall()
    finally:
        con.close()
    out = []
    for received, ts in rows:
        written = stored_time(received)
        out.append((written, written - ts / 1000))
    return out


def count(db: Path | str, sql: str, *args) -> int:
    con = connect_ro(db)
    try:
        return con.execute(sql, args).fetchone()[0]
    finally:
        con.close()


async def wait_count(db: Path | str, sql: str, args: tuple, want: int, timeout: float,
                     step: float, curve: list[tuple[float, int]] | None = None) -> float | None:
    """time.time() when ``sql`` first counted ``want`` rows, None after ``timeout`` (an upper
    bound of the time they were written, by at most ``step`` and the count itself). Counted in
    one of the loop's worker threads on one connection, at the server's priority
    (``observer_priority``, which that thread keeps: the others' work is the bench's client, not
    the fleet): the fleet's nodes share this process's event loop, and a count run on it (a new
    connection each time, every 20 ms) held their sending back while the server was still
    storing what they sent; at the fleet's raised priority it took about a tenth of a core from
    the server."""
    def poll() -> float | None:
        observer_priority()
        con = connect_ro(db)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = con.execute(sql, args).fetchone()[0]
                if curve is not None:  # (when, how many): how the rows came in
                    curve.append((time.time(), got))
                if got >= want:
                    return time.time()
                time.sleep(step)
            return None
        finally:
            con.close()
    return await in_thread(poll)


def lag_stats(samples: list[tuple[float, float]]) -> dict:
    if not samples:
        return {"n": 0}
    lags = [lag for _, lag in samples]
    t0 = min(t for t, _ in samples)
    minutes: dict[int, list[float]] = defaultdict(list)
    for t, lag in samples:
        minutes[int((t - t0) // 60)].append(lag)
    return {"n": len(lags), "p50": pct(lags, 50), "p99": pct(lags, 99), "max": max(lags),
            "by_minute": [(m, len(v), pct(v, 50), pct(v, 99)) for m, v in sorted(minutes.items())]}


def timed_gets(sysm: System, path: str, calls: int) -> dict:
    times, size, status = [], 0, 0
    for _ in range(calls):
        t = time.monotonic()
        r = sysm.http.get(f"{sysm.url}{path}", timeout=120)
        times.append((time.monotonic() - t) * 1000)
        size, status = len(r.content), r.status_code
    return {"path": path, "p50": statistics.median(times), "p95": pct(times, 95),
            "max": max(times), "bytes": size, "status": status, "load": uptime()}


# --- the run ------------------------------------------------------------------------------------

def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def connect_all(nodes: list[LoadNode], ramp: int, counters: Counters) -> float:
    """Every node connected and subscribed, at most ``ramp`` new connections a second."""
    t0 = time.monotonic()
    gate = asyncio.Semaphore(200)  # connections being made at once

    async def one(node: LoadNode, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        async with gate:
            try:
                await node.start()
                node.up = True
                counters.connected += 1
            except (TimeoutError, OSError, ConnectionError) as err:
                counters.failed.append(f"{node.id}: {err!r}")
    await asyncio.gather(*(one(n, t0 + i / ramp) for i, n in enumerate(nodes)))
    return time.monotonic() - t0


async def sys_watch(sysm: System, samples: list[tuple[float, str, str]],
                    topics: tuple[str, ...] = SYS_TOPICS) -> Mqtt:
    """A client of the bench's own reading the broker's ``topics`` ($SYS, every
    sys_interval: 10 s) into ``samples`` as (time received, topic, text)."""
    user, password = await in_thread(sysm.bench_account, True)
    client = Mqtt(lambda topic, payload, t: samples.append((t, topic, payload.decode())))
    await client.connect("127.0.0.1", sysm.mqtt_port, user, user, password, clean=True)
    await client.subscribe(list(topics), qos=0)
    return client


async def bench(args) -> dict:
    n = args.nodes
    raise_fd_limit(n + 1024)
    base = Path(tempfile.mkdtemp(prefix="loa-bench-load-"))
    print(f"system in {base}", flush=True)
    out: dict = {"nodes": n, "load": {"start": uptime()}}
    sysm = await in_thread(lambda: System(base, bridge_workers=args.bridge_workers,
                                          database_url=args.database))
    out["database"] = database_version(args.database)
    out["broker_limit"] = sysm.broker.open_files.message if sysm.broker.open_files else ""
    out["fleet_nice"] = fleet_priority(args.fleet_nice)  # once the server runs at its own
    rec, counters = Recorder(), Counters()
    sampler = Sampler({"web": sysm.procs[0].pid, "dispatcher": sysm.procs[1].pid,
                       **{f"bridge {n}": proc.pid for n, proc in enumerate(sysm.procs[2:], 1)},
                       "broker": sysm.broker.pid, "load tool": os.getpid()},
                      sysm.db, counters)
    sampler.start()
    try:
        province = sysm.post("/api/v1/areas", {"name": "Tỉnh thử tải", "code": "LOAD",
                                               "kind": "province"})
        clusters, wards = [], []
        for w in range(args.wards):
            ward = sysm.post("/api/v1/areas", {"name": f"Phường {w}", "code": f"LOAD-{w}",
                                               "kind": "ward", "parent_id": province["id"]})
            wards.append(ward)
            clusters += [sysm.post("/api/v1/areas", {
                "name": f"Cụm {w}.{c}", "code": f"LOAD-{w}-{c}", "kind": "cluster",
                "parent_id": ward["id"]})["id"] for c in range(args.clusters)]
        fleet = Fleet(sysm, clusters)
        t = time.monotonic()
        answers: list[dict] = []
        while len(answers) < n:
            answers += (await in_thread(fleet.bulk, min(1000, n - len(answers))))[1]
        out["provision_s"] = time.monotonic() - t
        print(f"provisioned {n} nodes in {out['provision_s']:.1f} s", flush=True)
        nodes = [LoadNode(a, rec, counters) for a in answers]
        out["connect_s"] = await connect_all(nodes, args.ramp, counters)
        out["connected"], out["connect_failed"] = counters.connected, counters.failed[:5]
        out["load"]["connected"] = uptime()
        print(f"{counters.connected} of {n} connected in {out['connect_s']:.1f} s "
              f"({len(counters.failed)} failed) load {uptime()}", flush=True)
        live = [nd for nd in nodes if nd.up]
        # the fleet's 10,000 nodes are some 430,000 objects that live for the whole run: out of
        # the garbage collector's full passes, each of which took 0.17-0.32 s of the fleet's
        # loop (a pause 10,000 real nodes never share), as the server's processes do
        # (server.heap.settle)
        gc.collect()
        gc.freeze()
        for i, node in enumerate(live):
            node.telemetry_every(args.telemetry_s, args.telemetry_s * i / len(live))
        t = time.monotonic()
        ok = await wait_for(lambda: all(nd.desired_version for nd in live), 600, 0.2)
        out["first_desired_s"] = time.monotonic() - t
        print(f"first desired states held: {bool(ok)} after {out['first_desired_s']:.1f} s",
              flush=True)
        bulletin = approved(sysm, "Thông báo thử tải", "other",
                            "Ủy ban nhân dân tỉnh thông báo.")
        warning = await in_thread(approved, sysm, "Thông báo khẩn: bão số 5", "emergency",
                                  args.warning)
        out["emergency_clip"] = {"words": len(warning["text"].split()),
                                 "ms": warning["duration_ms"]}
        sys_samples: list[tuple[float, str, str]] = []
        watcher = await sys_watch(sysm, sys_samples)

        # --- the steady period, with a daily series to all in it --------------------------
        probe = LagProbe(sysm.db)
        probe.start()
        steady0 = time.time()
        steady0_ms = int(steady0 * 1000)
        out["load"]["steady_start"] = uptime()
        now = dt.datetime.now(dt.UTC)
        slot_at = (now + dt.timedelta(seconds=args.slot_lead_s + 59)).replace(
            second=0, microsecond=0)
        t0 = time.time()
        series = await in_thread(sysm.post, "/api/v1/broadcasts", {
            "bulletin_id": bulletin["id"], "targets": {"areas": [province["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": iso(slot_at)})
        item = f"bc-{series['id']}"
        held = await wait_for(lambda: len(rec.desired[item]) >= len(live), 300, 0.05)
        out["rebuild"] = {"ms": (max(rec.desired[item]) - t0) * 1000 if rec.desired[item]
                          else None, "nodes": len(rec.desired[item]), "all": bool(held),
                          "slot_at": iso(slot_at), "load": uptime()}
        print(f"series {series['id']}: {out['rebuild']}", flush=True)
        played_sql = "SELECT count(*) FROM playlogs WHERE broadcast_id = ? AND slot_id " \
                     "IS NOT NULL AND result = 'completed'"
        t_done = await wait_count(sysm.db, played_sql, (series["id"],), len(live),
                                  slot_at.timestamp() - time.time() + 120, 0.5)
        got = count(sysm.db, played_sql, series["id"])
        out["slot"] = {"played_nodes": sum(1 for nd in live if nd.played_slots),
                       "stored": got, "all_stored": bool(t_done),
            "last_stored_s": (t_done - slot_at.timestamp()) if t_done else None,
            "load": uptime()}
        print(f"slot: {out['slot']}", flush=True)
        rest = steady0 + args.steady_s - time.time()
        if rest > 0:
            print(f"steady for {rest:.0f} s more", flush=True)
            await asyncio.sleep(rest)
        probe.stop_flag.set()
        await in_thread(probe.join)
        out["steady_s"] = time.time() - steady0
        out["load"]["steady_end"] = uptime()
        out["telemetry_lag"] = lag_stats(probe.telemetry)
        out["played_lag"] = lag_stats(await in_thread(played_lags, sysm.db, steady0_ms))
        out["sys"] = sys_samples
        out["backlog"] = [b for b in sampler.backlog if b[0] >= steady0]
        for name in ("telemetry_lag", "played_lag"):
            print(name, {k: v for k, v in out[name].items() if k != "by_minute"}, flush=True)

        # --- an emergency to all ----------------------------------------------------------
        acked_sql = "SELECT count(*) FROM deliveries WHERE broadcast_id = ? AND status NOT IN " \
                    "('pending', 'sent', 'cancelled')"
        out["emergency"] = []
        for _ in range(args.emergencies):
            load = uptime()
            t0, cpu0 = time.time(), time.thread_time()
            bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
                "bulletin_id": warning["id"], "targets": {"areas": [province["id"]]},
                "priority": "emergency"})
            t_api = time.time()
            t_recv = await wait_for(lambda b=bc: len(rec.play[f"bc-{b['id']}"]) >= len(live),
                                    60, 0.002)
            curve: list[tuple[float, int]] = []
            t_acks = await wait_count(sysm.db, acked_sql, (bc["id"],), len(live), 60,
                                       ACK_COUNT_EVERY_S, curve)
            fleet_cpu = time.thread_time() - cpu0  # the loop's thread: the simulated nodes
            receipts = sorted(rec.play[f"bc-{bc['id']}"])
            r = {"status": bc["status"], "t0": t0, "api_ms": (t_api - t0) * 1000,
                 "first_receipt_ms": (receipts[0] - t0) * 1000 if receipts else None,
                 "median_receipt_ms": (pct(receipts, 50) - t0) * 1000 if receipts else None,
                 "receipt_ms": (t_recv - t0) * 1000 if t_recv else None,
                 "fleet_cpu_s": fleet_cpu,
                 # how many acks were stored by then (seconds after the API call)
                 "stored_by": {f"{s:g} s": stored_by(curve, t0 + s) for s in (1, 1.5, 2, 2.5, 3)},
                 "acks_ms": (t_acks - t0) * 1000 if t_acks else None,
                 "acked": count(sysm.db, acked_sql, bc["id"]), "load": load}
            out["emergency"].append(r)
            print(f"emergency: {r}", flush=True)
            # the nodes play it: its `finished` acks and `played` events go in first
            await asyncio.sleep(warning["duration_ms"] / 1000 + args.telemetry_s)

        # --- pages at N nodes, the fleet still reporting ----------------------------------
        cluster = clusters[0]
        out["pages"] = []
        for path in ("/api/v1/nodes", f"/api/v1/nodes?area={wards[-1]['id']}&status=online",
                     f"/api/v1/nodes?area={cluster}", "/", "/partials/dashboard"):
            r = await in_thread(timed_gets, sysm, path, args.calls)
            out["pages"].append(r)
            print(f"GET {path}: {r}", flush=True)
        out["rejected"] = rec.rejected
        watcher.close()
        out["load"]["end"] = uptime()
        return out
    finally:
        sampler.stop_flag.set()
        sampler.join(5)
        out["rss_kb"] = {k: max(v) for k, v in sampler.rss.items() if v}
        out["broker_files"] = max(sampler.broker_files) if sampler.broker_files else None
        await in_thread(sysm.stop)


# --- report -------------------------------------------------------------------------------------

def sys_series(samples: list[tuple[float, str, str]], topic: str) -> list[int]:
    vals = []
    for _, t, v in samples:
        if t == topic:
            with contextlib.suppress(ValueError):
                vals.append(int(float(v)))
    return vals


def stored_by(curve: list[tuple[float, int]], t: float) -> int:
    """The last count ``curve`` holds at time ``t`` (0 before its first)."""
    return max((n for when, n in curve if when <= t), default=0)


def fmt_ms(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.0f} ms"


def report(r: dict, args, before: str, after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = r["nodes"]
    begin, end = markers(n, bool(args.database))
    lines = [begin, f"### {n:,} nodes" + (" on PostgreSQL" if args.database else ""), "",
             f"- Date: {now}", f"- Machine: {machine()}", f"- Database: {r['database']}",
             f"- Command: `.venv/bin/python bench/load.py --nodes {n} --steady-s {args.steady_s} "
             f"--slot-lead-s {args.slot_lead_s} --ramp {args.ramp} "
             f"--emergencies {args.emergencies} "
             f"--bridge-workers {args.bridge_workers} --fleet-nice {args.fleet_nice}"
             f"{' --verify-each' if args.verify_each else ''}"
             f"{'' if args.emergency_text == EMERGENCY_TEXT else ' --emergency-text FILE'}"
             f"{' --database-url URL' if args.database else ''} "
             f"--write-docs` (`make bench-load"
             f"{' LOAD_DATABASE_URL=URL' if args.database else ''}` runs it with `--steady-s 300 "
             f"--emergencies 2 --bridge-workers 1`)",
             f"- Load average (`uptime`, 1/5/15 min) before: {before}; after: {after}. The "
             f"machine is shared: other jobs ran, so these are figures under load, not a "
             f"quiet machine's.",
             f"- Broker: {r.get('broker_limit', '')}",
             "- Nodes: one asyncio process on the same two cores; "
             + ("every node verifies every envelope's signature itself (`--verify-each`)"
                if args.verify_each else "each distinct envelope's signature is verified once "
                "for all of them (a group's command reaches 10,000 real nodes with the same "
                "bytes and each checks it on its own CPU); each node checks its address and "
                "expiry") + f"; the fleet at {r.get('fleet_nice', 'the server priority')} "
             "(`--fleet-nice`: real nodes answer on CPUs of their own, not after the server's "
             "work; the server still gives up the CPU the fleet uses); each node's MQTT client "
             "an asyncio Protocol that sends what it writes in one turn of the loop at once, "
             "and the fleet's long-lived objects out of the garbage collector's full passes "
             "(what 10,000 nodes cost on the server's cores, kept small)", "",
             f"Provisioned through the bulk API in {r['provision_s']:.1f} s; {r['connected']:,} "
             f"of {n:,} nodes connected (at most {args.ramp} a second) in "
             f"{r['connect_s']:.1f} s (load {r['load'].get('connected')}); every node held its "
             f"first desired state {r['first_desired_s']:.1f} s later.", ""]
    if r.get("connect_failed"):
        lines += [f"Connections refused or failed, the first: {r['connect_failed']}", ""]
    lines += ["| what | measured | load average | goal | result |",
              "| --- | --- | --- | --- | --- |"]
    tl, pl = r["telemetry_lag"], r["played_lag"]
    load_s = f"{r['load']['steady_start']} → {r['load']['steady_end']}"
    if tl["n"]:
        lines.append(f"| telemetry ingest lag over {r['steady_s']:.0f} s (every "
                     f"{args.telemetry_s} s a node; {tl['n']:,} rows) | p50 {tl['p50']:.2f} s, "
                     f"p99 {tl['p99']:.2f} s, max {tl['max']:.2f} s | {load_s} | p99 < 5 s | "
                     f"{'met' if tl['p99'] < 5 else 'not met'} |")
    if pl["n"]:
        lines.append(f"| `played` ingest lag ({pl['n']:,} events, the slot's burst) | p50 "
                     f"{pl['p50']:.2f} s, p99 {pl['p99']:.2f} s, max {pl['max']:.2f} s | "
                     f"{load_s} | p99 < 5 s | {'met' if pl['p99'] < 5 else 'not met'} |")
    rb = r["rebuild"]
    lines.append(f"| daily series to all: rebuild and publish of {rb['nodes']:,} desired "
                 f"states (API call to the last node holding it) | {fmt_ms(rb['ms'])} | "
                 f"{rb['load']} | | {'every node' if rb['all'] else 'not every node'} |")
    sl = r["slot"]
    lines.append(f"| its slot ({rb['slot_at']}): every node's `played` stored | {sl['stored']:,} "
                 f"of {r['connected']:,}"
                 + (f", the last {sl['last_stored_s']:.1f} s after the slot's start"
                    if sl["last_stored_s"] is not None else "")
                 + f" | {sl['load']} | all | {'met' if sl['all_stored'] else 'not met'} |")
    clip = r["emergency_clip"]
    for e in r["emergency"]:
        stored = ", ".join(f"{n:,} by {at}" for at, n in e["stored_by"].items())
        lines.append(f"| emergency to all ({clip['words']} words, {clip['ms'] / 1000:.0f} s "
                     f"read aloud): API call to every `received` ack stored | "
                     f"{fmt_ms(e['acks_ms'])} ({e['acked']:,} acked; API answer "
                     f"{e['api_ms']:.0f} ms; the nodes' receipts: first "
                     f"{fmt_ms(e['first_receipt_ms'])}, median {fmt_ms(e['median_receipt_ms'])},"
                     f" last {fmt_ms(e['receipt_ms'])}; acks stored {stored}; the fleet's loop "
                     f"{e['fleet_cpu_s']:.2f} s of CPU) | {e['load']} | < 3 s | "
                     f"{'met' if e['acks_ms'] is not None and e['acks_ms'] < 3000 else 'not met'}"
                     f" |")
    for p in r["pages"]:
        lines.append(f"| `GET {p['path']}` ({args.calls} calls, {p['bytes']:,} bytes, "
                     f"{p['status']}) | p50 {p['p50']:.0f} ms, p95 {p['p95']:.0f} ms | "
                     f"{p['load']} | < 300 ms | {'met' if p['p95'] < 300 else 'not met'} |")
    rss = r.get("rss_kb", {})
    server = sum(v for k, v in rss.items() if k in ("web", "dispatcher") or k.startswith("bridge"))
    lines.append("| RSS (max over the run) | "
                 + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in rss.items())
                 + f" | | server processes < 1 GiB in all | "
                 f"{'met' if server < 1024 * 1024 else 'not met'} ({server / 1024:.0f} MiB) |")
    if r.get("broker_files") is not None:
        lines.append(f"| broker open files (max) | {r['broker_files']:,} | | within its limit | "
                     f"{'met' if r['broker_files'] <= (r['nodes'] + 64) else 'check'} |")
    lines += ["", "Queues over the steady period (sampled; flat means keeping up):", ""]
    for topic in SYS_TOPICS[:2]:
        vals = sys_series(r["sys"], topic)
        if vals:
            lines.append(f"- broker `{topic}`: first {vals[0]}, max {max(vals)}, last "
                         f"{vals[-1]} ({len(vals)} samples)")
    bl = r["backlog"]
    if bl:
        tel, ev = [b[1] for b in bl], [b[2] for b in bl]
        lines.append(f"- bridge backlog (sent by the nodes minus rows written, every 2 s): "
                     f"telemetry p50 {pct(tel, 50)}, max {max(tel)}, last {tel[-1]}; events "
                     f"p50 {pct(ev, 50)}, max {max(ev)}, last {ev[-1]}")
    if tl["n"]:
        lines.append("- telemetry lag by minute (rows, p50, p99): " + "; ".join(
            f"{m}: {c}, {a:.2f} s, {b:.2f} s" for m, c, a, b in tl["by_minute"]))
    lines += ["", "Telemetry rows are timed by polling the database every 0.5 s (the time a "
              "row is first seen, an upper bound of its written time); `played` events by their "
              "stored `received_at`. Envelopes the nodes refused: " + str(r["rejected"]) + ".",
              "", end]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--ramp", type=int, default=500, help="new connections a second, at most")
    ap.add_argument("--steady-s", type=int, default=300, help="the steady period, seconds")
    ap.add_argument("--telemetry-s", type=int, default=30)
    ap.add_argument("--slot-lead-s", type=int, default=60,
                    help="the daily series' slot at least this far ahead (whole minute)")
    ap.add_argument("--emergencies", type=int, default=2)
    ap.add_argument("--emergency-text", type=Path, default=EMERGENCY_TEXT,
                    metavar="FILE", help="the emergency bulletin's text (default: a storm "
                    "warning of 94 words, about 40 s read aloud)")
    ap.add_argument("--calls", type=int, default=20, help="calls of each page timed")
    ap.add_argument("--wards", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=5, help="clusters a ward")
    ap.add_argument("--bridge-workers", type=int, default=0,
                    help="bridge-only processes beside the dispatcher (docs/scaling.md)")
    ap.add_argument("--fleet-nice", type=int, default=-10,
                    help="the simulated fleet's niceness once the server runs (0: the "
                         "server's; negative needs root)")
    ap.add_argument("--verify-each", action="store_true",
                    help="every node verifies every envelope's signature itself (on this "
                         "process's CPU, shared with the server's), not each distinct one once")
    ap.add_argument("--database-url", metavar="URL",
                    help="a PostgreSQL server (postgresql://user@host:port/db, db only "
                         "connected to): the run on a new database of its own there, dropped "
                         "after, instead of SQLite")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if args.database_url and not args.database_url.startswith(("postgresql://",
                                                               "postgresql+psycopg://")):
        ap.error(f"--database-url: a postgresql:// URL, not {args.database_url!r}")
    try:  # read now, not after 10,000 nodes were brought up
        args.warning = args.emergency_text.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        ap.error(f"--emergency-text: cannot read {args.emergency_text}: {err}")
    if not args.warning:
        ap.error(f"--emergency-text: {args.emergency_text} is empty")
    fanout.SHARE_VERIFIED = not args.verify_each

    def run(a) -> dict:
        with own_database(a.database_url) as a.database:
            return asyncio.run(bench(a))
    return run_and_report(args, run, report, *markers(args.nodes, bool(args.database_url)))


if __name__ == "__main__":
    sys.exit(main())
