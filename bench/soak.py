"""A soak: N nodes for D minutes with links dropping at random (issue 10).

Brings a whole system up as `make run` does and provisions ``--nodes`` nodes through the bulk
API (bench/load.py), runs them in this one asyncio process (bench/load.py's LoadNode: the real
agent protocol, no project imports on the node side) for ``--minutes`` minutes, and meanwhile:

- a programme to every node, made through the API, by ``--programme``:
  ``steady`` (the default), as a ward's daily programme is: ``--series`` series made once at
  the start, recurring (``FREQ=HOURLY;BYMINUTE=…;UNTIL=…``) so that together they put a slot
  every ``--slot-every-min`` minutes from ``--lead-s`` after the start until the last slot the
  report can judge; after the first minute nothing is made or changed, so the desired states
  (sent once), the retained messages and the dispatcher's plan stay the same size and what
  the processes' memory does is theirs. ``growing`` (the first soak's): every ``--every-s``
  seconds a new daily series, its slot ``--lead-s`` ahead, so every node's desired state and
  retained message list one more slot each time and the working sets grow with the programme;
- telemetry every ``--telemetry-s`` seconds from each node that is connected;
- links drop at random: each node loses its connection after an exponential time (mean
  ``--drop-mean-s``) by closing its socket without a DISCONNECT (the broker fires its Last
  Will), stays away ``--offline-min-s``..``--offline-max-s`` seconds, then reconnects (a failed
  attempt retried with jittered backoff). Offline it plays the slots of the schedule it holds
  on its own clock and keeps its events (played, desired_applied) in an outbox, as the real
  agent does; after the reconnect it sends the outbox, and an event stays there until the
  broker's PUBACK, so one sent just before a drop goes again (the server stores each once). A
  slot the node learns of more than 60 s late is reported `skipped`, reason `late`
  (docs/protocol.md);
- every ``--sample-s`` seconds the RSS and open files of web, dispatcher (with the bridge),
  broker and this tool, and the broker's own figures ($SYS, every 10 s): its heap
  (``heap/current``, what Mosquitto's allocator has handed out: RSS rising with a flat heap is
  fragmentation or the C library keeping freed memory, not Mosquitto holding more), the
  retained messages and the messages stored (count and bytes). At the end a least-squares
  slope over the run's second half and over its last third, in MiB and files an hour; memory
  is flat when both are under FLAT_MIB_H. The broker's open files follow the connected nodes,
  so its slope is fitted on open files minus the nodes connected at the sample;
- at the end the links stop dropping, every node reconnects and sends what it held; when the
  server has stored every event sent (or after ``--drain-s``), the airplay report API for the
  run's window: every planned (slot, node) must be aired or missed with a reason, and agree
  with what the node did (played, skipped late, never held the slot); played twice (two
  playlog rows of one slot and node, or one event id stored twice) is counted.

``--write-docs`` rewrites its section of docs/benchmarks.md. Benchmarks are not tests.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fanout import (Mqtt, Recorder, System, approved, connect_ro, in_thread,  # noqa: E402
                    machine, raise_fd_limit, run_and_report, uptime, wait_for)
from load import (Counters, LoadNode, connect_all, count, iso, open_files, rss_kb,  # noqa: E402
                  sys_watch)
from provision import Fleet  # noqa: E402

BEGIN, END = "<!-- bench/soak.py:begin -->", "<!-- bench/soak.py:end -->"
# their open files follow the nodes connected (a socket each): fitted net of those
NET_OF_CONNECTED = ("broker", "load tool")
LATE_S = 60  # a slot learnt of later than this is skipped, reason late (docs/protocol.md)
# the run's last slot comes the grace and this long before its end: time for the slot itself
# and the drain before the report
LAST_SLOT_MARGIN_S = 30
# Memory is flat when its slope over the second half and over the last third are both under
# this: 5 MiB an hour is 120 MiB a day, a week to fill a spare GiB (a small server's margin)
# and a few times what a 30-minute run can resolve (RSS moves by 1-2 MiB between samples as
# the allocators take and give back pages, about ±4 MiB/hour on a 15-minute fit).
FLAT_MIB_H = 5.0
FLAT_FILES_H = 10.0
SYS_BROKER = {"heap": "$SYS/broker/heap/current",
              "retained": "$SYS/broker/retained messages/count",
              "stored": "$SYS/broker/store/messages/count",
              "stored_bytes": "$SYS/broker/store/messages/bytes"}


class SoakNode(LoadNode):
    """A LoadNode whose link drops: an outbox of events kept until the broker acknowledges
    them, slots played (or skipped late) from the held schedule whether connected or not."""

    def __init__(self, answer: dict, rec: Recorder, counters: Counters, rng: random.Random):
        super().__init__(answer, rec, counters)
        self.rng = rng
        self.outbox: dict[str, bytes] = {}  # event id -> payload, until the broker's PUBACK
        self.resent = 0        # events sent again once (re)connected
        self.drops = 0
        self.reconnect_failures = 0
        self.offline_s = 0.0
        self.did: dict[str, str] = {}   # slot id -> "completed" / "skipped"
        self.plays: Counter[str] = Counter()  # slot id -> times played (twice would be a bug)
        self.horizon_s = 3600.0  # slots further ahead than this are not timed (the run's span)

    @property
    def up(self) -> bool:
        return getattr(self, "_up", False)

    @up.setter
    def up(self, value: bool) -> None:
        """Connected and subscribed: what was held meanwhile goes out now. That includes an
        event made while the connection was being made (the retained desired state arrives
        right after the SUBACK, before start() returns): when only a reconnect sent those, the
        first connection's went out only at the node's first drop, and never from a node whose
        link never dropped (5 to 8 `desired_applied` a soak, found with the held events'
        listing)."""
        was, self._up = self.up, value
        if value and not was:
            for event_id, payload in list(self.outbox.items()):
                self.resent += 1
                self._send(event_id, payload)

    # --- events through the outbox ------------------------------------------------------
    def event(self, type_: str, **fields) -> None:
        self.counters.events += 1
        ev = {"v": 1, "id": str(uuid.uuid4()), "type": type_,
              "ts": int(time.time() * 1000), **fields}
        payload = json.dumps(ev).encode()
        self.outbox[ev["id"]] = payload
        if self.up:
            self._send(ev["id"], payload)

    def _send(self, event_id: str, payload: bytes) -> None:
        fut = self.client.publish(self.topic("events"), payload)
        assert fut is not None
        fut.add_done_callback(lambda _f: self.outbox.pop(event_id, None))

    def telemetry(self) -> None:
        if self.up:  # the real agent keeps no telemetry while offline
            super().telemetry()

    # --- the schedule, played on the node's own clock -----------------------------------
    def apply(self, body: dict) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        for entry in body["schedule"]:
            at = entry["start_at"] / 1000
            slot = entry["slot_id"]
            if slot in self.slots or at > now + self.horizon_s or at < self.booted:
                continue
            self.slots.add(slot)
            if at < now - LATE_S:
                self.did[slot] = "skipped"
                item = entry["item"]
                self.event("played", item_id=item["id"], slot_id=slot,
                           sha256=item["media"]["sha256"], scheduled_at=entry["start_at"],
                           started_at=None, ended_at=None, result="skipped", reason="late")
                continue
            loop.call_later(max(0.0, at - now), self.play_slot, entry)

    def play_slot(self, entry: dict) -> None:
        self.plays[entry["slot_id"]] += 1
        super().play_slot(entry)

    def slot_played(self, entry: dict, started: float) -> None:
        self.did[entry["slot_id"]] = "completed"
        super().slot_played(entry, started)

    # --- the link -----------------------------------------------------------------------
    def drop(self) -> None:
        """The link goes: the socket closed without a DISCONNECT (the Last Will fires)."""
        self.up = False
        self.drops += 1
        if self.client.transport is not None:
            self.client.transport.abort()

    async def reconnect(self) -> None:
        backoff = 2.0
        while True:
            self.client = Mqtt(self.on_message)
            try:
                await self.start()
                break
            except (TimeoutError, OSError, ConnectionError):
                self.reconnect_failures += 1
                if self.client.transport is not None:
                    self.client.transport.abort()
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(60.0, backoff * 2)
        self.up = True  # and what was held goes out

    async def flaky(self, until: float, mean_s: float, off: tuple[float, float]) -> None:
        """Drops at random until ``until`` (time.time()), each followed by a reconnect."""
        while True:
            wait = self.rng.expovariate(1 / mean_s)
            if time.time() + wait >= until:
                return
            await asyncio.sleep(wait)
            self.drop()
            away = self.rng.uniform(*off)
            self.offline_s += away
            await asyncio.sleep(away)
            await self.reconnect()


class Sampler(threading.Thread):
    """Every ``every`` s: RSS and open files of each process, the nodes connected and the
    broker's newest $SYS figures (``sys_seen``: (time, topic, text) as they come)."""

    def __init__(self, pids: dict[str, int], nodes: list[SoakNode], every: float,
                 sys_seen: list[tuple[float, str, str]]):
        super().__init__(daemon=True, name="soak-sampler")
        self.pids, self.nodes, self.every = pids, nodes, every
        self.sys_seen = sys_seen
        self.samples: list[dict] = []
        self.stop_flag = threading.Event()

    def broker_sys(self) -> dict[str, int | None]:
        latest: dict[str, int | None] = dict.fromkeys(SYS_BROKER)
        by_topic = {topic: key for key, topic in SYS_BROKER.items()}
        for _t, topic, text in reversed(self.sys_seen[:]):
            key = by_topic.get(topic)
            if key is not None and latest[key] is None:
                latest[key] = int(text) if text.strip().isdecimal() else None
            if all(v is not None for v in latest.values()):
                break
        return latest

    def sample(self) -> None:
        s: dict = {"t": time.time(), "up": sum(1 for n in self.nodes if n.up)}
        for name, pid in self.pids.items():
            s[name] = (rss_kb(pid), open_files(pid))
        s["sys"] = self.broker_sys()
        self.samples.append(s)

    def run(self) -> None:
        self.sample()
        while not self.stop_flag.wait(self.every):
            self.sample()


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t seconds, value), per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if not den else sum((t - mt) * (v - mv) for t, v in points) / den * 3600


