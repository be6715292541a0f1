"""Health readings from the machine itself for the telemetry message: uptime, CPU temperature,
load, memory, disk, the network (the default route's interface and type; Wi-Fi's SSID, signal
and bitrate from ``iw``; Ethernet's speed and carrier from /sys), the 4G modem (ModemManager's
``mmcli -J``: state, access technology, registration, operator, signal quality, RSRP/RSRQ/SINR,
data used on its bearer, else the kernel's byte counters of its interface), under-voltage and
throttling (``vcgencmd get_throttled`` on a Raspberry Pi), clock offset and sync state (chrony,
else systemd's timedatectl). A value that cannot be read is None (null on the wire), never made
up: a missing tool, a tool that fails, and output that does not parse all give None.

The parsers are pure functions; ``MachineProbe`` reads /proc, /sys and the tools, with the
roots overridable so tests can point it at a fake tree. The clock is read through a
``ClockSource`` (``SystemClock`` on a real machine, ``FixedClock`` in tests).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Protocol

from .schemas import AlarmCode, BytesSince, NetType

TOOL_TIMEOUT_S = 3
DISK_LOW_MB = 200
OVERHEAT_C = 80.0
CLOCK_JUMP_MS = 5_000  # the wall clock stepped this far against the monotonic one: `clock_jump`


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


def interface_type(name: str) -> NetType | None:
    """The kind of link from a Linux interface name; None for one we cannot tell."""
    if name.startswith(("wwan", "ppp", "usb")):
        return NetType.CELLULAR
    if name.startswith("wl"):
        return NetType.WIFI
    if name.startswith("e"):
        return NetType.ETHERNET
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


# --- ModemManager --------------------------------------------------------------------------
# ``mmcli -J`` (mmcli(8), --output-json) prints one object, {"modem": {...}}, the key-value
# output's dotted keys nested; every leaf is a string and "--" stands for a value the modem does
# not give. ``mmcli -J -m any`` holds modem.generic.state ("registered", "connected",
# "searching", "disabled", ...), modem.generic.access-technologies (a list: ["lte"]),
# modem.generic.signal-quality.value (percent), modem.3gpp.operator-name and
# modem.3gpp.registration-state ("home", "roaming", "searching", "denied", "idle", ...).
# ``mmcli -J -m any --signal-get`` holds modem.signal.<tech>.<measure> in dBm or dB, "--" until
# polling is enabled with ``--signal-setup=SECONDS`` (the systemd unit does it at start).

# 3GPP registration states in which the modem can carry data (ModemManager's
# MMModem3gppRegistrationState); any other known state is a node cut off from its broker.
REGISTERED = frozenset({"home", "roaming", "home-csfb-not-preferred",
                        "roaming-csfb-not-preferred"})
# The states mmcli names (MMModemState, MMModem3gppRegistrationState), which the node page
# and the alerts say in the reader's words (catalogue entries mmstate.*, mmreg.*).
MM_STATES = ("failed", "unknown", "initializing", "locked", "disabled", "disabling", "enabling",
             "enabled", "searching", "registered", "disconnecting", "connecting", "connected")
MM_REGISTRATIONS = ("idle", "home", "searching", "denied", "unknown", "roaming", "home-sms-only",
                    "roaming-sms-only", "emergency-only", "home-csfb-not-preferred",
                    "roaming-csfb-not-preferred", "attached-rlos")
MODEM_FIELDS = ("modem_state", "access_tech", "registration", "operator", "signal_pct")
SIGNAL_FIELDS = ("signal_dbm", "rsrp_dbm", "rsrq_db", "sinr_db")


def _mmcli_json(text: str) -> dict[str, Any]:
    """The ``modem`` object of mmcli's JSON output; {} for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    modem = data.get("modem") if isinstance(data, dict) else None
    return modem if isinstance(modem, dict) else {}


