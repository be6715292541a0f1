"""``python -m schedules``: the worker process — dispatcher (APScheduler) plus the MQTT bridge.

Two of them may run (on one machine or two, on one database): the one holding the database
lease ``dispatcher`` (server.lease) connects to the broker, ingests what nodes report and does
every duty of the dispatcher; the other only tries to take the lease, every ``lease_renew_s``,
and takes over within ``lease_ttl_s + lease_renew_s`` of the first dying. Both use the one
broker account, whose client id is its name: the holder's persistent session keeps what nodes
send while nobody is connected, and the next holder resumes it.

``python -m schedules --bridge-only N`` (1 <= N <= ``bridge_workers``) is a bridge worker: it
only records what nodes send on telemetry and events, beside the dispatcher, through the MQTT
shared subscription ``$share/<bridge_shared_group>/...`` (the broker hands each message to one
member), as broker account ``<mqtt_username>-bridge-N`` with a persistent session of its own.
It needs no lease: any number run at once (docs/scaling.md)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from server.bridge import SHARED_KINDS, Bridge, BridgeLimits
from server.config import ConfigError, Settings, load_settings
from server.heap import settle
from server.keys import active_signing_key
from server.lease import LeaseKeeper, lease_sessions
from server.mosquitto import bridge_accounts
from server.models import init_db, make_engine, make_sessionmaker
from server.transport import MqttTransport

from .dispatcher import Dispatcher


def not_an_overlapping_run(record: logging.LogRecord) -> bool:
    """A log filter: APScheduler's "skipped: maximum number of running instances reached" is
    left out. Every job of the worker runs one at a time on purpose (max_instances=1,
    coalesce): a run that falls due while the last still runs is skipped as designed, and at
    WARNING it was a line a tick whenever a tick took longer than the interval (a busy
    machine)."""
    return "maximum number of running instances reached" not in str(record.msg)


def configure_logging() -> None:
    """The worker's log: its own lines at INFO, nothing per scheduler tick."""
    logging.basicConfig(format="%(asctime)s dispatcher %(levelname)s %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # also where handlers were already set up
    # APScheduler logs every run of a job at INFO: twice a second, 60+ MiB a day at idle
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(not_an_overlapping_run)  # once


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m schedules", description=__doc__)
    ap.add_argument("--instance", default=os.environ.get("LOA_INSTANCE", "instance"))
    ap.add_argument("--bridge-only", type=int, metavar="N",
                    help="run bridge worker N (1..bridge_workers) instead of the dispatcher")
    args = ap.parse_args(argv)
    configure_logging()
    try:
        settings = load_settings(Path(args.instance))
        engine = make_engine(settings.database_url, settings.database_busy_timeout_s)
        init_db(engine)
        sessions = make_sessionmaker(engine, actor="dispatcher")
        # a bridge worker signs nothing: it needs no signing key (nor may read one)
        kid, key = active_signing_key(sessions, settings.signing_key_file) \
            if args.bridge_only is None else ("", None)
    except (ConfigError, RuntimeError) as err:
        print(f"dispatcher: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # once, before either kind of process starts its work (not at each lease taken: what a
    # lost lease's worker leaves behind must stay collectable)
    settle()
    if key is None:
        return bridge_worker(settings, sessions, args.bridge_only or 0, stop)
    worker = Worker(settings, sessions, key, kid)
    # the renewal on a connection of its own, and the rest of the process gives way to it
    # (server.lease): a busy dispatcher keeps its lease
    lease = LeaseKeeper(lease_sessions(settings.database_url,
                                       min(settings.lease_renew_s,
                                           settings.database_busy_timeout_s)),
                        "dispatcher", settings.lease_ttl_s, settings.lease_renew_s,
                        on_acquired=worker.act, on_lost=worker.stand_by)
    lease.give_way(sessions)
    worker.acting = lease.acting
    logging.info("dispatcher %s running (broker %s:%s), acting once it holds the lease",
                 lease.holder, settings.mqtt_host, settings.mqtt_port)
    lease.start()
    stop.wait()
    lease.stop()  # stops acting, and gives the lease to a standby at once
    return 0


def bridge_worker(settings: Settings, sessions: sessionmaker[Session], number: int,
                  stop: threading.Event) -> int:
    """Bridge worker ``number`` until ``stop``: telemetry and events through the shared
    subscription, each message confirmed to the broker once written. A worker killed with
    messages unconfirmed gets them again when it comes back (Mosquitto keeps them in its
    session, it does not hand them to another member): run it under systemd, Restart=always."""
    s = settings
    if not s.bridge_shared_group or not 1 <= number <= s.bridge_workers:
        print(f"bridge worker: --bridge-only {number}: needs bridge_shared_group and "
              f"1 <= N <= bridge_workers ({s.bridge_workers})", file=sys.stderr)
        return 2
    user = bridge_accounts(s.mqtt_username, s.bridge_workers)[number - 1]
    transport = MqttTransport(s.mqtt_host, s.mqtt_port, user, s.mqtt_password, client_id=user,
                              tls=s.mqtt_tls, ca_file=s.ca_file or None, connect=False)
    bridge = Bridge(sessions, transport, s.topic_prefix, limits=BridgeLimits.from_settings(s),
                    tz=s.timezone, shared_group=s.bridge_shared_group, kinds=SHARED_KINDS)
    bridge.start()
    transport.connect()  # the handlers are there before the session's kept messages come
    logging.info("bridge worker %s running (broker %s:%s, group %s)", user, s.mqtt_host,
                 s.mqtt_port, s.bridge_shared_group)
    stop.wait()
    bridge.stop()     # what was received is written and confirmed; what comes after is not,
    transport.stop()  # and the session gets it again at the next start (stored once)
    logging.info("bridge worker %s stopped: %d messages received", user, bridge.received)
    return 0


class Worker:
    """What the lease holder runs: the broker connection, the bridge and the dispatcher's
    duties; ``act`` starts them when the lease is taken, ``stand_by`` ends them when it is lost
    (first the broker connection, so nothing more is published, then the duties, then the
    bridge, which writes what it had received)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 key: Ed25519PrivateKey, kid: str):
        self.settings, self.sessions, self.key, self.kid = settings, sessions, key, kid
        self.acting: Callable[[], bool] = lambda: True
        self.transport: MqttTransport | None = None
        self.bridge: Bridge | None = None
        self.dispatcher: Dispatcher | None = None

    def act(self) -> None:
        s = self.settings
        # the bridge subscribes before the connection opens: the resumed session hands over
        # what nodes sent while no holder was connected right after the CONNACK, and a message
        # that came before its handler was registered would be confirmed and lost
        self.transport = MqttTransport(s.mqtt_host, s.mqtt_port, s.mqtt_username,
                                       s.mqtt_password, client_id=s.mqtt_username,
                                       tls=s.mqtt_tls, ca_file=s.ca_file or None,
                                       connect=False)
        self.bridge = Bridge(self.sessions, self.transport, s.topic_prefix,
                             limits=BridgeLimits.from_settings(s), tz=s.timezone,
                             shared_group=s.bridge_shared_group)
        self.bridge.start()
        self.transport.connect()
        self.dispatcher = Dispatcher(s, self.sessions, self.transport, self.key, self.kid)
        self.dispatcher.acting = self.acting
        self.dispatcher.busy = self.bridge.behind
        self.dispatcher.start()

    def stand_by(self) -> None:
        if self.transport is not None:
            self.transport.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.bridge is not None:
            self.bridge.stop()
        self.transport, self.bridge, self.dispatcher = None, None, None


if __name__ == "__main__":
    sys.exit(main())
