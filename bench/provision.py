"""Provisioning a province: 10,000 nodes through the API, and the cost of one node as the fleet
grows.

Starts Mosquitto and the web (waitress) in a temp folder as `make run` does (no dispatcher: what
is measured is provisioning), makes a province with one ward of ``--clusters`` clusters, then:

- single provisions (``POST /api/v1/nodes``, one at a time, ``--singles`` of them) at fleet
  sizes 0, half and the whole (``--nodes``): the median and p95 of one call must not grow with
  the fleet;
- bulk provisioning (``POST /api/v1/nodes/bulk``, ``--batch`` rows a call) up to ``--nodes``:
  each call's time per node, and the total;
- a CSV import (``POST /api/v1/nodes/import``) of ``--batch`` rows;
- the broker: its CPU per reload (SIGHUP) while the last singles run, the time from a bulk
  call's answer to its last node being accepted by the broker, and for comparison what writing
  the files again whole from the registry (what every provisioning did before) takes at the
  final fleet size.

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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fanout import (System, cpu_seconds, machine, pct, raise_fd_limit,  # noqa: E402
                    run_and_report, wait_accepted)

BEGIN, END = "<!-- bench/provision.py:begin -->", "<!-- bench/provision.py:end -->"


class Fleet:
    def __init__(self, sysm: System, clusters: list[int]):
        self.sysm, self.clusters, self.count = sysm, clusters, 0

    def row(self) -> dict:
        i = self.count
        self.count += 1
        return {"cluster_id": self.clusters[i % len(self.clusters)], "name": f"Loa số {i}",
                "lat": 20.8 + (i % 1000) / 10000, "lon": 106.6 + (i // 1000) / 1000}

    def singles(self, n: int) -> dict:
        broker_pid = self.sysm.broker.pid
        cpu0, times = cpu_seconds(broker_pid), []
        for _ in range(n):
            t = time.monotonic()
            self.sysm.post("/api/v1/nodes", self.row())
            times.append((time.monotonic() - t) * 1000)
        cpu1 = cpu_seconds(broker_pid)
        broker_ms = (cpu1 - cpu0) * 1000 / n if cpu0 is not None and cpu1 is not None else None
        return {"fleet": self.count - n, "n": n, "p50": statistics.median(times),
                "p95": pct(times, 95), "max": max(times), "broker_ms": broker_ms}

    def bulk(self, n: int) -> tuple[float, list[dict]]:
        rows = [self.row() for _ in range(n)]
        t = time.monotonic()
        answers = self.sysm.post("/api/v1/nodes/bulk", rows)["nodes"]
        return time.monotonic() - t, answers

    def csv(self, n: int) -> float:
        lines = ["name,cluster,latitude,longitude"]
        for _ in range(n):
            row = self.row()
            lines.append(f"{row['name']},{row['cluster_id']},{row['lat']},{row['lon']}")
        http = self.sysm.http
        t = time.monotonic()
        r = http.post(f"{self.sysm.url}/api/v1/nodes/import", timeout=600,
                      data="\n".join(lines).encode("utf-8"), headers={"Content-Type": "text/csv"})
        if r.status_code != 201:
            raise RuntimeError(f"import: {r.status_code} {r.text[:500]}")
        return time.monotonic() - t


def full_rewrite_ms(sysm: System) -> float:
    """What every provisioning did before: the broker files written again whole from the
    registry (median of 3, at the fleet's current size)."""
    from server.config import load_settings
    from server.models import make_engine, make_sessionmaker
    from server.nodes import sync_broker_accounts
    settings = load_settings(sysm.instance)
    engine = make_engine(settings.database_url)
    times = []
    for _ in range(3):
        t = time.monotonic()
        sync_broker_accounts(settings, make_sessionmaker(engine))
        times.append((time.monotonic() - t) * 1000)
    engine.dispose()
    return statistics.median(times)


def bench(args) -> dict:
    raise_fd_limit(4096)
    base = Path(tempfile.mkdtemp(prefix="loa-bench-provision-"))
    print(f"system in {base}", flush=True)
    sysm = System(base, dispatcher=False)
    out: dict = {"singles": [], "bulk": []}
    try:
        province = sysm.post("/api/v1/areas", {"name": "Tỉnh Quảng Ninh", "code": "QN",
                                               "kind": "province"})
        ward = sysm.post("/api/v1/areas", {"name": "Phường Hồng Gai", "code": "QN-HG",
                                           "kind": "ward", "parent_id": province["id"]})
        clusters = [sysm.post("/api/v1/areas", {
            "name": f"Cụm {i}", "code": f"QN-HG-{i}", "kind": "cluster",
            "parent_id": ward["id"]})["id"] for i in range(args.clusters)]
        fleet = Fleet(sysm, clusters)
        out["singles"].append(fleet.singles(args.singles))
        print(f"singles at 0: {out['singles'][-1]}", flush=True)
        bulk_total = 0.0
        last: list[dict] = []
        half = args.nodes // 2
        while fleet.count < args.nodes:
            n = min(args.batch, args.nodes - fleet.count)
            if fleet.count < half < fleet.count + n:
                n = half - fleet.count
            fleet_before = fleet.count
            took, last = fleet.bulk(n)
            bulk_total += took
            out["bulk"].append({"fleet": fleet_before, "n": n, "s": took})
            print(f"bulk {n} at {fleet_before}: {took:.1f} s", flush=True)
            if fleet.count == half:
                out["singles"].append(fleet.singles(args.singles))
                print(f"singles at {half}: {out['singles'][-1]}", flush=True)
        out["accept_s"] = wait_accepted(sysm.mqtt_port, last[-1]["id"],
                                        last[-1]["mqtt"]["password"])
        out["bulk_total_s"] = bulk_total
        out["singles"].append(fleet.singles(args.singles))
        print(f"singles at {fleet.count - args.singles}: {out['singles'][-1]}", flush=True)
        out["csv_s"], out["csv_n"] = fleet.csv(args.batch), args.batch
        print(f"csv {args.batch}: {out['csv_s']:.1f} s", flush=True)
        out["fleet"] = fleet.count
        out["rewrite_ms"] = full_rewrite_ms(sysm)
        out["nodes"] = args.nodes
    finally:
        sysm.stop()
    return out


def report(r: dict, args, before: str, after: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    per_node = [b["s"] * 1000 / b["n"] for b in r["bulk"]]
    lines = [BEGIN, "## Provisioning a province: 10,000 nodes through the API", "",
             f"- Date: {now}", f"- Machine: {machine()}",
             f"- Command: `.venv/bin/python bench/provision.py --nodes {args.nodes} "
             f"--batch {args.batch} --singles {args.singles} --clusters {args.clusters} "
             f"--write-docs`",
             f"- Load average (`uptime`) before: {before}; after: {after}", "",
             f"Bulk (`POST /api/v1/nodes/bulk`, {args.batch} rows a call) from 0 to "
             f"{r['nodes']} nodes: {r['bulk_total_s']:.1f} s in all (target < 120 s: "
             f"{'met' if r['bulk_total_s'] < 120 else 'not met'}); per node "
             f"{min(per_node):.2f}–{max(per_node):.2f} ms, the first call "
             f"{per_node[0]:.2f} ms, the last {per_node[-1]:.2f} ms. The last call's last node "
             f"was accepted by the broker {r['accept_s'] * 1000:.0f} ms after the answer.", "",
             "| calls | fleet before | rows | time | per node |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for b in r["bulk"]:
        lines.append(f"| bulk | {b['fleet']} | {b['n']} | {b['s']:.2f} s | "
                     f"{b['s'] * 1000 / b['n']:.2f} ms |")
    lines.append(f"| CSV import | {r['fleet'] - r['csv_n']} | {r['csv_n']} | {r['csv_s']:.2f} s "
                 f"| {r['csv_s'] * 1000 / r['csv_n']:.2f} ms |")
    lines += ["", f"One node at a time (`POST /api/v1/nodes`, {args.singles} in a row at each "
              "fleet size; the broker's CPU per call is its reload of the files on SIGHUP):", "",
              "| fleet size | p50 | p95 | max | broker CPU per call |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for s in r["singles"]:
        cpu = f"{s['broker_ms']:.1f} ms" if s["broker_ms"] is not None else "-"
        lines.append(f"| {s['fleet']} | {s['p50']:.1f} ms | {s['p95']:.1f} ms | "
                     f"{s['max']:.1f} ms | {cpu} |")
    lines += ["", f"Writing the broker's files again whole from the registry at {r['fleet']} "
              f"nodes (what every provisioning did before, and what revocation and "
              f"`sync-broker` still do): {r['rewrite_ms']:.0f} ms.", "", END]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=100)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--write-docs", action="store_true")
    return run_and_report(ap.parse_args(), bench, report, BEGIN, END)


if __name__ == "__main__":
    sys.exit(main())