def series_trend(samples: list[dict], value) -> dict | None:
    """``value(sample)`` (or None) over the run: first, last, max, second half's first and
    last, slopes an hour over the second half and over the last third."""
    pts = [(s["t"], v) for s in samples if (v := value(s)) is not None]
    if len(pts) < 2:
        return None
    half = [p for p in pts if p[0] >= (pts[0][0] + pts[-1][0]) / 2]
    third = [p for p in pts if p[0] >= pts[-1][0] - (pts[-1][0] - pts[0][0]) / 3]
    return {"first": pts[0][1], "last": pts[-1][1], "max": max(v for _, v in pts),
            "half_first": half[0][1], "half_last": half[-1][1],
            "slope_half": slope_per_hour(half), "slope_third": slope_per_hour(third),
            "samples": len(half)}


def trends(samples: list[dict], names: list[str]) -> dict:
    """Per process: RSS (MiB) and open files (the broker's and this tool's net of the nodes
    connected) with their slopes over the second half and the last third; flat when both are
    under FLAT_MIB_H (FLAT_FILES_H for files)."""
    out: dict = {}
    for name in names:
        net = name in NET_OF_CONNECTED
        rss = series_trend(samples, lambda s, n=name: s[n][0] / 1024
                           if s[n][0] is not None else None)
        files = series_trend(samples, lambda s, n=name, net=net: s[n][1] - (s["up"] if net else 0)
                             if s[n][1] is not None else None)
        raw_files = series_trend(samples, lambda s, n=name: s[n][1])
        if rss is None or files is None or raw_files is None:
            continue
        out[name] = {
            "rss": rss, "rss_flat": max(rss["slope_half"], rss["slope_third"]) < FLAT_MIB_H,
            "files": {**raw_files, "slope_half": files["slope_half"],
                      "slope_third": files["slope_third"]},
            "files_flat": max(files["slope_half"], files["slope_third"]) < FLAT_FILES_H,
            "net_of_connected": net}
    return out


