"""A soak: N nodes for D minutes with links dropping at random (issue 10).

Brings a whole system up as `make run` does and provisions ``--nodes`` nodes through the bulk
API (bench/load.py), runs them in this one asyncio process (bench/load.py's LoadNode: the real
agent protocol, no project imports on the node side) for ``--minutes`` minutes, and meanwhile:

- a programme as a ward would make it: every ``--every-s`` seconds a new daily series to every
  node through the API, its slot ``--lead-s`` ahead, so the run holds many slots; telemetry
  every ``--telemetry-s`` seconds from each node that is connected;
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
  broker and this tool; at the end a least-squares slope over the run's second half, in MiB
  and files an hour. The broker's open files follow the connected nodes, so its slope is
  fitted on open files minus the nodes connected at the sample;
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
import sqlite3
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

from fanout import (Mqtt, Recorder, System, in_thread, machine, raise_fd_limit,  # noqa: E402
                    run_and_report, uptime, wait_for)
from load import Counters, LoadNode, connect_all, count, iso, open_files, rss_kb  # noqa: E402
from provision import Fleet  # noqa: E402

BEGIN, END = "<!-- bench/soak.py:begin -->", "<!-- bench/soak.py:end -->"
# their open files follow the nodes connected (a socket each): fitted net of those
NET_OF_CONNECTED = ("broker", "load tool")
LATE_S = 60  # a slot learnt of later than this is skipped, reason late (docs/protocol.md)


class SoakNode(LoadNode):
    """A LoadNode whose link drops: an outbox of events kept until the broker acknowledges
    them, slots played (or skipped late) from the held schedule whether connected or not."""

    def __init__(self, answer: dict, rec: Recorder, counters: Counters, rng: random.Random):
        super().__init__(answer, rec, counters)
        self.rng = rng
        self.outbox: dict[str, bytes] = {}  # event id -> payload, until the broker's PUBACK
        self.resent = 0        # events sent again after a reconnect
        self.drops = 0
        self.reconnect_failures = 0
        self.offline_s = 0.0
        self.did: dict[str, str] = {}   # slot id -> "completed" / "skipped"
        self.plays: Counter[str] = Counter()  # slot id -> times played (twice would be a bug)

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

    def telemetry_every(self, period: float, phase: float) -> None:
        """LoadNode's, but asking ``up``: while a reconnect opens its socket the client has no
        writer yet, and LoadNode's tick (asking the writer) would raise and stop for good."""
        loop = asyncio.get_running_loop()

        def tick(at: float) -> None:
            self.telemetry()
            loop.call_at(at + period, tick, at + period)
        first = loop.time() + phase
        loop.call_at(first, tick, first)

    # --- the schedule, played on the node's own clock -----------------------------------
    def apply(self, body: dict) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        for entry in body["schedule"]:
            at = entry["start_at"] / 1000
            slot = entry["slot_id"]
            if slot in self.slots or at > now + 3600 or at < self.booted:
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
        transport = self.client.writer.transport if self.client.writer else None
        if transport is not None:
            transport.abort()

    async def reconnect(self) -> None:
        backoff = 2.0
        while True:
            self.client = Mqtt(self.on_message)
            try:
                await self.start()
                break
            except (TimeoutError, OSError, ConnectionError):
                self.reconnect_failures += 1
                if self.client.writer is not None:
                    self.client.writer.transport.abort()
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(60.0, backoff * 2)
        self.up = True
        for event_id, payload in list(self.outbox.items()):
            self.resent += 1
            self._send(event_id, payload)

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
    """Every ``every`` s: RSS and open files of each process, and the nodes connected."""

    def __init__(self, pids: dict[str, int], nodes: list[SoakNode], every: float):
        super().__init__(daemon=True, name="soak-sampler")
        self.pids, self.nodes, self.every = pids, nodes, every
        self.samples: list[dict] = []
        self.stop_flag = threading.Event()

    def sample(self) -> None:
        s: dict = {"t": time.time(), "up": sum(1 for n in self.nodes if n.up)}
        for name, pid in self.pids.items():
            s[name] = (rss_kb(pid), open_files(pid))
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


