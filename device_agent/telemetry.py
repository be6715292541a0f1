"""Health readings from the machine itself for the telemetry message: uptime, CPU temperature,
load, memory, disk, network type, 4G signal (mmcli), clock offset and sync state (chrony, else
systemd's timedatectl). A value that cannot be read is None (null on the wire), never made up.

The parsers are pure functions; ``MachineProbe`` reads /proc, /sys and the tools, with the
roots overridable so tests can point it at a fake tree. The clock is read through a
``ClockSource`` (``SystemClock`` on a real machine, ``FixedClock`` in tests).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Protocol

TOOL_TIMEOUT_S = 3
DISK_LOW_MB = 200
OVERHEAT_C = 80.0


def parse_uptime(text: str) -> float | None:
    try:
        return round(float(text.split()[0]), 1)
    except (IndexError, ValueError):
        return None


def parse_meminfo(text: str) -> float | None:
    """Percent of memory in use: (MemTotal - MemAvailable) / MemTotal."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name.strip()] = int(parts[0])
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    return round(100.0 * (total - available) / total, 1)


def interface_type(name: str) -> str | None:
    """ethernet, wifi or 4g from a Linux interface name; None for one we cannot tell."""
    if name.startswith(("wwan", "ppp", "usb")):
        return "4g"
    if name.startswith("wl"):
        return "wifi"
    if name.startswith("e"):
        return "ethernet"
    return None


def default_route_interface(route_table: str) -> str | None:
    """The interface of the IPv4 default route in /proc/net/route (lowest metric wins)."""
    best = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 7 and fields[1] == "00000000":
            try:
                metric = int(fields[6])
            except ValueError:
                continue
            if best is None or metric < best[0]:
                best = (metric, fields[0])
    return best[1] if best else None


# fields of ``chronyc -c tracking`` (one CSV line): 4 is the system time offset in seconds,
# positive when the local clock is slow of NTP time; the last is the leap status
CHRONY_CSV_OFFSET, CHRONY_CSV_FIELDS = 4, 14


def _chronyc_csv(text: str) -> list[str] | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    fields = lines[0].split(",")
    return fields if len(fields) >= CHRONY_CSV_FIELDS else None


def parse_chronyc_tracking(text: str) -> int | None:
    """Local clock minus NTP time in ms from ``chronyc -c tracking`` (CSV) or ``chronyc
    tracking`` ("x seconds fast/slow of NTP time"); None when the text holds neither."""
    fields = _chronyc_csv(text)
    if fields is not None:
        try:
            slow_s = float(fields[CHRONY_CSV_OFFSET])
        except ValueError:
            return None
        return round(-slow_s * 1000) if abs(slow_s) < 1e9 else None
    m = re.search(r"^System time\s*:\s*([0-9.]+) seconds (fast|slow)", text, re.MULTILINE)
    if not m:
        return None
    offset = float(m.group(1)) * 1000
    return round(offset if m.group(2) == "fast" else -offset)


def chronyc_unsynced(text: str) -> bool:
    """chrony's leap status says the clock is not synchronised (CSV or plain output)."""
    fields = _chronyc_csv(text)
    if fields is not None:
        return fields[-1].strip() == "Not synchronised"
    return bool(re.search(r"^Leap status\s*:\s*Not synchronised", text, re.MULTILINE))


def parse_timedatectl_show(text: str) -> bool | None:
    """Whether systemd says the clock is NTP-synchronised (``timedatectl show``:
    ``NTPSynchronized=yes|no``); None when the text does not say."""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "NTPSynchronized":
            return {"yes": True, "no": False}.get(value.strip())
    return None


def parse_mmcli_keyvalue(text: str) -> dict[str, str]:
    """``mmcli --output-keyvalue`` lines ``key : value`` ("--" means empty)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        value = value.strip()
        if sep and value and value != "--":
            out[key.strip()] = value
    return out


def mmcli_signal_dbm(values: Mapping[str, str]) -> float | None:
    """Received power in dBm from ``mmcli --signal-get``: LTE RSRP/RSSI, else 5G, UMTS, GSM."""
    for key in ("modem.signal.lte.rssi", "modem.signal.lte.rsrp", "modem.signal.5g.rsrp",
                "modem.signal.umts.rssi", "modem.signal.gsm.rssi"):
        try:
            return float(values[key])
        except (KeyError, ValueError):
            continue
    return None


def health_alarms(sample: Mapping[str, Any], active: frozenset[str],
                  ) -> tuple[frozenset[str], list[tuple[str, str]]]:
    """Alarm codes that hold for ``sample``, and the (code, detail) pairs newly raised since
    ``active`` (an alarm is raised once when its condition starts, again only after it ended)."""
    now: dict[str, str] = {}
    disk = sample.get("disk_free_mb")
    if disk is not None and disk < DISK_LOW_MB:
        now["disk_low"] = f"{disk} MB free in the state directory"
    temp = sample.get("cpu_temp_c")
    if temp is not None and temp >= OVERHEAT_C:
        now["overheat"] = f"CPU at {temp} °C"
    if sample.get("_clock_unsynced"):
        now["clock_unsynced"] = "the clock is not synchronised (chrony or timedatectl)"
    raised = [(code, detail) for code, detail in now.items() if code not in active]
    return frozenset(now), raised


Runner = Callable[[list[str]], str | None]


def run_tool(argv: list[str]) -> str | None:
    """stdout of a tool that is installed and answers in time, else None."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True)