def broker_trends(samples: list[dict]) -> dict:
    """The broker's heap and stored bytes (MiB), retained and stored messages (count) as
    Mosquitto counts them ($SYS); the heap flat as RSS is."""
    sys_: dict = {}
    for key in SYS_BROKER:
        scale = 1 / 2**20 if key in ("heap", "stored_bytes") else 1
        tr = series_trend(samples, lambda s, k=key, sc=scale: s.get("sys", {}).get(k) * sc
                          if s.get("sys", {}).get(k) is not None else None)
        if tr is not None:
            sys_[key] = tr
    if "heap" in sys_:
        h = sys_["heap"]
        h["flat"] = max(h["slope_half"], h["slope_third"]) < FLAT_MIB_H
    return sys_


def db_duplicates(db: Path | str) -> dict:
    con = connect_ro(db)
    try:
        plays = con.execute(
            "SELECT node_id, slot_id, count(*) FROM playlogs WHERE slot_id IS NOT NULL AND "
            "cmd_id IS NULL GROUP BY node_id, slot_id HAVING count(*) > 1").fetchall()
        events = con.execute("SELECT count(*) FROM (SELECT 1 FROM events GROUP BY node_id, "
                             "event_id HAVING count(*) > 1)").fetchone()[0]
    finally:
        con.close()
    return {"playlogs": plays, "events": events}


