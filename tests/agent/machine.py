"""A node's machine as the agent's probe reads it, built in a temporary folder: /proc/net/route
with a default route, /proc/net/wireless, /sys/class/net/<if>/{carrier,speed,statistics/...},
and the tools answering from recorded output (tests/agent/fixtures)."""
from __future__ import annotations

from pathlib import Path

from device_agent.telemetry import MachineProbe

FIXTURES = Path(__file__).parent / "fixtures"
# /proc/net/route (route(8)'s kernel table): a header, then one line per route; destination
# 00000000 is the default route, Metric the 7th column
ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def replay(**outputs: str | None):
    """A tool runner that answers from recorded output, None (as run_tool does for a missing
    or failing tool) for any command not given: ``modem``, ``signal`` and ``bearer`` for
    mmcli's three calls, else the tool's name (``iw``, ``vcgencmd``, ``chronyc``, ...)."""
    def run(argv: list[str]) -> str | None:
        if argv[0] == "mmcli":
            kind = ("signal" if "--signal-get" in argv else "bearer" if "-b" in argv
                    else "modem")
            return outputs.get(kind)
        return outputs.get(argv[0])
    return run


def machine(root: Path, route: str | None = None, sys: dict[str, str] | None = None,
            wireless: str | None = None, **outputs: str | None) -> MachineProbe:
    """A probe of a machine whose default route goes through ``route``, whose /sys/class/net
    holds ``sys`` ({"eth0/speed": "100", ...}) and /proc/net/wireless ``wireless``."""
    proc, sysfs = root / "proc", root / "sys"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    if route is not None:
        (proc / "net" / "route").write_text(
            f"{ROUTE_HEADER}\n{route}\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
    if wireless is not None:
        (proc / "net" / "wireless").write_text(wireless)
    for name, text in (sys or {}).items():
        path = sysfs / "class" / "net" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return MachineProbe(root, proc=proc, sys=sysfs, run=replay(**outputs))
