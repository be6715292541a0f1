"""``loa-agent-launcher --config FILE [--confirm-s N] [--max-starts N] [agent options]``: the
process systemd starts on a node. It starts the agent (``python -m device_agent``) from the
release ``<state_dir>/releases/current`` names (absent: the installed package; the release's
folder comes first on the agent's ``sys.path``), starts it again
when it exits with ``RESTART_EXIT`` (an update switched versions), and restores the previous
version by itself when a version just switched to crashes ``--max-starts`` times or does not
confirm itself healthy within ``--confirm-s`` seconds of the switch (update.py). The restored
version reports the rollback (ack ``failed``, reason ``rolled_back``).

Any other exit of the agent ends the launcher with the agent's code (systemd's ``Restart=``
starts it again); SIGTERM and SIGINT are passed to the agent, and the launcher ends with it.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .config import ConfigError, load_config
from .update import LAUNCHER_ENV, RESTART_EXIT, Pending, Releases

log = logging.getLogger("device_agent.launcher")

CONFIRM_S = 120.0
MAX_STARTS = 3
POLL_S = 0.2
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Decision:
    rollback: bool
    reason: str = ""


def decide(current: str | None, pending: Pending | None, now_ms: int, *, max_starts: int,
           confirm_s: float) -> Decision:
    """Before each start: start ``current``, or first roll the pending update back."""
    if pending is None:
        return Decision(False)
    if pending.version != current:
        return Decision(True, f"the switch to {pending.version} did not complete")
    if pending.attempts >= max_starts:
        return Decision(True, f"{pending.version} did not confirm itself healthy in "
                              f"{pending.attempts} starts")
    if now_ms - pending.since_ms >= confirm_s * 1000:
        return Decision(True, f"{pending.version} did not confirm itself healthy within "
                              f"{confirm_s:g} s")
    return Decision(False)


def overdue(pending: Pending | None, now_ms: int, confirm_s: float) -> bool:
    """While the agent runs: its confirmation window has passed (the launcher stops it)."""
    return pending is not None and now_ms - pending.since_ms >= confirm_s * 1000


RELEASE_ENV = "LOA_AGENT_RELEASE"
# The agent's entry point with the release first on sys.path: before the working directory
# and PYTHONPATH, which `python -m` would put first (a checkout as the cwd would win).
BOOT = ("import os, sys\n"
        f"release = os.environ.pop({RELEASE_ENV!r}, '')\n"
        "if release:\n"
        "    sys.path.insert(0, release)\n"
        "from device_agent.__main__ import main\n"
        "sys.exit(main())\n")


def child_env(releases: Releases, version: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # systemd's watchdog names the launcher's PID; the agent, its child, is the one that pings
    # it (the unit's NotifyAccess=all lets it): without this it would keep silent
    env.pop("WATCHDOG_PID", None)
    env[LAUNCHER_ENV] = str(releases.root)
    env.pop(RELEASE_ENV, None)
    if version is not None:
        env[RELEASE_ENV] = str(releases.path(version))
    return env


class Launcher:
    def __init__(self, releases: Releases, agent_argv: list[str], *, confirm_s: float,
                 max_starts: int):
        self.releases = releases
        self.agent_argv = agent_argv
        self.confirm_s, self.max_starts = confirm_s, max_starts
        self.stopping: int | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        while True:
            now = int(time.time() * 1000)
            current, pending = self.releases.current(), self.releases.pending()
            decision = decide(current, pending, now, max_starts=self.max_starts,
                              confirm_s=self.confirm_s)
            if decision.rollback and pending is not None:
                self.releases.rollback(pending, decision.reason)
                continue
            if pending is not None:
                pending.attempts += 1
                self.releases.write_pending(pending)
            code = self._run_once(current)
            if self.stopping is not None:
                return code if code >= 0 else 0
            if code == RESTART_EXIT:
                continue
            if self.releases.pending() is not None:
                log.error("agent %s ended with %s before confirming itself", current, code)
                continue
            return code

    def _run_once(self, version: str | None) -> int:
        argv = [sys.executable, "-c", BOOT, *self.agent_argv]
        log.info("starting agent %s", version or "(installed package)")
        self.child = subprocess.Popen(argv, env=child_env(self.releases, version))
        while True:
            try:
                return self.child.wait(POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping is None and overdue(self.releases.pending(),
                                                 int(time.time() * 1000), self.confirm_s):
                log.error("agent %s did not confirm itself in time: stopping it", version)
                self.child.terminate()
                try:
                    return self.child.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.child.kill()
                    return self.child.wait()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loa-agent-launcher",
                                description="start the LoaPhuong agent's current release and "
                                            "roll an update back when it fails",
                                epilog="other options are passed to loa-agent")
    p.add_argument("--config", required=True)
    p.add_argument("--state-dir")
    p.add_argument("--confirm-s", type=float, default=CONFIRM_S,
                   help="how long a new version has to confirm itself healthy (default 120)")
    p.add_argument("--max-starts", type=int, default=MAX_STARTS,
                   help="starts of a new version before it is rolled back (default 3)")
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, state_dir=args.state_dir)
    except ConfigError as err:
        print(f"loa-agent-launcher: {err}", file=sys.stderr)
        return 2
    agent_argv = ["--config", args.config, *rest]
    if args.state_dir:
        agent_argv += ["--state-dir", args.state_dir]
    launcher = Launcher(Releases(Path(config.state_dir)), agent_argv,
                        confirm_s=args.confirm_s, max_starts=args.max_starts)
    signal.signal(signal.SIGTERM, launcher.on_signal)
    signal.signal(signal.SIGINT, launcher.on_signal)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