# what the node did with a slot -> the report's judgements that agree with it
AGREES: dict[str | None, set[tuple[str, str | None]]] = {
    "completed": {("aired", None)}, "skipped": {("missed", "late")},
    None: {("missed", "no_report")}}


def account(items: list[dict], nodes: dict[str, SoakNode]) -> dict:
    """Every planned (slot, node) of the report against what the node did."""
    by: Counter[tuple[str, str | None]] = Counter()
    unaccounted, disagree = [], []
    planned = set()
    for it in items:
        if it.get("slot_id") is None:
            continue
        planned.add((it["node_id"], it["slot_id"]))
        key = (it["status"], it.get("reason"))
        by[key] += 1
        if it["status"] not in ("aired", "partial", "missed") or \
                (it["status"] == "missed" and not it.get("reason")):
            unaccounted.append(it)
            continue
        node = nodes.get(it["node_id"])
        did = node.did.get(it["slot_id"]) if node else None
        if key not in AGREES[did]:
            disagree.append({**it, "node_did": did,
                             "node_held": bool(node and it["slot_id"] in node.slots)})
    # the other way round: a slot a node played or skipped that the report does not plan
    unplanned = [(nid, slot) for nid, node in nodes.items() for slot in node.did
                 if (nid, slot) not in planned]
    return {"by": by, "unaccounted": unaccounted, "disagree": disagree,
            "planned": sum(by.values()), "unplanned": unplanned}


