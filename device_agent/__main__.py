"""``python -m device_agent --config FILE`` (the ``loa-agent`` console script): run the speaker
node agent until SIGINT or SIGTERM, then stop cleanly (``online: false`` before disconnecting).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from . import __version__
from .config import PLAYER_KINDS, ConfigError, load_config
from .watchdog import Notifier


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loa-agent", description="LoaPhuong speaker node agent")
    p.add_argument("--config", required=True, help="the agent's TOML config file")
    p.add_argument("--state-dir", help="override state_dir (replay memory, outbox, media cache)")
    p.add_argument("--player", choices=PLAYER_KINDS, help="override player.kind")
    p.add_argument("--sink-dir", help="override player.sink_dir (for --player file)")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .agent import Agent  # after logging is set up

    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %s: stopping", signal.Signals(signum).name)
        done.set()

    # before start(): the agent is online (and may be told to stop) as soon as it connects
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        config = load_config(args.config, state_dir=args.state_dir, player=args.player,
                             sink_dir=args.sink_dir)
        agent = Agent(config)
        agent.start()
    except ConfigError as err:
        print(f"loa-agent: {err}", file=sys.stderr)
        return 2
    # systemd (Type=notify, WatchdogSec): ready once running, then pinged while the worker turns
    # (under loa-agent-launcher too: it passes the watchdog on, and the unit has
    # NotifyAccess=all)
    notifier = Notifier()
    notifier.ready(f"node {config.node_id}")
    while not done.wait(0.2) and agent.exit_code is None:
        notifier.ping_if_due(agent.alive())
    notifier.stopping()
    agent.stop()
    notifier.close()
    return agent.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())