class ClockReading:
    """The local clock against NTP time: ``offset_ms`` (local minus NTP, None when no tool
    measures it) and ``synced`` (None when nothing says)."""

    offset_ms: int | None = None
    synced: bool | None = None


class ClockSource(Protocol):
    def read(self) -> ClockReading: ...


class SystemClock:
    """chrony (``chronyc -c tracking``) where it answers, else systemd (``timedatectl show``,
    which gives the sync state but no offset), else nothing known."""

    def __init__(self, run: Runner = run_tool):
        self.run = run

    def read(self) -> ClockReading:
        text = self.run(["chronyc", "-c", "tracking"])
        if text is not None:
            if chronyc_unsynced(text):  # no source: its offset measures nothing (null)
                return ClockReading(None, False)
            offset = parse_chronyc_tracking(text)
            if offset is not None:
                return ClockReading(offset, True)
        text = self.run(["timedatectl", "show"])
        if text is not None:
            return ClockReading(None, parse_timedatectl_show(text))
        return ClockReading()


@dataclass
class FixedClock:
    """A clock source that says what a test tells it (change ``reading`` at will)."""

    reading: ClockReading = ClockReading()

    def read(self) -> ClockReading:
        return self.reading


class MachineProbe:
    """Reads the machine's health; every method returns None for what it cannot read."""

    def __init__(self, state_dir: str | Path, proc: str | Path = "/proc",
                 sys: str | Path = "/sys", run: Runner = run_tool,
                 clock: ClockSource | None = None):
        self.state_dir = Path(state_dir)
        self.proc = Path(proc)
        self.sys = Path(sys)
        self.run = run
        self.clock: ClockSource = clock if clock is not None else SystemClock(run)

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None

    def uptime_s(self) -> float | None:
        text = self._read(self.proc / "uptime")
        return parse_uptime(text) if text else None

    def cpu_temp_c(self) -> float | None:
        temps = []
        for zone in sorted((self.sys / "class" / "thermal").glob("thermal_zone*")):
            text = self._read(zone / "temp")
            try:
                temps.append(int((text or "").strip()) / 1000)
            except ValueError:
                continue
        return round(max(temps), 1) if temps else None

    def load1(self) -> float | None:
        try:
            return round(os.getloadavg()[0], 2)
        except OSError:
            return None

    def mem_used_pct(self) -> float | None:
        text = self._read(self.proc / "meminfo")
        return parse_meminfo(text) if text else None

    def disk_free_mb(self) -> int | None:
        try:
            return shutil.disk_usage(self.state_dir).free // (1024 * 1024)
        except OSError:
            return None

    def net_type(self) -> str | None:
        route = self._read(self.proc / "net" / "route")
        name = default_route_interface(route) if route else None
        if name is None:
            for iface in sorted((self.sys / "class" / "net").glob("*")):
                if iface.name == "lo":
                    continue
                if (self._read(iface / "operstate") or "").strip() == "up":
                    name = iface.name
                    break
        return interface_type(name) if name else None

    def modem(self) -> tuple[float | None, str | None]:
        status = self.run(["mmcli", "-m", "any", "--output-keyvalue"])
        if status is None:
            return None, None
        operator = parse_mmcli_keyvalue(status).get("modem.3gpp.operator-name")
        signal = self.run(["mmcli", "-m", "any", "--signal-get", "--output-keyvalue"])
        dbm = mmcli_signal_dbm(parse_mmcli_keyvalue(signal)) if signal else None
        return dbm, operator

    def chrony(self) -> tuple[int | None, bool]:
        """Clock offset in ms (None when unknown) and whether the clock is known unsynced."""
        reading = self.clock.read()
        return reading.offset_ms, reading.synced is False

    def sample(self) -> dict[str, Any]:
        """The machine part of a telemetry message (``_clock_unsynced`` is for alarms only)."""
        net_type = self.net_type()
        dbm, operator = self.modem()
        offset, unsynced = self.chrony()
        return {"uptime_s": self.uptime_s(), "cpu_temp_c": self.cpu_temp_c(),
                "load1": self.load1(), "mem_used_pct": self.mem_used_pct(),
                "disk_free_mb": self.disk_free_mb(),
                "net": {"type": net_type, "signal_dbm": dbm, "operator": operator},
                "clock_offset_ms": offset, "_clock_unsynced": unsynced}