async def bench(args) -> dict:
    n = args.nodes
    raise_fd_limit(n + 1024)
    if args.grace_s is not None:  # the web reads it from the environment the System passes on
        os.environ["LOA_AIRPLAY_GRACE_S"] = str(args.grace_s)
    base = Path(tempfile.mkdtemp(prefix="loa-bench-soak-"))
    print(f"system in {base}", flush=True)
    out: dict = {"nodes": n, "load": {"start": uptime()}}
    trace = (Path(args.trace_dispatcher), args.sample_s * 4) if args.trace_dispatcher else None
    sysm = await in_thread(System, base, True, trace)
    rng = random.Random(args.seed)
    rec, counters = Recorder(), Counters()
    sampler = None
    try:
        province = sysm.post("/api/v1/areas", {"name": "Tỉnh thử bền", "code": "SOAK",
                                               "kind": "province"})
        clusters = []
        for w in range(args.wards):
            ward = sysm.post("/api/v1/areas", {"name": f"Phường {w}", "code": f"SOAK-{w}",
                                               "kind": "ward", "parent_id": province["id"]})
            clusters += [sysm.post("/api/v1/areas", {
                "name": f"Cụm {w}.{c}", "code": f"SOAK-{w}-{c}", "kind": "cluster",
                "parent_id": ward["id"]})["id"] for c in range(args.clusters)]
        fleet = Fleet(sysm, clusters)
        answers: list[dict] = []
        while len(answers) < n:
            answers += (await in_thread(fleet.bulk, min(1000, n - len(answers))))[1]
        nodes = [SoakNode(a, rec, counters, random.Random(rng.random())) for a in answers]
        by_id = {nd.id: nd for nd in nodes}
        out["connect_s"] = await connect_all(nodes, args.ramp, counters)  # type: ignore[arg-type]
        out["connected"] = counters.connected
        print(f"{counters.connected} of {n} connected in {out['connect_s']:.1f} s", flush=True)
        live = [nd for nd in nodes if nd.up]
        for i, node in enumerate(live):
            node.telemetry_every(args.telemetry_s, args.telemetry_s * i / len(live))
        await wait_for(lambda: all(nd.desired_version for nd in live), 300, 0.2)
        bulletin = approved(sysm, "Thông báo thử bền", "other", "Ủy ban nhân dân tỉnh thông báo.")

        sys_seen: list[tuple[float, str, str]] = []
        watcher = await sys_watch(sysm, sys_seen, tuple(SYS_BROKER.values()))
        sampler = Sampler({"web": sysm.procs[0].pid, "dispatcher": sysm.procs[1].pid,
                           "broker": sysm.broker.pid, "load tool": os.getpid()},
                          nodes, args.sample_s, sys_seen)
        sampler.start()
        t0 = time.time()
        until = t0 + args.minutes * 60
        for nd in nodes:
            nd.horizon_s = max(nd.horizon_s, until - t0 + 600)
        out["window_from"] = iso(dt.datetime.fromtimestamp(t0, dt.UTC))
        grace = args.grace_s if args.grace_s is not None else 300
        last_slot = until - grace - LAST_SLOT_MARGIN_S
        flaky = [asyncio.create_task(nd.flaky(until, args.drop_mean_s,
                                              (args.offline_min_s, args.offline_max_s)))
                 for nd in live]
        series = await programme(args, sysm, bulletin["id"], province["id"], live, t0, until,
                                 last_slot)
        await asyncio.gather(*flaky)
        out["load"]["end"] = uptime()
        print(f"links stop dropping; {sum(1 for nd in live if nd.up)} connected", flush=True)

        # --- the drain: every node back, every event it held stored --------------------------
        t = time.monotonic()
        drained = await wait_for(
            lambda: all(nd.up and not nd.outbox for nd in live)
            and count(sysm.db, "SELECT count(*) FROM events") >= counters.events,
            args.drain_s, 1.0)
        out["drain_s"] = time.monotonic() - t
        out["drained"] = bool(drained)
        out["events_sent"] = counters.events
        out["events_stored"] = count(sysm.db, "SELECT count(*) FROM events")
        out["held_left"] = sum(len(nd.outbox) for nd in live)
        # what is still held, and the state of its node's link, for the report and the log:
        # a held event whose node is connected means a PUBLISH the broker never acknowledged
        out["held"] = [{"node": nd.id, "up": nd.up, "event": json.loads(payload),
                        "link_closed": not nd.client.up(),
                        "reader_ended": nd.client.closed is None or nd.client.closed.done(),
                        "unacked": len(nd.client.acks)}
                       for nd in live for payload in nd.outbox.values()]
        for held in out["held"]:
            print("held:", json.dumps(held), flush=True)
        print(f"drained: {out['drained']} in {out['drain_s']:.0f} s; events sent "
              f"{out['events_sent']}, stored {out['events_stored']}", flush=True)
        sampler.stop_flag.set()
        await in_thread(sampler.join)
        watcher.close()

        # --- the airplay report of the run's window ------------------------------------------
        end = dt.datetime.now(dt.UTC)
        out["window_to"] = iso(end)
        r = await in_thread(lambda: sysm.http.get(
            f"{sysm.url}/api/v1/reports/airplay", timeout=600,
            params={"from": out["window_from"], "to": out["window_to"]},
            headers={"Accept": "application/json"}))
        report = r.json()
        out["report_total"] = report.get("total")
        out["account"] = account(report.get("items", []), by_id)
        out["duplicates"] = await in_thread(db_duplicates, sysm.db)
        out["series"] = series
        out["node_played_twice"] = sum(1 for nd in live for c in nd.plays.values() if c > 1)
        out["drops"] = sum(nd.drops for nd in live)
        out["offline_s"] = sum(nd.offline_s for nd in live)
        out["resent"] = sum(nd.resent for nd in live)
        out["reconnect_failures"] = sum(nd.reconnect_failures for nd in live)
        out["node_did"] = Counter(v for nd in live for v in nd.did.values())
        out["rejected"] = rec.rejected
        out["trends"] = trends(sampler.samples, list(sampler.pids))
        out["broker_sys"] = broker_trends(sampler.samples)
        out["samples"] = sampler.samples
        out["run_s"] = until - t0
        a = out["account"]
        print(f"report: {out['report_total']}; {a['planned']} planned slots, by "
              f"{dict(a['by'])}; unaccounted {len(a['unaccounted'])}, disagreeing "
              f"{len(a['disagree'])}; duplicates {out['duplicates']}", flush=True)
        for d in a["disagree"][:10]:
            print("disagrees:", d, flush=True)
        for name, tr in out["trends"].items():
            print(name, tr, flush=True)
        print("broker $SYS", out["broker_sys"], flush=True)
        if args.json:
            by = {f"{st} {why or ''}".strip(): c for (st, why), c in a["by"].items()}
            Path(args.json).write_text(json.dumps({**out, "account": {**a, "by": by}},
                                                  default=str), encoding="utf-8")
        return out
    finally:
        if sampler is not None:
            sampler.stop_flag.set()
        await in_thread(sysm.stop)