def trends(samples: list[dict], names: list[str]) -> dict:
    """Per process over the second half: RSS and open files first, last, max, slope an hour
    and flat or growing. Flat: RSS growing less than max(5 MiB, 5 % of its mean) an hour, open
    files less than 10 an hour (the broker's and this tool's net of the nodes connected)."""
    if not samples:
        return {}
    t0, t1 = samples[0]["t"], samples[-1]["t"]
    half = [s for s in samples if s["t"] >= (t0 + t1) / 2]
    out = {}
    for name in names:
        rss = [(s["t"], s[name][0] / 1024) for s in half if s[name][0] is not None]
        net = name in NET_OF_CONNECTED
        files = [(s["t"], s[name][1] - (s["up"] if net else 0))
                 for s in half if s[name][1] is not None]
        if not rss or not files:
            continue
        mean = sum(v for _, v in rss) / len(rss)
        r_slope, f_slope = slope_per_hour(rss), slope_per_hour(files)
        all_rss = [s[name][0] / 1024 for s in samples if s[name][0] is not None]
        all_files = [s[name][1] for s in samples if s[name][1] is not None]
        out[name] = {
            "rss_first": all_rss[0], "rss_last": all_rss[-1], "rss_max": max(all_rss),
            "rss_half_first": rss[0][1], "rss_half_last": rss[-1][1],
            "rss_slope": r_slope, "rss_flat": r_slope < max(5.0, 0.05 * mean),
            "files_first": all_files[0], "files_last": all_files[-1],
            "files_max": max(all_files), "files_slope": f_slope, "files_flat": f_slope < 10,
            "net_of_connected": net, "samples": len(half)}
    return out


