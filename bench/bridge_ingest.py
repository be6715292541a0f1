"""The bridge's ingest in-process: how fast a province-wide burst of node messages is stored.

Builds a real SQLite database in a temp folder through the project's own set-up
(``init_instance``, its migrations), then through the API (Flask's test client): a province,
one ward of ``--clusters`` clusters, ``--nodes`` nodes provisioned with the bulk API
(``POST /api/v1/nodes/bulk``, 500 a call), one approved bulletin (espeak), a daily series to the
province whose next slot is a few minutes away, and an emergency to the province. The
dispatcher's own passes (``Dispatcher.refresh_desired`` and ``dispatch_due``, no broker) turn
them into what the server sends: every node's desired state with the slot (its slot
deliveries) and the emergency's play commands and deliveries.

Before the burst the database is given a past (``--history N``, default 500,000: N earlier
events and as many telemetry rows, about a week of a province's events), since every insert
into a table of many rows touches index pages that are not in the cache, which an empty
database hides.

Then the messages the nodes would send back (docs/protocol.md: events built with
``device_agent.protocol.make_event``, telemetry as bench/load.py's nodes send it), phase by
phase, each in the nodes' arrival order (shuffled), go through ``Bridge.handle_batch`` in
INGEST_BATCH batches exactly as the bridge's drain thread hands them over:

- the emergency's `received` acks (the time to store all of them is the "all acks within 3 s"
  goal's server share), then its `started` and `finished` acks and its `played` events;
- the slot: `desired_applied`, `media_ready`, the slot's `played` events;
- one telemetry message per node.

It prints (and with ``--write-docs`` writes into docs/benchmarks.md) messages a second per
phase, and checks what was stored: every delivery acked and played, every slot delivery
played, one play log per `played`, one telemetry row per message. ``--profile FILE`` writes a
cProfile of each phase (FILE.1 the `received` acks, ...; ``python -m pstats FILE.1``);
``--workers N`` splits each phase over N bridge worker processes of a shared group, as
``bridge_workers`` does. Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import datetime as dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fanout import machine, run_and_report, uptime  # noqa: E402
from pages import Bench  # noqa: E402

BEGIN, END = "<!-- bench/bridge_ingest.py:begin -->", "<!-- bench/bridge_ingest.py:end -->"
GOAL_ACKS_S = 3.0
GOAL_ACK_RATE, GOAL_PLAYED_RATE = 5000, 3000
DEFAULT_HISTORY = 500_000  # about a week of a province's events


class Province(Bench):
    """The instance, its database and its fleet, made as the server makes them (bench/pages.py's
    instance and fleet), and the dispatcher's own sessions on it."""

    def __init__(self, tmp: Path, args):
        from server.config import load_settings
        from server.models import make_engine, make_sessionmaker
        super().__init__(tmp, args)
        # the dispatcher's own engine and sessions (schedules/__main__.py)
        self.settings = load_settings(self.instance)
        engine = make_engine(self.settings.database_url, self.settings.database_busy_timeout_s)
        self.sessions = make_sessionmaker(engine, actor="dispatcher")

    def build(self) -> dict:
        from schedules.dispatcher import Dispatcher
        from server.keys import active_signing_key
        t0 = time.monotonic()
        province, _, _, nodes = self.province()
        provisioned_s = time.monotonic() - t0
        b = self._api("POST", "/api/v1/bulletins", {
            "title": "Phát thanh thời sự phường", "category": "other",
            "text": "Ủy ban nhân dân phường thông báo lịch thu gom rác thải tuần này."})
        self._api("POST", f"/api/v1/bulletins/{b['id']}/submit")
        b = self._api("POST", f"/api/v1/bulletins/{b['id']}/approve")
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        series = self._api("POST", "/api/v1/broadcasts", {
            "bulletin_id": b["id"], "targets": {"areas": [province["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": soon.strftime("%Y-%m-%dT%H:%M:00Z")})
        kid, key = active_signing_key(self.sessions, self.settings.signing_key_file)
        dispatcher = Dispatcher(self.settings, self.sessions, None, key, kid)  # type: ignore[arg-type]
        t1 = time.monotonic()
        desired = dispatcher.refresh_desired()
        desired_s = time.monotonic() - t1
        emergency = self._api("POST", "/api/v1/broadcasts", {
            "bulletin_id": b["id"], "targets": {"areas": [province["id"]]},
            "priority": "emergency"})
        t1 = time.monotonic()
        dispatched = dispatcher.dispatch_due()
        dispatch_s = time.monotonic() - t1
        assert desired == len(nodes) and dispatched == 1, (desired, dispatched)
        t1 = time.monotonic()
        history = self.history(nodes, self.args.history)
        return {"nodes": nodes, "series": series["id"], "emergency": emergency["id"],
                "provisioned_s": provisioned_s, "desired_s": desired_s,
                "dispatch_s": dispatch_s, "history": history,
                "history_s": time.monotonic() - t1, "db_mb": self.db_size() / 2**20}

    def history(self, nodes: list[str], count: int) -> int:
        """A lived-in database: ``count`` earlier events (acks, played, desired_applied,
        media_ready: a province sends about seven a node a day) and as many telemetry rows,
        written in bulk before the burst. Tables of many rows make each insert touch pages
        that are not in the cache (an empty database hides that). Every node carries its last
        state and telemetry, as a running fleet's do (reading them with each batch's nodes
        made an emergency's acks cost a third more than nodes that had never reported)."""
        import uuid

        from sqlalchemy import update

        from server.models import Event, Node, Telemetry
        rng = random.Random(11)
        start = int(time.time() * 1000) - 7 * 86_400_000
        kinds = ("ack", "ack", "played", "desired_applied", "media_ready")

        def events():
            for i in range(count):
                ts = start + i * 7 * 86_400_000 // max(count, 1)
                yield {"node_id": rng.choice(nodes), "event_id": str(uuid.UUID(
                    int=rng.getrandbits(128), version=4)), "type": kinds[i % len(kinds)],
                    "ts_ms": ts, "payload": {"v": 1, "type": kinds[i % len(kinds)], "ts": ts},
                    "received_at": dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
                    .replace(tzinfo=None)}

        def telemetry():
            for i in range(count):
                ts = start + i * 7 * 86_400_000 // max(count, 1)
                yield {"node_id": nodes[i % len(nodes)], "ts_ms": ts,
                       "payload": {"v": 1, "ts": ts, "volume": 80, "cpu_temp_c": 48.5}}
        self._insert(Event.__table__, events())
        self._insert(Telemetry.__table__, telemetry())
        last = start + 7 * 86_400_000
        with self.sessions() as db:
            db.execute(update(Node).values(
                online=True, last_state={"online": True, "ts": last, "agent_version": "load-1"},
                last_telemetry={"v": 1, "ts": last, "uptime_s": 86400, "agent_version": "load-1",
                                "cpu_temp_c": 48.5, "load1": 0.1, "mem_used_pct": 31.0,
                                "disk_free_mb": 900, "volume": 80, "amp_on": True,
                                "playing": None, "clock_offset_ms": 3, "cache_bytes": 1_000_000,
                                "net": {"type": "4g", "signal_dbm": -85, "operator": "Viettel"}}))
            db.commit()
        return count


def node_messages(prov: Province, built: dict) -> list[tuple[str, str, list[tuple[str, bytes]]]]:
    """(phase, kind of topic, messages) in the order the nodes would send them."""
    from sqlalchemy import select

    from device_agent.protocol import EventType, make_event
    from server.models import Command, Delivery, Node, SlotDelivery
    prefix = prov.settings.topic_prefix
    rng = random.Random(10)
    with prov.sessions() as db:
        cmd_of = {node: cmd for node, cmd in db.execute(
            select(Delivery.node_id, Delivery.command_id).where(
                Delivery.broadcast_id == built["emergency"])) if cmd is not None}
        bodies = {c.id: c.body for c in db.scalars(select(Command).where(
            Command.id.in_(set(cmd_of.values()))))}
        slots = {r.node_id: r for r in db.scalars(select(SlotDelivery).where(
            SlotDelivery.broadcast_id == built["series"]))}
        versions = dict(db.execute(select(Node.id, Node.desired_version)).all())
        db.expunge_all()
    nodes = list(built["nodes"])
    assert len(cmd_of) == len(nodes) and len(slots) == len(nodes), (len(cmd_of), len(slots))
    now = int(time.time() * 1000)

    def phase(name: str, kind: str, make) -> tuple[str, str, list[tuple[str, bytes]]]:
        order = nodes[:]
        rng.shuffle(order)  # the nodes' messages arrive in no order of theirs
        return name, kind, [(f"{prefix}/nodes/{n}/{kind}", json.dumps(make(n)).encode())
                            for n in order]

    def ack(status: str):
        return lambda n: make_event(EventType.ACK, now, cmd_id=cmd_of[n], status=status)

    def played_cmd(n: str) -> dict:
        item = bodies[cmd_of[n]]["item"]
        return make_event(EventType.PLAYED, now + 30_000, item_id=item["id"], cmd_id=cmd_of[n],
                          sha256=item["media"]["sha256"], started_at=now,
                          ended_at=now + 30_000, result="completed")

    def played_slot(n: str) -> dict:
        row = slots[n]
        start = int(row.start_at.replace(tzinfo=dt.UTC).timestamp() * 1000)
        return make_event(EventType.PLAYED, start + 30_000, item_id=f"bc-{built['series']}",
                          slot_id=row.slot_id, sha256=row.sha256, scheduled_at=start,
                          started_at=start + 40, ended_at=start + 30_000, result="completed")

    spread = {n: i * 30_000 // len(nodes) for i, n in enumerate(nodes)}  # every 30 s, evenly

    def telemetry(n: str) -> dict:
        return {"v": 1, "ts": now + spread[n], "uptime_s": 86400, "agent_version": "load-1",
                "cpu_temp_c": 48.5, "load1": 0.1, "mem_used_pct": 31.0, "disk_free_mb": 900,
                "volume": 80, "amp_on": True, "playing": None,
                "net": {"type": "4g", "signal_dbm": -85, "operator": "Viettel"},
                "clock_offset_ms": 3, "desired_version": versions[n], "cache_bytes": 1_000_000}

    return [
        phase("emergency: `received` acks", "events", ack("received")),
        phase("emergency: `started` acks", "events", ack("started")),
        phase("emergency: `finished` acks", "events", ack("finished")),
        phase("emergency: `played` events", "events", played_cmd),
        phase("slot: `desired_applied` events", "events",
              lambda n: make_event(EventType.DESIRED_APPLIED, now, version=versions[n])),
        phase("slot: `media_ready` events", "events",
              lambda n: make_event(EventType.MEDIA_READY, now, sha256=slots[n].sha256)),
        phase("slot: `played` events", "events", played_slot),
        phase("telemetry", "telemetry", telemetry),
    ]


class GcClock:
    """``with GcClock() as clock``: the seconds this process spent in Python's cyclic garbage
    collector inside the block (``clock.seconds``)."""

    def __init__(self) -> None:
        self.seconds, self._since = 0.0, 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._since = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._since


def feed(bridge, messages: list[tuple[str, bytes]]) -> tuple[float, float, float]:
    """The messages through the bridge as its drain thread hands them over; (seconds taken,
    CPU seconds of this process meanwhile: on a shared machine the first grows with the
    other jobs' load, the second much less; of those, the seconds in the garbage collector)."""
    from server.bridge import INGEST_BATCH
    with GcClock() as clock:
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(messages), INGEST_BATCH):
            bridge.handle_batch(messages[start:start + INGEST_BATCH])
    return time.perf_counter() - t0, time.process_time() - c0, clock.seconds


def _worker(settings, messages: list[tuple[str, bytes]], settled: bool, out) -> None:
    """One bridge worker process (``python -m schedules --bridge-only N`` does the same): its
    own engine, a Bridge of the shared group (so on SQLite it takes the write lock first)."""
    from server.bridge import Bridge, BridgeLimits
    from server.heap import settle
    from server.models import make_engine, make_sessionmaker
    engine = make_engine(settings.database_url, settings.database_busy_timeout_s)
    bridge = Bridge(make_sessionmaker(engine, actor="dispatcher"), None,  # type: ignore[arg-type]
                    settings.topic_prefix, limits=BridgeLimits.from_settings(settings),
                    tz=settings.timezone, shared_group="loa")
    if settled:
        settle()
    out.put(feed(bridge, messages))


def feed_workers(settings, messages: list[tuple[str, bytes]], workers: int, settled: bool
                 ) -> tuple[float, float, float]:
    """The messages split over ``workers`` processes, as a shared subscription splits them
    (round robin); (seconds until all are stored, CPU seconds of the workers together, and
    their seconds in the garbage collector)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(settings, messages[i::workers], settled, out))
             for i in range(workers)]
    for p in procs:
        p.start()
    done = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    return (time.perf_counter() - t0, sum(cpu for _, cpu, _ in done),
            sum(gc_s for _, _, gc_s in done))


def stored(prov: Province, built: dict) -> dict:
    """What the bridge wrote: checked against what the nodes sent."""
    from sqlalchemy import func, select

    from server.models import Delivery, Node, PlayLog, SlotDelivery, Telemetry
    with prov.sessions() as db:
        def count(model, *where) -> int:
            return db.scalar(select(func.count()).select_from(model).where(*where)) or 0
        return {
            "deliveries played": count(Delivery, Delivery.broadcast_id == built["emergency"],
                                       Delivery.status == "finished",
                                       Delivery.played_result == "completed"),
            "slot deliveries played": count(SlotDelivery,
                                             SlotDelivery.broadcast_id == built["series"],
                                             SlotDelivery.status == "played"),
            "play logs": count(PlayLog), "telemetry rows": count(Telemetry),
            "refused": db.scalar(select(func.sum(Node.rejected_messages))) or 0}


def bench(args) -> dict:
    from server.bridge import Bridge, BridgeLimits
    from server.heap import settle
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        prov = Province(Path(tmp), args)
        built = prov.build()
        print(f"built: {len(built['nodes'])} nodes in {built['provisioned_s']:.1f} s, desired "
              f"states {built['desired_s']:.1f} s, emergency dispatched "
              f"{built['dispatch_s']:.1f} s, history of {built['history']:,} events and "
              f"telemetry rows {built['history_s']:.1f} s, database {built['db_mb']:.0f} MB",
              flush=True)
        phases = node_messages(prov, built)
        bridge = Bridge(prov.sessions, None, prov.settings.topic_prefix,  # type: ignore[arg-type]
                        limits=BridgeLimits.from_settings(prov.settings), tz=prov.settings.timezone)
        if not args.no_settle:  # as every server process does once it is built
            settle()
        load_before = uptime()
        results = []
        for n, (name, _kind, messages) in enumerate(phases, 1):
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            if args.workers > 1:
                seconds, cpu, gc_s = feed_workers(prov.settings, messages, args.workers,
                                                  not args.no_settle)
            else:
                seconds, cpu, gc_s = feed(bridge, messages)
            if profiler:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}.{n}")
            results.append({"phase": name, "messages": len(messages), "s": seconds,
                            "rate": len(messages) / seconds, "cpu_s": cpu, "gc_s": gc_s})
            print(f"{name}: {len(messages)} in {seconds:.2f} s, {len(messages) / seconds:,.0f}/s"
                  f" (CPU {cpu:.2f} s, {len(messages) / cpu:,.0f}/s of CPU; garbage collector "
                  f"{gc_s:.2f} s)", flush=True)
        load_after = uptime()
        check = stored(prov, built)
        print("stored:", check, flush=True)
        n = len(built["nodes"])
        expected = {"deliveries played": n, "slot deliveries played": n, "play logs": 2 * n,
                    "telemetry rows": n + built["history"], "refused": 0}
        if check != expected:
            raise SystemExit(f"stored {check}, expected {expected}")
        return {"built": {k: v for k, v in built.items() if k != "nodes"}, "nodes": n,
                "workers": args.workers, "settled": not args.no_settle,
                "results": results, "load_before": load_before, "load_after": load_after}


def report(args, out: dict) -> str:
    from server.bridge import INGEST_BATCH
    res = out["results"]
    acks = res[0]
    played = [r for r in res if "played" in r["phase"]]
    lines = [
        BEGIN,
        "### The bridge's ingest in-process (`make bench-bridge`)",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Command: `.venv/bin/python bench/bridge_ingest.py --nodes {out['nodes']} "
        + (f"--workers {out['workers']} " if out["workers"] > 1 else "")
        + (f"--history {out['built']['history']} "
           if out["built"]["history"] != DEFAULT_HISTORY else "")
        + ("--no-settle " if not out["settled"] else "")
        + "--write-docs` (`make bench-bridge`)",
        f"- Load average (`uptime`, 1/5/15 min) before: {out['load_before']}; after: "
        f"{out['load_after']}. The machine is shared: other jobs ran.",
        f"- {out['nodes']:,} nodes on SQLite, batches of {INGEST_BATCH} (INGEST_BATCH) through "
        "`Bridge.handle_batch`, "
        + (f"split over {out['workers']} worker processes of a shared group (CPU seconds: "
           "theirs together)" if out["workers"] > 1 else "on one thread")
        + ", every message stored and checked afterwards; "
        + ("the process settled first (`server.heap.settle`, as every server process does once "
           "it is built: what it holds frozen out of the garbage collector's full passes)."
           if out["settled"] else "the process not settled (`--no-settle`)."),
        f"- The database lived in before the burst (`--history {out['built']['history']}`): "
        f"{out['built']['history']:,} earlier events and as many telemetry rows, "
        f"{out['built']['db_mb']:.0f} MB.",
        "",
        "| phase | messages | seconds | messages/s | CPU seconds | messages per CPU second "
        "| of which garbage collector |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res:
        lines.append(f"| {r['phase']} | {r['messages']:,} | {r['s']:.2f} | {r['rate']:,.0f} | "
                     f"{r['cpu_s']:.2f} | {r['messages'] / r['cpu_s']:,.0f} | "
                     f"{r['gc_s']:.2f} s |")
    lines += [
        "",
        f"All {acks['messages']:,} `received` acks stored in {acks['s']:.2f} s (goal: within "
        f"{GOAL_ACKS_S:.0f} s of the API call, the network's share included): "
        f"{acks['rate']:,.0f} acks/s (target {GOAL_ACK_RATE:,}/s); `played` "
        + ", ".join(f"{r['rate']:,.0f}/s" for r in played)
        + f" (target {GOAL_PLAYED_RATE:,}/s).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                    help="earlier events (and as many telemetry rows) in the database first")
    ap.add_argument("--profile", metavar="FILE",
                    help="write a cProfile of each phase to FILE.1, FILE.2, ...")
    ap.add_argument("--workers", type=int, default=1,
                    help="bridge worker processes of a shared group (bridge_workers) instead of "
                    "the one bridge")
    ap.add_argument("--no-settle", action="store_true",
                    help="leave the process's heap unfrozen (server.heap.settle), as before")
    ap.add_argument("--write-docs", action="store_true")
    # the load averages written are those around the phases (out's), not the build's
    return run_and_report(ap.parse_args(), bench, lambda out, args, *_: report(args, out),
                          BEGIN, END)


if __name__ == "__main__":
    sys.exit(main())