async def programme(args, sysm: System, bulletin_id: int, area_id: int, live: list[SoakNode],
                    t0: float, until: float, last_slot: float) -> list[dict]:
    """The run's programme (``--programme``) until ``until``; the series made."""
    def progress(what: str) -> None:
        print(f"{time.time() - t0:5.0f} s: {what}{sum(1 for nd in live if nd.up)} connected, "
              f"{sum(nd.drops for nd in live)} drops so far, load {uptime()}", flush=True)
    series: list[dict] = []
    if args.programme == "steady":
        series = await in_thread(steady_programme, sysm, bulletin_id, area_id,
                                 t0 + args.lead_s, last_slot, args.series, args.slot_every_min)
        for sr in series:
            print(f"series {sr['id']}: {sr['rule']} from {sr['slot_at']}", flush=True)
    while args.programme == "steady" and time.time() < until:
        await asyncio.sleep(min(300.0, max(0.0, until - time.time())))
        progress("")
    while args.programme == "growing" and time.time() < until:
        at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=args.lead_s)
        if at.timestamp() <= last_slot:
            bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
                "bulletin_id": bulletin_id, "targets": {"areas": [area_id]},
                "recurrence": "FREQ=DAILY", "start_at": iso(at)})
            series.append({"id": bc["id"], "slot_at": iso(at)})
            progress(f"series {bc['id']} at {iso(at)}; ")
        await asyncio.sleep(min(args.every_s, max(0.0, until - time.time())))
    return series


def held_summary(held: list[dict]) -> str:
    """What the events still held were and where their nodes stood, for the report."""
    if not held:
        return ""
    types = Counter(h["event"].get("type") for h in held)
    links = Counter("link up" if h["up"] and not h["link_closed"] and not h["reader_ended"]
                    else "link down" for h in held)
    return ": " + ", ".join(f"{n} {t}" for t, n in types.most_common()) + "; " + \
        ", ".join(f"{n} with the {what}" for what, n in links.most_common())