def db_duplicates(db_file: Path) -> dict:
    con = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
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
AGREES = {"completed": {("aired", None)}, "skipped": {("missed", "late")},
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
    sysm = await in_thread(System, base)
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
        bulletin = sysm.post("/api/v1/bulletins", {"title": "Thông báo thử bền",
                                                   "category": "other",
                                                   "text": "Ủy ban nhân dân tỉnh thông báo."})
        sysm.post(f"/api/v1/bulletins/{bulletin['id']}/submit", None)
        sysm.post(f"/api/v1/bulletins/{bulletin['id']}/approve", None)

        sampler = Sampler({"web": sysm.procs[0].pid, "dispatcher": sysm.procs[1].pid,
                           "broker": sysm.broker.proc.pid, "load tool": os.getpid()},
                          nodes, args.sample_s)
        sampler.start()
        t0 = time.time()
        until = t0 + args.minutes * 60
        out["window_from"] = iso(dt.datetime.fromtimestamp(t0, dt.UTC))
        grace = args.grace_s if args.grace_s is not None else 300
        # the last slot leaves time for its end, the grace and the drain before the report
        last_slot = until - grace - 30
        flaky = [asyncio.create_task(nd.flaky(until, args.drop_mean_s,
                                              (args.offline_min_s, args.offline_max_s)))
                 for nd in live]
        series: list[dict] = []
        while time.time() < until:
            at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(
                seconds=args.lead_s)
            if at.timestamp() <= last_slot:
                bc = await in_thread(sysm.post, "/api/v1/broadcasts", {
                    "bulletin_id": bulletin["id"], "targets": {"areas": [province["id"]]},
                    "recurrence": "FREQ=DAILY", "start_at": iso(at)})
                series.append({"id": bc["id"], "slot_at": iso(at)})
                up = sum(1 for nd in live if nd.up)
                print(f"{time.time() - t0:5.0f} s: series {bc['id']} at {iso(at)}; {up} "
                      f"connected, {sum(nd.drops for nd in live)} drops so far, "
                      f"load {uptime()}", flush=True)
            await asyncio.sleep(min(args.every_s, max(0.0, until - time.time())))
        await asyncio.gather(*flaky)
        out["load"]["end"] = uptime()
        print(f"links stop dropping; {sum(1 for nd in live if nd.up)} connected", flush=True)

        # --- the drain: every node back, every event it held stored --------------------------
        t = time.monotonic()
        drained = await wait_for(
            lambda: all(nd.up and not nd.outbox for nd in live)
            and count(sysm.db_file, "SELECT count(*) FROM events") >= counters.events,
            args.drain_s, 1.0)
        out["drain_s"] = time.monotonic() - t
        out["drained"] = bool(drained)
        out["events_sent"] = counters.events
        out["events_stored"] = count(sysm.db_file, "SELECT count(*) FROM events")
        out["held_left"] = sum(len(nd.outbox) for nd in live)
        print(f"drained: {out['drained']} in {out['drain_s']:.0f} s; events sent "
              f"{out['events_sent']}, stored {out['events_stored']}", flush=True)
        sampler.stop_flag.set()
        await in_thread(sampler.join)

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
        out["duplicates"] = await in_thread(db_duplicates, sysm.db_file)
        out["series"] = series
        out["node_played_twice"] = sum(1 for nd in live for c in nd.plays.values() if c > 1)
        out["drops"] = sum(nd.drops for nd in live)
        out["offline_s"] = sum(nd.offline_s for nd in live)
        out["resent"] = sum(nd.resent for nd in live)
        out["reconnect_failures"] = sum(nd.reconnect_failures for nd in live)
        out["node_did"] = Counter(v for nd in live for v in nd.did.values())
        out["rejected"] = rec.rejected
        out["trends"] = trends(sampler.samples, list(sampler.pids))
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
        return out
    finally:
        if sampler is not None:
            sampler.stop_flag.set()
        await in_thread(sysm.stop)


# --- report -------------------------------------------------------------------------------------

def met(ok: bool) -> str:
    return "met" if ok else "not met"


def report(r: dict, args, before: str, after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = r["nodes"]
    a = r["account"]
    cmd = (f".venv/bin/python bench/soak.py --nodes {n} --minutes {args.minutes:g} --seed "
           f"{args.seed} --write-docs")
    lines = [BEGIN, f"## A soak: {n:,} nodes for {args.minutes:g} minutes with links dropping",
             "", f"- Date: {now}", f"- Machine: {machine()}",
             f"- Command: `{cmd}` (`make bench-soak`)",
             f"- Load average (`uptime`, 1/5/15 min) before: {before}; at the end of the "
             f"drops: {r['load']['end']}; after: {after}. The machine is shared: other jobs "
             f"ran, so these are figures under load, not a quiet machine's.", "",
             f"{r['connected']:,} of {n:,} nodes connected in {r['connect_s']:.1f} s. Over "
             f"{r['run_s'] / 60:.0f} minutes: telemetry every {args.telemetry_s} s from each "
             f"connected node; a new daily series to every node every {args.every_s} s "
             f"({len(r['series'])} series, each slot {args.lead_s} s after the call); each "
             f"link dropped at random (exponential, mean {args.drop_mean_s} s; socket closed "
             f"without DISCONNECT, so the Last Will fired), away {args.offline_min_s}-"
             f"{args.offline_max_s} s: {r['drops']:,} drops, {r['offline_s'] / 3600:.1f} "
             f"node-hours offline, {r['reconnect_failures']} reconnects refused or failed "
             f"(retried). Events sent again after a reconnect (no PUBACK before the drop, or "
             f"held offline): {r['resent']:,}. Airplay grace "
             f"{args.grace_s if args.grace_s is not None else 300} s.", "",
             "| what | measured | goal | result |", "| --- | --- | --- | --- |"]
    for name, tr in r["trends"].items():
        files = "open files (slope net of the nodes connected)" if tr["net_of_connected"] \
            else "open files"
        lines.append(
            f"| {name}: RSS | {tr['rss_first']:.0f} MiB at the start, max "
            f"{tr['rss_max']:.0f}, {tr['rss_last']:.0f} at the end; second half "
            f"{tr['rss_half_first']:.0f} → {tr['rss_half_last']:.0f} MiB, slope "
            f"{tr['rss_slope']:+.1f} MiB/hour | flat | "
            f"{'flat' if tr['rss_flat'] else 'growing'} |")
        lines.append(
            f"| {name}: {files} | {tr['files_first']} at the start, max {tr['files_max']}, "
            f"{tr['files_last']} at the end; second-half slope {tr['files_slope']:+.1f} "
            f"files/hour | flat | {'flat' if tr['files_flat'] else 'growing'} |")
    dup = r["duplicates"]
    lines += [
        f"| held events delivered after the links stopped dropping | every node back and "
        f"{r['events_stored']:,} of {r['events_sent']:,} events stored "
        f"{'after' if r['drained'] else 'not all after'} {r['drain_s']:.0f} s "
        f"({r['held_left']} still held) | all, once | "
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
              "include a socket per node connected, the nodes connected given first):", ""]
    picked = [s for i, s in enumerate(r["samples"])
              if i == 0 or int((s["t"] - r["samples"][0]["t"]) // 300)
              != int((r["samples"][i - 1]["t"] - r["samples"][0]["t"]) // 300)]
    for s in picked:
        minute = (s["t"] - r["samples"][0]["t"]) / 60
        lines.append(f"- {minute:4.1f} min, {s['up']:,} connected: " + "; ".join(
            f"{k} {v[0] / 1024:.0f} / {v[1]}" for k, v in s.items()
            if k not in ("t", "up") and v[0] is not None))
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
    ap.add_argument("--every-s", type=int, default=150, help="a new daily series this often")
    ap.add_argument("--lead-s", type=int, default=90, help="its slot this far ahead")
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
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    return run_and_report(args, lambda a: asyncio.run(bench(a)), report, BEGIN, END)


if __name__ == "__main__":
    sys.exit(main())