def _leaf(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _mm_text(value: Any) -> str | None:
    if not isinstance(value, str) or value.strip() in ("", "--"):
        return None
    return value.strip()[:64]


def _mm_technologies(value: Any) -> str | None:
    """access-technologies, a list (["lte"]; ["lte", "5gnr"] on 5G NSA), comma-joined."""
    if not isinstance(value, list):
        return None
    return ",".join(t for t in map(_mm_text, value) if t is not None)[:64] or None


def _mm_number(value: Any) -> float | None:
    try:
        number = float(value) if isinstance(value, str) else None
    except ValueError:  # "--", or garbage
        return None
    return number if number is not None and abs(number) < 1e6 else None  # also NaN, inf


def parse_mmcli_modem(text: str) -> dict[str, Any]:
    """The modem's state, access technology, 3GPP registration, operator and signal quality
    (percent) from ``mmcli -J -m any``; each None where the output does not give it."""
    modem = _mmcli_json(text)
    quality = _mm_number(_leaf(modem, "generic", "signal-quality", "value"))
    return {"modem_state": _mm_text(_leaf(modem, "generic", "state")),
            "access_tech": _mm_technologies(_leaf(modem, "generic", "access-technologies")),
            "registration": _mm_text(_leaf(modem, "3gpp", "registration-state")),
            "operator": _mm_text(_leaf(modem, "3gpp", "operator-name")),
            "signal_pct": round(quality) if quality is not None and 0 <= quality <= 100
            else None}


def parse_mmcli_signal(text: str) -> dict[str, float | None]:
    """Received power in dBm (``signal_dbm``: LTE RSSI, else LTE RSRP, 5G RSRP, UMTS or GSM
    RSSI) and LTE RSRP (dBm), RSRQ (dB) and SINR (dB, mmcli's ``snr``) from
    ``mmcli -J -m any --signal-get``; each None where the output does not give it."""
    signal = _leaf(_mmcli_json(text), "signal")
    dbm = None
    for tech, measure in (("lte", "rssi"), ("lte", "rsrp"), ("5g", "rsrp"), ("umts", "rssi"),
                          ("gsm", "rssi")):
        dbm = _mm_number(_leaf(signal, tech, measure))
        if dbm is not None:
            break
    return {"signal_dbm": dbm, "rsrp_dbm": _mm_number(_leaf(signal, "lte", "rsrp")),
            "rsrq_db": _mm_number(_leaf(signal, "lte", "rsrq")),
            "sinr_db": _mm_number(_leaf(signal, "lte", "snr"))}


# A bearer (``mmcli -J -b <path>``, {"bearer": {...}}) counts the bytes of its ongoing
# connection in bearer.stats.bytes-rx/-tx ("--" where the modem gives no statistics, and for 0).
BEARER_PREFIX = "/org/freedesktop/ModemManager1/Bearer/"
DATA_FIELDS = ("rx_bytes", "tx_bytes", "bytes_since")
MAX_BEARERS = 4
COUNTER_MAX = 2 ** 53  # the server refuses larger integers: past it a counter is unknown


def _counter(value: Any) -> int | None:
    """A byte counter: digits only, below 2^53; None otherwise."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,20}", value.strip()):
        return None  # (str.isdigit also admits "²", which int() refuses)
    number = int(value.strip())
    return number if number < COUNTER_MAX else None


def mmcli_bearers(text: str) -> list[str]:
    """The modem's bearer paths (modem.generic.bearers of ``mmcli -J -m any``), at most four."""
    paths = _leaf(_mmcli_json(text), "generic", "bearers")
    if not isinstance(paths, list):
        return []
    return [p for p in paths if isinstance(p, str) and p.startswith(BEARER_PREFIX)
            and re.fullmatch(r"[0-9]{1,9}", p[len(BEARER_PREFIX):])][:MAX_BEARERS]


def mmcli_net_port(text: str) -> str | None:
    """The modem's network interface from its ports ("wwan0 (net)"), None when it lists none."""
    ports = _leaf(_mmcli_json(text), "generic", "ports")
    for port in ports if isinstance(ports, list) else ():
        m = re.fullmatch(r"([A-Za-z0-9_.-]{1,15}) \(net\)", port) if isinstance(port, str) else None
        if m:
            return m.group(1)
    return None


def parse_mmcli_bearer(text: str) -> dict[str, Any]:
    """Whether a bearer is connected, its interface, and the bytes received and sent on its
    ongoing connection, from ``mmcli -J -b <path>``; each None where the output does not say."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    bearer = data.get("bearer") if isinstance(data, dict) else None
    status = _leaf(bearer, "status")
    said = _leaf(status, "connected")
    connected = {"yes": True, "no": False}.get(said) if isinstance(said, str) else None
    interface = _mm_text(_leaf(status, "interface"))
    return {"connected": connected,
            "interface": interface if interface and re.fullmatch(r"[A-Za-z0-9_.-]{1,15}",
                                                                 interface) else None,
            "rx_bytes": _counter(_leaf(bearer, "stats", "bytes-rx")),
            "tx_bytes": _counter(_leaf(bearer, "stats", "bytes-tx"))}


def parse_counter(text: str) -> int | None:
    """A kernel counter (/sys/class/net/<if>/statistics/rx_bytes): one decimal number."""
    return _counter(text)


# --- Wi-Fi and Ethernet ----------------------------------------------------------------------
# ``iw dev <if> link`` (iw(8)) prints "Not connected." or "Connected to <bssid> (on <if>)" and
# tab-indented lines: "SSID: <ssid>" (bytes other than printable ASCII as \xNN), "freq: 2437",
# "signal: -58 dBm", "rx bitrate: 65.0 MBit/s MCS 7", "tx bitrate: 72.2 MBit/s ..." (or
# "(unknown)"). /proc/net/wireless has a line per interface, "wlan0: 0000   52.  -58.  -256 ...":
# status, link quality, signal level (dBm), noise.
LINK_FIELDS = ("iface", "carrier", "link_mbps", "ssid", "wifi_signal_dbm")
# every field of a sample's "net" (the telemetry schema's, docs/protocol.md): the interface's
# type, its link, and the modem's (``MachineProbe.sample``)
NET_FIELDS = ("type", *LINK_FIELDS, *MODEM_FIELDS, *SIGNAL_FIELDS, *DATA_FIELDS)
LINK_MBPS_MAX = 1_000_000


def _dbm(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if -150 <= value < 0 else None  # a level that is not dBm is not one


def _iw_ssid(escaped: str) -> str | None:
    """The SSID as iw printed it, its \\xNN escapes decoded where they are UTF-8 text."""
    if not escaped or len(escaped) > 32 * 4 or not (escaped.isascii() and escaped.isprintable()):
        return None  # iw prints printable ASCII only
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                 escaped.encode("ascii"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return escaped
    return text if text.isprintable() else escaped


def parse_iw_link(text: str) -> dict[str, Any]:
    """SSID, signal (dBm) and transmit bitrate (Mbit/s) of a Wi-Fi link from ``iw dev <if>
    link``; all None when it is not connected or the text is not that output."""
    out: dict[str, Any] = {"ssid": None, "wifi_signal_dbm": None, "link_mbps": None}
    lines = text.splitlines()
    if not lines or not re.match(r"Connected to [0-9a-fA-F:]{17}\b", lines[0]):
        return out
    for line in lines[1:]:
        key, sep, value = line.strip().partition(": ")
        if not sep:
            continue
        if key == "SSID":
            out["ssid"] = _iw_ssid(value)
        elif key == "signal":
            m = re.fullmatch(r"(-?[0-9]{1,3})(?: \[[-0-9, ]*\])? dBm", value.strip())
            out["wifi_signal_dbm"] = _dbm(m.group(1)) if m else None
        elif key == "tx bitrate":
            m = re.match(r"([0-9]{1,7}(?:\.[0-9])?) MBit/s", value.strip())
            rate = float(m.group(1)) if m else None
            out["link_mbps"] = rate if rate and rate <= LINK_MBPS_MAX else None
    return out


def parse_proc_net_wireless(text: str, iface: str) -> float | None:
    """The signal level (dBm) of ``iface`` in /proc/net/wireless."""
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and name.strip() == iface and len(fields) >= 3:
            return _dbm(fields[2].rstrip("."))
    return None


def parse_link_speed(text: str) -> int | None:
    """An Ethernet link's speed in Mbit/s (/sys/class/net/<if>/speed); -1 (unknown) is None."""
    value = text.strip()
    if not re.fullmatch(r"[0-9]{1,10}", value):
        return None
    speed = int(value)
    return speed if 0 < speed <= LINK_MBPS_MAX else None


def parse_carrier(text: str) -> bool | None:
    """Whether the link has a carrier (/sys/class/net/<if>/carrier: 1 or 0)."""
    return {"1": True, "0": False}.get(text.strip())


# --- Raspberry Pi power ---------------------------------------------------------------------
# ``vcgencmd get_throttled`` (Raspberry Pi documentation, "vcgencmd") prints
# ``throttled=0x50005``: a bit field; bits 0-3 hold now, bits 16-19 have held since boot.
THROTTLED_BITS = {"under_voltage": 0, "freq_capped": 1, "throttled": 2, "soft_temp_limit": 3,
                  "under_voltage_since_boot": 16, "freq_capped_since_boot": 17,
                  "throttled_since_boot": 18, "soft_temp_limit_since_boot": 19}


def parse_get_throttled(text: str) -> dict[str, bool | None]:
    """Under-voltage, frequency capping, throttling and the soft temperature limit, now and
    since boot, from ``vcgencmd get_throttled``; all None when the text is not that line."""
    m = re.fullmatch(r"\s*throttled=0x([0-9a-fA-F]{1,8})\s*", text)
    if not m:
        return dict.fromkeys(THROTTLED_BITS)
    bits = int(m.group(1), 16)
    return {name: bool(bits >> bit & 1) for name, bit in THROTTLED_BITS.items()}


def health_alarms(sample: Mapping[str, Any], active: frozenset[str],
                  ) -> tuple[frozenset[str], list[tuple[str, str]]]:
    """Alarm codes that hold for ``sample``, and the (code, detail) pairs newly raised since
    ``active`` (an alarm is raised once when its condition starts, again only after it ended).
    Nothing unknown raises one: a null reading is no evidence either way."""
    now: dict[str, str] = {}
    disk = sample.get("disk_free_mb")
    if disk is not None and disk < DISK_LOW_MB:
        now[AlarmCode.DISK_LOW] = f"{disk} MB free in the state directory"
    temp = sample.get("cpu_temp_c")
    if temp is not None and temp >= OVERHEAT_C:
        now[AlarmCode.OVERHEAT] = f"CPU at {temp} °C"
    if sample.get("_clock_unsynced"):
        now[AlarmCode.CLOCK_UNSYNCED] = "the clock is not synchronised (chrony or timedatectl)"
    power = sample.get("power") or {}
    if power.get("under_voltage"):
        now[AlarmCode.UNDER_VOLTAGE] = "the supply voltage is too low now (vcgencmd get_throttled)"
    net = sample.get("net") or {}
    registration = net.get("registration")
    if registration is not None and registration not in REGISTERED:
        now[AlarmCode.MODEM_UNREGISTERED] = (
            f"the 4G modem is not registered: {registration} "
            f"(modem {net.get('modem_state') or 'state unknown'})")
    raised = [(code, detail) for code, detail in now.items() if code not in active]
    return frozenset(now), raised


class ClockJumps:
    """Steps of the wall clock, seen against the monotonic clock (which no one sets): a node
    whose clock jumps (a failing RTC, an NTP server far off, a person setting it) plays its
    schedule at wrong times, so the step is an alarm a person must look into. Slewing (what
    NTP does once in step) never comes near ``threshold_ms``."""

    def __init__(self, threshold_ms: int = CLOCK_JUMP_MS):
        self.threshold_ms = threshold_ms
        self._skew: int | None = None

    def check(self, wall_ms: int, monotonic_ms: int) -> int | None:
        """The step in ms (positive: forward) since the last call when it passes the
        threshold, else None."""
        skew = wall_ms - monotonic_ms
        last, self._skew = self._skew, skew
        if last is None or abs(skew - last) < self.threshold_ms:
            return None
        return skew - last


def clock_jump_detail(step_ms: int) -> str:
    """The ``clock_jump`` alarm's detail: how far, which way."""
    return (f"the clock jumped {'forward' if step_ms > 0 else 'back'} by {abs(step_ms) // 1000} s "
            "(wall clock against the monotonic clock); slots are judged by the new time")


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

    def net_iface(self) -> str | None:
        """The interface of the default route, else the first one up (not lo)."""
        route = self._read(self.proc / "net" / "route")
        name = default_route_interface(route) if route else None
        if name is None:
            for iface in sorted((self.sys / "class" / "net").glob("*")):
                if iface.name == "lo":
                    continue
                if (self._read(iface / "operstate") or "").strip() == "up":
                    name = iface.name
                    break
        return name if name and re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name) else None

    def net_type(self) -> str | None:
        name = self.net_iface()
        return interface_type(name) if name else None

    def _sys_net(self, iface: str, *parts: str) -> str | None:
        return self._read(self.sys.joinpath("class", "net", iface, *parts))

    def link(self, iface: str | None) -> dict[str, Any]:
        """LINK_FIELDS of the interface in use: its carrier; Ethernet's speed; Wi-Fi's SSID,
        signal and transmit bitrate (``iw``, else /proc/net/wireless for the signal)."""
        out: dict[str, Any] = dict.fromkeys(LINK_FIELDS)
        if iface is None:
            return out
        out["iface"] = iface
        text = self._sys_net(iface, "carrier")
        out["carrier"] = parse_carrier(text) if text is not None else None
        kind = interface_type(iface)
        if kind == NetType.ETHERNET:
            text = self._sys_net(iface, "speed")
            out["link_mbps"] = parse_link_speed(text) if text is not None else None
        elif kind == NetType.WIFI:
            text = self.run(["iw", "dev", iface, "link"])
            if text is not None:
                out.update(parse_iw_link(text))
            if out["wifi_signal_dbm"] is None:
                text = self._read(self.proc / "net" / "wireless")
                out["wifi_signal_dbm"] = parse_proc_net_wireless(text, iface) if text else None
        return out

    def counters(self, iface: str | None) -> dict[str, Any]:
        """DATA_FIELDS from the kernel's counters of ``iface`` (since it appeared: boot)."""
        if iface is None:
            return dict.fromkeys(DATA_FIELDS)
        rx, tx = (self._sys_net(iface, "statistics", name) for name in ("rx_bytes", "tx_bytes"))
        rx_bytes = parse_counter(rx) if rx is not None else None
        tx_bytes = parse_counter(tx) if tx is not None else None
        known = rx_bytes is not None and tx_bytes is not None
        return {"rx_bytes": rx_bytes if known else None, "tx_bytes": tx_bytes if known else None,
                "bytes_since": BytesSince.BOOT if known else None}

    def modem(self, route_iface: str | None = None) -> dict[str, Any]:
        """The modem's part of ``net`` (MODEM_FIELDS, SIGNAL_FIELDS and DATA_FIELDS), None where
        unknown. Data used: the connected bearer's bytes of its ongoing connection
        (ModemManager), else the kernel's counters of the modem's interface (the bearer's, its
        net port, or the default route's when that is a 4G one)."""
        status = self.run(["mmcli", "-J", "-m", "any"])
        out: dict[str, Any] = dict.fromkeys(MODEM_FIELDS + SIGNAL_FIELDS + DATA_FIELDS)
        cellular = route_iface and interface_type(route_iface) == NetType.CELLULAR
        fallback = route_iface if cellular else None
        if status is None:  # no ModemManager, or no modem
            out.update(self.counters(fallback))
            return out
        out.update(parse_mmcli_modem(status))
        signal = self.run(["mmcli", "-J", "-m", "any", "--signal-get"])
        if signal is not None:
            out.update(parse_mmcli_signal(signal))
        fallback = mmcli_net_port(status) or fallback
        for path in mmcli_bearers(status):
            text = self.run(["mmcli", "-J", "-b", path])
            bearer = parse_mmcli_bearer(text) if text is not None else {}
            if not bearer.get("connected"):
                continue
            if bearer["rx_bytes"] is not None and bearer["tx_bytes"] is not None:
                out.update(rx_bytes=bearer["rx_bytes"], tx_bytes=bearer["tx_bytes"],
                           bytes_since=BytesSince.CONNECTED)
                return out
            fallback = bearer["interface"] or fallback
            break
        out.update(self.counters(fallback))
        return out

    def power(self) -> dict[str, bool | None]:
        text = self.run(["vcgencmd", "get_throttled"])
        return parse_get_throttled(text) if text is not None else dict.fromkeys(THROTTLED_BITS)

    def chrony(self) -> tuple[int | None, bool]:
        """Clock offset in ms (None when unknown) and whether the clock is known unsynced."""
        reading = self.clock.read()
        return reading.offset_ms, reading.synced is False

    def sample(self) -> dict[str, Any]:
        """The machine part of a telemetry message (``_clock_unsynced`` is for alarms only)."""
        iface = self.net_iface()
        offset, unsynced = self.chrony()
        return {"uptime_s": self.uptime_s(), "cpu_temp_c": self.cpu_temp_c(),
                "load1": self.load1(), "mem_used_pct": self.mem_used_pct(),
                "disk_free_mb": self.disk_free_mb(),
                "net": {"type": interface_type(iface) if iface else None, **self.link(iface),
                        **self.modem(iface)},
                "power": self.power(),
                "clock_offset_ms": offset, "_clock_unsynced": unsynced}