def steady_programme(sysm: System, bulletin_id: int, area_id: int, first: float, last: float,
                     n_series: int, every_min: int) -> list[dict]:
    """``n_series`` series to the area, made now, that together put a slot every
    ``every_min`` minutes (each series every ``n_series * every_min`` minutes, at its own
    minutes of the hour) from ``first`` until ``last`` (UNIX times) and never after."""
    period = n_series * every_min
    if 60 % period:
        raise SystemExit(f"--series × --slot-every-min must divide 60 (got {period})")
    start = dt.datetime.fromtimestamp(first, dt.UTC).replace(second=0, microsecond=0) \
        + dt.timedelta(minutes=1)
    until = dt.datetime.fromtimestamp(last, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    made = []
    for k in range(n_series):
        # a series whose first slot would come after the last one the run allows is not
        # made: the API refuses a rule with no occurrence (422)
        first_slot = start + dt.timedelta(minutes=(k * every_min - start.minute) % period)
        if first_slot.timestamp() > last:
            print(f"series {k + 1} of {n_series} not made: its first slot, "
                  f"{iso(first_slot)}, comes after the run's last", flush=True)
            continue
        minutes = ",".join(str(m) for m in range(k * every_min, 60, period))
        rule = f"FREQ=HOURLY;BYMINUTE={minutes};BYSECOND=0;UNTIL={until}"
        bc = sysm.post("/api/v1/broadcasts", {
            "bulletin_id": bulletin_id, "targets": {"areas": [area_id]},
            "recurrence": rule, "start_at": iso(start)})
        made.append({"id": bc["id"], "slot_at": iso(first_slot), "rule": rule})
    return made


# --- report -------------------------------------------------------------------------------------

def met(ok: bool) -> str:
    return "met" if ok else "not met"


def report(r: dict, args, before: str, after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = r["nodes"]
    a = r["account"]
    cmd = (f".venv/bin/python bench/soak.py --nodes {n} --minutes {args.minutes:g} --seed "
           f"{args.seed}{' --programme growing' if args.programme == 'growing' else ''} "
           f"--write-docs")
    if args.programme == "steady":
        rules = "; ".join(f"`{x['rule']}`" for x in r["series"])
        programme = (
            f"a steady programme: {len(r['series'])} series to every node made once at the "
            f"start ({rules}), together a slot "
            f"every {args.slot_every_min} minutes from {args.lead_s} s after the start; "
            f"nothing made or changed after that, so every node's desired state was sent "
            f"once and the retained messages stayed as many and as large")
    else:
        programme = (f"a growing programme: a new daily series to every node every "
                     f"{args.every_s} s ({len(r['series'])} series, each slot {args.lead_s} s "
                     f"after the call), so each node's desired state listed one slot more "
                     f"each time")
    lines = [BEGIN, f"## A soak: {n:,} nodes for {args.minutes:g} minutes with links dropping",
             "", f"- Date: {now}", f"- Machine: {machine()}",
             f"- Command: `{cmd}` (`make bench-soak`)",
             f"- Load average (`uptime`, 1/5/15 min) before: {before}; at the end of the "
             f"drops: {r['load']['end']}; after: {after}. The machine is shared: other jobs "
             f"ran, so these are figures under load, not a quiet machine's.", "",
             f"{r['connected']:,} of {n:,} nodes connected in {r['connect_s']:.1f} s. Over "
             f"{r['run_s'] / 60:.0f} minutes: telemetry every {args.telemetry_s} s from each "
             f"connected node; {programme}; each link dropped at random (exponential, mean "
             f"{args.drop_mean_s} s; socket closed "
             f"without DISCONNECT, so the Last Will fired), away {args.offline_min_s}-"
             f"{args.offline_max_s} s: {r['drops']:,} drops, {r['offline_s'] / 3600:.1f} "
             f"node-hours offline, {r['reconnect_failures']} reconnects refused or failed "
             f"(retried). Events sent again after a reconnect (no PUBACK before the drop, or "
             f"held offline): {r['resent']:,}. Airplay grace "
             f"{args.grace_s if args.grace_s is not None else 300} s.", "",
             "| what | measured | goal | result |", "| --- | --- | --- | --- |"]
    flat = f"slopes (second half, last third) under {FLAT_MIB_H:g} MiB/hour"
    for name, tr in r["trends"].items():
        files = "open files (slope net of the nodes connected)" if tr["net_of_connected"] \
            else "open files"
        m, f = tr["rss"], tr["files"]
        lines.append(
            f"| {name}: RSS | {m['first']:.0f} MiB at the start, max {m['max']:.0f}, "
            f"{m['last']:.0f} at the end; second half {m['half_first']:.0f} → "
            f"{m['half_last']:.0f} MiB; slope {m['slope_half']:+.1f} MiB/hour over the "
            f"second half, {m['slope_third']:+.1f} over the last third | {flat} | "
            f"{'flat' if tr['rss_flat'] else 'growing'} |")
        lines.append(
            f"| {name}: {files} | {f['first']:.0f} at the start, max {f['max']:.0f}, "
            f"{f['last']:.0f} at the end; slope {f['slope_half']:+.1f} files/hour over the "
            f"second half, {f['slope_third']:+.1f} over the last third | under "
            f"{FLAT_FILES_H:g} files/hour | {'flat' if tr['files_flat'] else 'growing'} |")
    bs = r.get("broker_sys", {})
    if "heap" in bs:
        h = bs["heap"]
        lines.append(
            f"| broker: heap (`$SYS/broker/heap/current`) | {h['first']:.1f} MiB at the "
            f"start, max {h['max']:.1f}, {h['last']:.1f} at the end; slope "
            f"{h['slope_half']:+.1f} MiB/hour over the second half, {h['slope_third']:+.1f} "
            f"over the last third | {flat} | {'flat' if h['flat'] else 'growing'} |")
    for key, what in (("retained", "retained messages"), ("stored", "messages stored"),
                      ("stored_bytes", "stored messages' bytes (MiB)")):
        if key in bs:
            x = bs[key]
            lines.append(
                f"| broker: {what} (`{SYS_BROKER[key]}`) | {x['first']:,.1f} at the start, "
                f"max {x['max']:,.1f}, {x['last']:,.1f} at the end; slope "
                f"{x['slope_half']:+,.1f}/hour over the second half, "
                f"{x['slope_third']:+,.1f} over the last third | (context) | |")
    dup = r["duplicates"]
    lines += [
        f"| held events delivered after the links stopped dropping | every node back and "
        f"{r['events_stored']:,} of {r['events_sent']:,} events stored "
        f"{'after' if r['drained'] else 'not all after'} {r['drain_s']:.0f} s "
        f"({r['held_left']} still held{held_summary(r.get('held', []))}) | all, once | "
        f"{met(r['drained'] and not dup['events'])} |",
        f"| planned (slot, node) in the airplay report ({r['window_from']} to "
        f"{r['window_to']}) | {a['planned']:,}: "
        + ", ".join(f"{s}{' ' + str(why) if why else ''} {c:,}"
                    for (s, why), c in sorted(a["by"].items(), key=lambda x: -x[1]))
        + f" | every one aired or missed with a reason | {met(not a['unaccounted'])} "
        f"({len(a['unaccounted'])} not accounted for) |",
        f"| the report against what each node did (played, skipped late, never held the slot) "
        f"| {len(a['disagree'])} disagree; {len(a['unplanned'])} slots a node played or "
        f"skipped that the report does not plan | none | "
        f"{met(not a['disagree'] and not a['unplanned'])} |",
        f"| played twice | {len(dup['playlogs'])} (slot, node) with two playlog rows; "
        f"{dup['events']} event ids stored twice; {r['node_played_twice']} slots a node "
        f"started twice | none | "
        f"{met(not dup['playlogs'] and not dup['events'] and not r['node_played_twice'])} |",
        ""]
    lines += ["RSS and open files every 5 minutes (MiB / files; the broker's and this tool's "
              "include a socket per node connected, the nodes connected given first; then "
              "the broker's heap in MiB and its retained and stored messages):", ""]
    picked = [s for i, s in enumerate(r["samples"])
              if i == 0 or int((s["t"] - r["samples"][0]["t"]) // 300)
              != int((r["samples"][i - 1]["t"] - r["samples"][0]["t"]) // 300)]
    for s in picked:
        minute = (s["t"] - r["samples"][0]["t"]) / 60
        sy = s.get("sys") or {}
        lines.append(f"- {minute:4.1f} min, {s['up']:,} connected: " + "; ".join(
            f"{k} {v[0] / 1024:.0f} / {v[1]}" for k, v in s.items()
            if k not in ("t", "up", "sys") and v[0] is not None)
            + (f"; broker heap {sy['heap'] / 2**20:.1f}, retained {sy['retained']}, stored "
               f"{sy['stored']}" if all(sy.get(k) is not None
                                         for k in ("heap", "retained", "stored")) else ""))
    lines.append("")
    did = r["node_did"]
    lines.append(f"What the nodes did with their slots: {did.get('completed', 0):,} played, "
                 f"{did.get('skipped', 0):,} skipped late (learnt of more than {LATE_S} s after "
                 f"their time: the node was offline from before the series was made until "
                 f"after its slot). Envelopes the nodes refused: {r['rejected']}.")
    if a["unaccounted"] or a["disagree"]:
        lines += ["", "Not accounted for or disagreeing (the first 10):", ""]
        lines += [f"- {json.dumps(x, ensure_ascii=False)}"
                  for x in (a["unaccounted"] + a["disagree"])[:10]]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--ramp", type=int, default=500, help="new connections a second, at most")
    ap.add_argument("--telemetry-s", type=int, default=30)
    ap.add_argument("--programme", choices=("steady", "growing"), default="steady",
                    help="steady: a few series made at the start; growing: a new one every "
                    "--every-s")
    ap.add_argument("--series", type=int, default=3, help="steady: this many series")
    ap.add_argument("--slot-every-min", type=int, default=2,
                    help="steady: a slot this often, the series taking turns")
    ap.add_argument("--every-s", type=int, default=150,
                    help="growing: a new daily series this often")
    ap.add_argument("--lead-s", type=int, default=90,
                    help="the first slot (steady) or each new one (growing) this far ahead")
    ap.add_argument("--drop-mean-s", type=float, default=450,
                    help="mean time between a node's link drops")
    ap.add_argument("--offline-min-s", type=float, default=5)
    ap.add_argument("--offline-max-s", type=float, default=120)
    ap.add_argument("--grace-s", type=int, default=120,
                    help="the airplay report's grace (LOA_AIRPLAY_GRACE_S; server default 300)")
    ap.add_argument("--drain-s", type=float, default=300, help="at most this long to drain")
    ap.add_argument("--sample-s", type=float, default=30)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--wards", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=5, help="clusters a ward")
    ap.add_argument("--json", help="write the results (samples too) to this file")
    ap.add_argument("--trace-dispatcher", metavar="FILE",
                    help="run the dispatcher under tracemalloc (bench/_traced.py), where its "
                    "memory grew written to FILE every 4 samples; slow: short runs only")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    # the slots fall between --lead-s after the start and the last slot bench() allows, on
    # whole minutes: room for at least one, or no programme to soak
    room_s = args.minutes * 60 - args.lead_s - args.grace_s - LAST_SLOT_MARGIN_S
    if args.programme == "steady" and room_s < 60 * (1 + args.slot_every_min):
        ap.error(f"--minutes {args.minutes:g} leaves {max(room_s, 0):.0f} s for slots after "
                 f"--lead-s {args.lead_s} and before --grace-s {args.grace_s} + "
                 f"{LAST_SLOT_MARGIN_S} s; a slot "
                 f"every {args.slot_every_min} min on whole minutes needs "
                 f"{60 * (1 + args.slot_every_min)} s: give more --minutes or less --grace-s")
    if args.programme == "growing" and room_s < 0:
        ap.error(f"--minutes {args.minutes:g} leaves no time for a slot after --lead-s "
                 f"{args.lead_s} and before --grace-s {args.grace_s} + {LAST_SLOT_MARGIN_S} s")
    return run_and_report(args, lambda a: asyncio.run(bench(a)), report, BEGIN, END)


if __name__ == "__main__":
    sys.exit(main())
