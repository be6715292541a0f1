"""``python -m schedules``: the worker process — dispatcher (APScheduler) plus the MQTT bridge."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from server.bridge import Bridge, BridgeLimits
from server.config import ConfigError, load_settings
from server.keys import active_signing_key
from server.models import init_db, make_engine, make_sessionmaker
from server.transport import MqttTransport

from .dispatcher import Dispatcher


def configure_logging() -> None:
    """The worker's log: its own lines at INFO, nothing per scheduler tick."""
    logging.basicConfig(format="%(asctime)s dispatcher %(levelname)s %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # also where handlers were already set up
    # APScheduler logs every run of a job at INFO: twice a second, 60+ MiB a day at idle
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m schedules", description=__doc__)
    ap.add_argument("--instance", default=os.environ.get("LOA_INSTANCE", "instance"))
    args = ap.parse_args(argv)
    configure_logging()
    try:
        settings = load_settings(Path(args.instance))
        engine = make_engine(settings.database_url)
        init_db(engine)
        sessions = make_sessionmaker(engine, actor="dispatcher")
        kid, key = active_signing_key(sessions, settings.signing_key_file)
    except (ConfigError, RuntimeError) as err:
        print(f"dispatcher: {err}", file=sys.stderr)
        return 2
    transport = MqttTransport(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                              settings.mqtt_password, client_id=settings.mqtt_username,
                              tls=settings.mqtt_tls, ca_file=settings.ca_file or None)
    bridge = Bridge(sessions, transport, settings.topic_prefix,
                    limits=BridgeLimits.from_settings(settings), tz=settings.timezone)
    bridge.start()
    dispatcher = Dispatcher(settings, sessions, transport, key, kid)
    dispatcher.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.info("dispatcher running (broker %s:%s)", settings.mqtt_host, settings.mqtt_port)
    stop.wait()
    dispatcher.stop()
    bridge.stop()
    transport.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
