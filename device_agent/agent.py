"""The speaker node agent: the imperative shell around rules.py (PROTOCOL.md, node side).

Threads: paho's network loop (transport.py) only hands messages over; one worker thread owns all
state (the waiting line, volume, keys, desired state) and does every check, decision and report;
a player thread per play, a media fetcher, and a telemetry timer post their results back to the
worker's inbox. Everything that must outlive a restart is in state_dir (store.py, media cache).
"""
from __future__ import annotations

import json
import logging
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import __version__
from .amp import AmpError, Amplifier, make_amplifier
from .amp_control import AmpControl
from .config import AgentConfig, ConfigError
from .media import Fetcher, MediaCache, MediaError
from .player import (
    Cancel,
    Interruption,
    NoPlayerError,
    Player,
    PlayOutcome,
    PlayRequest,
    make_player,
    make_tone,
)
from .protocol import (
    AckStatus,
    AlarmCode,
    CommandType,
    EventType,
    HornTest,
    HornVerdict,
    NodeReason,
    PlayResult,
    ProtocolError,
    RejectReason,
    TopicKind,
    envelope_json,
    group_topic,
    load_public_key,
    make_event,
    node_topic,
    parse_topic,
    verify_envelope,
)
from .rules import (
    ItemKind,
    KeyChangeRefused,
    KeyState,
    QueueItem,
    apply_key_change,
    command_ready_at,
    effective_volume,
    in_quiet_hours,
    plan,
    stop_targets,
    trusted_keys,
)
from .selftest import (
    ACOUSTIC_ITEM,
    AcousticSelfTest,
    Limits,
    Recorder,
    Verdict,
    make_recorder,
    verdict_of,
)
from .store import StateStore
from .telemetry import ClockJumps, MachineProbe, clock_jump_detail, health_alarms
from .transport import Incoming, MqttTransport
from .update import RESTART_EXIT, Updater

log = logging.getLogger(__name__)

Envelope = dict[str, Any]   # a verified envelope (protocol.verify_envelope)

AGENT_VERSION = __version__
DEFAULT_VOLUME = 80
TEST_PRIORITY = 3             # a test tone waits like a normal bulletin, it never preempts one
TONE_HZ, TONE_S = 1000, 1.5
MEDIA_RETRY_MS = 60_000       # a slot's media that could not be downloaded is tried again
REBOOT_GRACE_MS = 10_000      # time for the reboot's `received` ack to reach the broker
PURGE_EVERY_MS = 60_000
SLOT_MEMORY_MS = 7 * 24 * 3600 * 1000
PLAYER_JOIN_S = 5.0
# A clean stop's steps (the worker and player, the outbox, the offline state, the threads) take
# at most this long together, whatever each step's own bound: the unit's TimeoutStopSec (20 s)
# kills what is left, and each step bounded alone added up to about 19 s
STOP_BUDGET_S = 14.0
OFFLINE_S = 1.0  # what the retained offline state may wait for however the budget went: a clean
# disconnect sends no Last Will, so without it the server would see the node online
PLAYER_FAILING_AFTER = 3      # plays failed in the player in a row that raise `player_failing`
MAX_WAIT_S = 1.0
# the worker wakes at least every MAX_WAIT_S; silent this long, it hangs (no watchdog ping)
WORKER_STALE_S = 20.0

# a command's last ack, by how its play ended
ACK_FOR_RESULT = {PlayResult.COMPLETED: AckStatus.FINISHED,
                  PlayResult.PREEMPTED: AckStatus.PREEMPTED, PlayResult.STOPPED: AckStatus.STOPPED,
                  PlayResult.FAILED: AckStatus.FAILED, PlayResult.SKIPPED: AckStatus.SKIPPED}


class Inbox(StrEnum):
    """What the agent's one worker thread is told (its inbox: every other thread only puts)."""
    MQTT = "mqtt"              # a message arrived
    PUBLISHED = "published"    # the broker has one of ours (PUBACK)
    CONNECTED = "connected"
    FETCHED = "fetched"        # a media download ended
    PLAY_DONE = "play_done"
    ALARMS = "alarms"
    UPDATE = "update"          # an agent update's install ended
    STOP = "stop"
    TICK = "tick"              # nothing came within the wait: time alone moves things


class MediaState(StrEnum):
    """Where a media file the agent needs stands (a failed one is a _MediaFailure)."""
    FETCHING = "fetching"
    READY = "ready"


@dataclass
class _MediaFailure:
    reason: str
    detail: str
    at: int


@dataclass
class _Playing:
    item: QueueItem
    token: int
    cancel: Cancel
    since: int                      # first repetition's start
    rep_started: int
    reps_done: int = 0
    thread: threading.Thread | None = None
    outcome: PlayOutcome | None = None
    ended_at: int | None = None


@dataclass
class _Reboot:
    cmd_id: str
    deadline: int


def _configured_player(config: AgentConfig) -> Player:
    try:
        return make_player(config.player.kind, config.player.sink_dir, config.player.realtime)
    except NoPlayerError as err:
        raise ConfigError("player.kind", str(err)) from None


class Agent:
    """One speaker node. ``start()`` returns once the threads run (the broker may still be
    unreachable: the node then plays its schedule alone); ``stop()`` ends playback, flushes
    events for a moment, publishes ``online: false`` and disconnects.

    The constructor builds every collaborator (player, amplifier, state store, media cache,
    fetcher, broker connection, threads; ConfigError when the configured player is missing);
    ``start()`` only restores the state and sets them running, once per Agent.
    ``player`` and ``amplifier`` default to what the config names; tests pass doubles.
    ``clock`` returns Unix seconds (``time.time``).
    """

    def __init__(self, config: AgentConfig, *, player: Player | None = None,
                 amplifier: Amplifier | None = None, clock: Callable[[], float] = time.time,
                 probe: MachineProbe | None = None, recorder: Recorder | None = None):
        self.config = config
        self._clock = clock
        self._prefix = config.topic_prefix
        node = config.node_id
        self.topics = {kind: node_topic(self._prefix, node, kind) for kind in TopicKind}
        self._inbox: queue.Queue[tuple[Inbox, Any]] = queue.Queue()
        self._stopping = threading.Event()
        # held while telemetry or the offline state goes out: none follows, or is newer than,
        # the offline state
        self._last_word = threading.Lock()
        self._started = False
        self._ran = False
        # collaborators: everything the threads use exists before start()
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.player: Player = player if player is not None else _configured_player(config)
        self.amplifier: Amplifier = amplifier if amplifier is not None else make_amplifier(
            config.amp)
        self._amp = AmpControl(self.amplifier, lead_ms=config.amp.lead_ms,
                               idle_off_s=config.amp.idle_off_s,
                               alarm=lambda detail: self._inbox.put(
                                   (Inbox.ALARMS, [(AlarmCode.AMP_FAULT, detail)])),
                               clock=self.now_ms)
        self._probe: MachineProbe = probe or MachineProbe(state_dir)
        self._store = StateStore(state_dir / "agent.sqlite")
        self.cache = MediaCache(state_dir / "media", config.fetch_timeout_s)
        self._tone = state_dir / "test-tone.wav"
        self._acoustic = AcousticSelfTest(
            self.player, recorder or make_recorder(config.mic.device), state_dir,
            limits=Limits(min_level_dbfs=config.mic.min_level_dbfs))
        self._fetcher = Fetcher(self.cache, lambda sha, err: self._inbox.put((Inbox.FETCHED,
                                                                                (sha, err))))
        self._transport = MqttTransport(
            config.mqtt, node, will_topic=self.topics[TopicKind.STATE],
            will_payload=json.dumps({"v": 1, "online": False}, separators=(",", ":")),
            on_connect=self._on_connect, on_message=lambda m: self._inbox.put((Inbox.MQTT, m)),
            on_published=lambda mid: self._inbox.put((Inbox.PUBLISHED, mid)))
        self.exit_code: int | None = None  # set when the agent asks its process to end
        self._updater = Updater(
            state_dir, running=AGENT_VERSION, node_id=node, prefix=self._prefix,
            ack=self._ack, post=lambda result: self._inbox.put((Inbox.UPDATE, result)),
            keys=lambda: self._keys, request_restart=lambda: self._request_exit(RESTART_EXIT),
            clock_ms=self.now_ms, idle=lambda: self._playing is None,
            timeout_s=config.fetch_timeout_s)
        self._worker = threading.Thread(target=self._run, name="loa-agent", daemon=True)
        self._telemetry = threading.Thread(target=self._telemetry_loop, name="loa-telemetry",
                                           daemon=True)
        # what the worker does with each kind of inbox message, and with each envelope type
        self._inbox_handlers: dict[Inbox, Callable[[Any], None]] = {
            Inbox.MQTT: self._on_mqtt, Inbox.PUBLISHED: self._on_published,
            Inbox.CONNECTED: self._on_connected, Inbox.FETCHED: self._on_fetched,
            Inbox.PLAY_DONE: self._on_play_done, Inbox.ALARMS: self._on_alarms,
            Inbox.UPDATE: self._updater.installed,
        }
        self._commands: dict[str, Callable[[Envelope, int], None]] = {
            CommandType.DESIRED: self._apply_desired, CommandType.PLAY: self._queue_command,
            CommandType.TEST: self._queue_command, CommandType.STOP: self._stop_command,
            CommandType.SET_VOLUME: self._set_volume, CommandType.AMP: self._amp_command,
            CommandType.REBOOT: self._reboot_command, CommandType.KEYS: self._keys_command,
            CommandType.UPDATE: self._updater.command,
        }
        # worker-owned state
        self._waiting: list[QueueItem] = []
        self._playing: _Playing | None = None
        self._media: dict[str, MediaState | _MediaFailure] = {}
        self._seq = 0
        self._token = 0
        self._wake_at: int | None = None
        self._last_purge = 0
        self._reboot: _Reboot | None = None
        self._handed: dict[str, int] = {}       # event id -> paho mid, for this process
        self._mid_event: dict[int, str] = {}
        self._groups: tuple[str, ...] = tuple(config.groups)
        self._volume = DEFAULT_VOLUME
        self._desired: dict[str, Any] | None = None
        self._unreported: set[str] = set()     # media of the desired state not yet reported
        self._quiet: list[Mapping[str, str]] = []
        self._tz = ZoneInfo(config.tz)
        self._key_state = KeyState()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._active_alarms: frozenset[str] = frozenset()
        self._player_failures = 0
        self._beat = time.monotonic()  # the worker's last turn (alive())
        self._jumps = ClockJumps()

    # --- lifecycle ------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def start(self) -> None:
        """Restore what was pending, start the threads and connect. An agent runs once."""
        if self._ran:
            raise RuntimeError("agent already started")
        self._ran = True
        if not self._tone.exists():
            make_tone(self._tone, freq_hz=TONE_HZ, seconds=TONE_S)
        self._acoustic.prepare()
        self._restore()
        self._updater.report_outcome()
        self._started = True
        self._fetcher.start()
        self._worker.start()
        self._telemetry.start()
        self._transport.start()
        log.info("agent %s for node %s started (player %s, amp %s)", AGENT_VERSION,
                 self.config.node_id, self.player.name, self.amplifier.kind)

    def stop(self, timeout: float = 5.0, budget: float = STOP_BUDGET_S) -> None:
        """Stop cleanly: end playback, give queued events ``timeout``/2 to reach the broker,
        publish ``{"v":1,"online":false}`` (retained) and disconnect; all of it within
        ``budget`` seconds (a step that finds it spent is cut short, a stuck player no longer
        waited for), and OFFLINE_S more at most for the offline state."""
        if not self._started:
            return
        end = time.monotonic() + budget

        def left(bound: float) -> float:
            return max(0.0, min(bound, end - time.monotonic()))
        self._started = False
        self._stopping.set()
        self._inbox.put((Inbox.STOP, None))
        self._worker.join(left(timeout + PLAYER_JOIN_S))
        deadline = time.monotonic() + left(timeout / 2)
        while self._store.outbox_size() and self._transport.connected \
                and time.monotonic() < deadline:
            try:
                kind, data = self._inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind in (Inbox.PUBLISHED, Inbox.CONNECTED):
                self._handle(kind, data)
        with self._last_word:  # after any telemetry the thread had read, and newer
            if self._transport.connected:
                self._transport.publish_and_wait(
                    self.topics[TopicKind.STATE], {"v": 1, "online": False, "ts": self.now_ms()},
                    max(left(timeout / 2), min(OFFLINE_S, timeout / 2)), retain=True)
        self._transport.stop()
        self._telemetry.join(left(2))
        self._fetcher.stop(left(2))
        self.amplifier.close()
        self._store.close()
        log.info("agent stopped")

    def _request_exit(self, code: int) -> None:
        """Ask the process to stop the agent and end with ``code`` (__main__ watches)."""
        self.exit_code = code

    def alive(self) -> bool:
        """The worker thread still turns: what the systemd watchdog's ping stands for."""
        return self._worker.is_alive() and time.monotonic() - self._beat < WORKER_STALE_S

    @property
    def connected(self) -> bool:
        return self._started and self._transport.connected

    def wait_connected(self, timeout: float) -> bool:
        return self._transport.wait_connected(timeout)

    def status(self) -> dict[str, Any]:
        """A snapshot for telemetry and tests (read from other threads: copies only)."""
        playing = self._playing
        desired = self._desired
        return {
            "connected": self._transport.connected,
            "volume": self._volume,
            "amp_on": self.amplifier.state(),
            "playing": None if playing is None else {
                "item_id": playing.item.item_id, "priority": playing.item.priority,
                "since": playing.since},
            "waiting": [i.item_id for i in list(self._waiting)],
            "desired_version": desired["version"] if desired else None,
            "groups": list(self._groups),
            "trusted_kids": sorted(self._keys),
        }

    # --- restoring state --------------------------------------------------------------------------
    def _restore(self) -> None:
        store, now = self._store, self.now_ms()
        self._key_state = KeyState.from_json(store.get("keys"))
        self._keys = self._load_keys(trusted_keys(self.config.provisioned_keys, self._key_state))
        self._volume = store.get("volume", DEFAULT_VOLUME)
        self._groups = tuple(store.get("groups", list(self.config.groups)))
        for _key, env_json, received_at, seq, started in store.pending():
            env = json.loads(env_json)
            self._seq = max(self._seq, seq)
            item = self._command_item(env, received_at, seq)
            if started:
                self._end(item, PlayResult.FAILED, NodeReason.INTERRUPTED,
                          detail="the agent restarted while this played")
            else:
                self._waiting.append(item)
        self._desired = store.get("desired")
        self._unreported = set(store.get("media_unreported", []))
        if self._desired:
            self._use_desired(self._desired["body"], now, fresh=False)
            for sha in sorted(self._unreported):  # downloaded just before the agent stopped
                if self._media.get(sha) == MediaState.READY:
                    self._media_ready(sha)
            self._store.put("media_unreported", sorted(self._unreported))
        self._amp.restore(store.get("amp_on"), now)

    @staticmethod
    def _load_keys(keys: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
        out = {}
        for kid, pub in keys.items():
            try:
                out[kid] = load_public_key(pub)
            except ValueError as err:
                log.error("trusted key %s is unusable: %s", kid, err)
        return out

    # --- paho thread ------------------------------------------------------------------------------
    def _on_connect(self) -> None:
        # The session is persistent, so the broker still holds the group subscriptions of the
        # last run: drop those no longer in the list (a desired state or a new config changed it).
        groups = [g for g in self._groups if g != "all"]
        stale = set(self._store.get("subscribed_groups", [])) - set(groups) - {"all"}
        self._transport.unsubscribe(group_topic(self._prefix, g) for g in sorted(stale))
        self._transport.subscribe([self.topics[TopicKind.DESIRED], self.topics[TopicKind.CMD],
                                   group_topic(self._prefix, "all")]
                                  + [group_topic(self._prefix, g) for g in groups])
        self._store.put("subscribed_groups", groups)
        self._transport.publish(self.topics[TopicKind.STATE], {"v": 1, "online": True,
                                                       "ts": self.now_ms(),
                                                       "agent_version": AGENT_VERSION},
                                qos=1, retain=True)
        self._inbox.put((Inbox.CONNECTED, None))

    # --- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._beat = time.monotonic()
            timeout = MAX_WAIT_S
            if self._wake_at is not None:
                timeout = min(MAX_WAIT_S, max(0.01, (self._wake_at - self.now_ms()) / 1000))
            try:
                kind, data = self._inbox.get(timeout=timeout)
            except queue.Empty:
                kind, data = Inbox.TICK, None
            if kind == Inbox.STOP:
                break
            try:
                self._check_clock()
                self._handle(kind, data)
                self._tick()
            except Exception:  # noqa: BLE001 - the agent must outlive any one bad message
                log.exception("error while handling %s", kind)
        try:
            self._interrupt(Interruption.SHUTDOWN)
        except Exception:  # noqa: BLE001
            log.exception("error while stopping playback")

    def _check_clock(self) -> None:
        """A step of the wall clock (the worker turns at least every MAX_WAIT_S) is a
        ``clock_jump`` alarm, raised at once (the outbox keeps it while offline)."""
        step = self._jumps.check(self.now_ms(), int(time.monotonic() * 1000))
        if step is not None:
            log.warning("clock jumped by %+d ms", step)
            self._emit(EventType.ALARM, code=AlarmCode.CLOCK_JUMP, detail=clock_jump_detail(step))

    def _handle(self, kind: Inbox, data: Any) -> None:
        handler = self._inbox_handlers.get(kind)
        if handler is not None:
            handler(data)

    def _on_mqtt(self, msg: Incoming) -> None:
        try:
            self._on_incoming(msg)
        finally:
            self._transport.ack(msg.mid, msg.qos)

    def _on_published(self, mid: int) -> None:
        event_id = self._mid_event.pop(mid, None)
        if event_id:
            self._handed.pop(event_id, None)
            self._store.outbox_remove(event_id)

    def _on_connected(self, _: None) -> None:
        self._updater.connected()
        for event_id, payload in self._store.outbox():
            if event_id not in self._handed:
                self._hand(event_id, payload)

    def _on_alarms(self, alarms: list[tuple[str, str]]) -> None:
        for code, detail in alarms:
            self._emit(EventType.ALARM, code=code, detail=detail)

    # --- events and the outbox --------------------------------------------------------------------
    def _emit(self, type_: EventType, **fields: Any) -> dict[str, Any]:
        """Store an event in the outbox, then hand it to the broker connection if there is one
        (otherwise the next connection does it). It leaves the outbox on the broker's PUBACK."""
        event = make_event(type_, self.now_ms(), **fields)
        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        self._store.outbox_add(event["id"], payload)
        if self._transport.connected:
            self._hand(event["id"], payload)
        return event

    def _hand(self, event_id: str, payload: str) -> None:
        mid = self._transport.publish(self.topics[TopicKind.EVENTS], payload, qos=1)
        self._handed[event_id] = mid
        self._mid_event[mid] = event_id

    def _ack(self, cmd_id: str, status: AckStatus, reason: str | None = None, **extra: Any) -> None:
        self._emit(EventType.ACK, cmd_id=cmd_id, status=status, reason=reason, **extra)

    # --- incoming envelopes -----------------------------------------------------------------------
    def _on_incoming(self, msg: Incoming) -> None:
        now = self.now_ms()
        where = parse_topic(self._prefix, msg.topic)
        on_desired = where is not None and where.kind == TopicKind.DESIRED
        try:
            env = verify_envelope(msg.payload, msg.topic, prefix=self._prefix,
                                  node_id=self.config.node_id, groups=self._groups,
                                  keys=self._keys, now_ms=now)
        except ProtocolError as err:
            held = self._desired["id"] if self._desired else None
            if on_desired and err.reason == RejectReason.EXPIRED and err.cmd_id \
                    and err.cmd_id == held:
                return  # the retained copy of the desired state we hold, re-delivered
            self._reject(err.cmd_id, err.reason, err.detail, msg.topic)
            return
        if self._store.seen(env["id"]):
            if not on_desired:  # a retained desired state re-delivered on reconnect is silent
                self._reject(env["id"], RejectReason.REPLAYED, "id already accepted", msg.topic,
                             ack=False)
            return
        self._store.remember(env["id"], env["exp"])
        self._dispatch(env, now)

    def _reject(self, cmd_id: str | None, reason: RejectReason, detail: str, topic: str,
                ack: bool = True) -> None:
        log.warning("rejected %s on %s: %s %s", cmd_id, topic, reason, detail)
        if cmd_id and ack:
            self._ack(cmd_id, AckStatus.REJECTED, reason)
        self._emit(EventType.ALARM, code=AlarmCode.REJECTED_COMMAND, cmd_id=cmd_id, reason=reason,
                   detail=detail, topic=topic)

    def _dispatch(self, env: Envelope, now: int) -> None:
        handler = self._commands.get(env["type"])
        if handler is None:
            self._ack(env["id"], AckStatus.FAILED, NodeReason.UNSUPPORTED_TYPE)
            return
        handler(env, now)

    # --- commands (one handler per envelope type) -----------------------------------------------
    def _queue_command(self, env: Envelope, now: int) -> None:
        """``play`` and ``test``: remembered until they end, then they wait their turn."""
        item = self._command_item(env, now, self._next_seq())
        self._store.pending_put(item.key, envelope_json(env), now, item.seq)
        self._ack(env["id"], AckStatus.RECEIVED)
        self._waiting.append(item)
        self._want_media(item.media)

    def _stop_command(self, env: Envelope, now: int) -> None:
        body = env["body"]
        self._ack(env["id"], AckStatus.RECEIVED)
        self._stop_items(body.get("item_id"), body.get("max_priority"))
        self._ack(env["id"], AckStatus.FINISHED)

    def _set_volume(self, env: Envelope, now: int) -> None:
        self._ack(env["id"], AckStatus.RECEIVED)
        self._volume = env["body"]["volume"]
        self._store.put("volume", self._volume)
        self._ack(env["id"], AckStatus.FINISHED)

    def _amp_command(self, env: Envelope, now: int) -> None:
        self._ack(env["id"], AckStatus.RECEIVED)
        self._switch_amp(env["id"], env["body"]["on"])

    def _reboot_command(self, env: Envelope, now: int) -> None:
        self._ack(env["id"], AckStatus.RECEIVED)
        self._reboot = _Reboot(env["id"], now + REBOOT_GRACE_MS)

    def _keys_command(self, env: Envelope, now: int) -> None:
        self._ack(env["id"], AckStatus.RECEIVED)
        self._change_keys(env["id"], env["body"])

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _command_item(self, env: Mapping[str, Any], received_at: int, seq: int) -> QueueItem:
        key = f"cmd:{env['id']}"
        if env["type"] == CommandType.TEST:
            item_id = ACOUSTIC_ITEM if env["body"].get("kind") == HornTest.ACOUSTIC else "test-tone"
            return QueueItem(key=key, kind=ItemKind.TEST, item_id=item_id, priority=TEST_PRIORITY,
                             seq=seq, ready_at=received_at, scheduled_at=received_at,
                             exp=env["exp"], cmd_id=env["id"])
        body = env["body"]
        item, start_at = body["item"], body.get("start_at")
        return QueueItem(key=key, kind=ItemKind.PLAY, item_id=item["id"], priority=body["priority"],
                         seq=seq, ready_at=command_ready_at(start_at, received_at),
                         scheduled_at=start_at if start_at is not None else received_at,
                         exp=env["exp"], cmd_id=env["id"], sha256=item["media"]["sha256"],
                         volume=body.get("volume"), repeat=body.get("repeat", 1),
                         media=item["media"])

    # --- simple commands --------------------------------------------------------------------------
    def _switch_amp(self, cmd_id: str, on: bool) -> None:
        try:
            self._amp.command(on)
        except AmpError as err:
            self._ack(cmd_id, AckStatus.FAILED, NodeReason.AMP_FAULT, detail=str(err))
            self._emit(EventType.ALARM, code=AlarmCode.AMP_FAULT, detail=str(err), cmd_id=cmd_id)
            return
        self._store.put("amp_on", bool(on))
        self._ack(cmd_id, AckStatus.FINISHED)

    def _change_keys(self, cmd_id: str, body: Mapping[str, Any]) -> None:
        add = body.get("keys", [])
        try:
            for key in add:
                try:
                    load_public_key(key["public_key"])
                except ValueError as err:
                    raise KeyChangeRefused(NodeReason.BAD_KEY, f"{key['kid']}: {err}") from None
            state = apply_key_change(self.config.provisioned_keys, self._key_state, add,
                                     body.get("revoke", []))
        except KeyChangeRefused as err:
            self._ack(cmd_id, AckStatus.FAILED, err.reason, detail=err.detail)
            return
        self._key_state = state
        self._store.put("keys", state.to_json())
        self._keys = self._load_keys(trusted_keys(self.config.provisioned_keys, state))
        log.info("trusted keys now %s", sorted(self._keys))
        self._ack(cmd_id, AckStatus.FINISHED)

    def _stop_items(self, item_id: str | None, max_priority: int | None) -> None:
        playing = self._playing.item if self._playing else None
        for target in stop_targets(playing, self._waiting, item_id, max_priority):
            if playing is not None and target.key == playing.key:
                self._interrupt(Interruption.STOPPED)
            else:
                self._waiting.remove(target)
                self._end(target, PlayResult.STOPPED)

    def _run_reboot(self, reboot: _Reboot) -> None:
        self._reboot = None
        command = self.config.system.reboot_command
        log.warning("rebooting: %s", command)
        try:
            subprocess.run(shlex.split(command), check=True, timeout=60, capture_output=True)
        except (OSError, subprocess.SubprocessError) as err:
            self._ack(reboot.cmd_id, AckStatus.FAILED, NodeReason.REBOOT_FAILED,
                      detail=str(err)[:300])

    # --- desired state ----------------------------------------------------------------------------
    def _apply_desired(self, env: Envelope, now: int) -> None:
        body = env["body"]
        version = body["version"]
        if self._desired and version <= self._desired["version"]:
            log.info("desired version %s ignored: holding %s", version, self._desired["version"])
            return
        self._desired = {"id": env["id"], "version": version, "exp": env["exp"], "body": body}
        self._store.put("desired", self._desired)
        self._use_desired(body, now, fresh=True)
        self._emit(EventType.DESIRED_APPLIED, version=version)
        self._report_ready(body)

    def _report_ready(self, body: Mapping[str, Any]) -> None:
        """After a new desired version is applied: a ``media_ready`` for each of its media
        (slots and prefetch) once it is verified in the cache, now for what is there already,
        later (``_on_fetched``) for the rest; each once per version. What is still owed is
        kept in the state store, so a restart before a download ends still reports it."""
        shas = dict.fromkeys([s["item"]["media"]["sha256"] for s in body.get("schedule", [])]
                             + [m["sha256"] for m in body.get("prefetch", [])])
        self._unreported = set(shas)
        for sha in shas:
            if self._media.get(sha) == MediaState.READY:
                self._media_ready(sha)
        self._store.put("media_unreported", sorted(self._unreported))

    def _media_ready(self, sha: str) -> None:
        if sha in self._unreported:
            self._unreported.discard(sha)
            self._emit(EventType.MEDIA_READY, sha256=sha)

    def _use_desired(self, body: Mapping[str, Any], now: int, fresh: bool) -> None:
        tz_name = body.get("tz") or self.config.tz
        try:
            self._tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            log.error("desired tz %r unknown; using %s", tz_name, self.config.tz)
            self._tz = ZoneInfo(self.config.tz)
        self._quiet = list(body.get("quiet_hours", []))
        if fresh and "volume" in body:
            self._volume = body["volume"]
            self._store.put("volume", self._volume)
        if fresh and "groups" in body:
            self._replace_groups(body["groups"])
        self._load_schedule(body.get("schedule", []))
        for media in body.get("prefetch", []):
            self._want_media(media)
        if fresh:
            self._prune_cache(body)

    def _replace_groups(self, groups: list[str]) -> None:
        old, new = set(self._groups), set(groups) - {"all"}
        self._groups = tuple(sorted(new))
        self._store.put("groups", list(self._groups))
        if self._transport.connected:
            # if the connection drops meanwhile, the next on_connect finishes the job
            self._transport.unsubscribe(group_topic(self._prefix, g) for g in sorted(old - new))
            self._transport.subscribe(group_topic(self._prefix, g) for g in sorted(new - old))
            self._store.put("subscribed_groups", list(self._groups))
        log.info("groups now %s", list(self._groups))

    def _load_schedule(self, slots: list[Mapping[str, Any]]) -> None:
        done = self._store.slots_done()
        playing_key = self._playing.item.key if self._playing else None
        existing = {i.key: i for i in self._waiting if i.is_slot}
        fresh: list[QueueItem] = []
        for slot in slots:
            key = f"slot:{slot['slot_id']}"
            if slot["slot_id"] in done or key == playing_key:
                continue
            media = slot["item"]["media"]
            seq = existing[key].seq if key in existing else self._next_seq()
            fresh.append(QueueItem(key=key, kind=ItemKind.SLOT, item_id=slot["item"]["id"],
                                   priority=slot["priority"], seq=seq,
                                   ready_at=slot["start_at"], scheduled_at=slot["start_at"],
                                   slot_id=slot["slot_id"], sha256=media["sha256"],
                                   volume=slot.get("volume"), media=media))
        self._waiting = [i for i in self._waiting if not i.is_slot] + fresh
        for item in fresh:
            self._want_media(item.media)

    def _prune_cache(self, body: Mapping[str, Any]) -> None:
        keep = {i.sha256 for i in self._waiting if i.sha256}
        keep |= {s["item"]["media"]["sha256"] for s in body.get("schedule", [])}
        keep |= {m["sha256"] for m in body.get("prefetch", [])}
        if self._playing and self._playing.item.sha256:
            keep.add(self._playing.item.sha256)
        removed = self.cache.prune(keep, self.config.cache_max_mb * 1024 * 1024)
        for sha in removed:
            self._media.pop(sha, None)

    # --- media ------------------------------------------------------------------------------------
    def _want_media(self, media: Mapping[str, Any] | None) -> None:
        if not media:
            return
        sha = media["sha256"]
        if self._media.get(sha) in (MediaState.READY, MediaState.FETCHING):
            return
        if self.cache.has(sha):
            self._media[sha] = MediaState.READY
            return
        self._media[sha] = MediaState.FETCHING
        self._fetcher.request(media)

    def _ready(self, item: QueueItem) -> bool:
        return item.sha256 is None or self._media.get(item.sha256) == MediaState.READY

    def _on_fetched(self, result: tuple[str, MediaError | None]) -> None:
        sha, error = result
        if error is None:
            self._media[sha] = MediaState.READY
            if sha in self._unreported:
                self._media_ready(sha)
                self._store.put("media_unreported", sorted(self._unreported))
            return
        self._media[sha] = _MediaFailure(error.reason, error.detail, self.now_ms())
        affected = [i for i in self._waiting if i.sha256 == sha and not i.is_slot]
        if error.reason == NodeReason.MEDIA_MISMATCH:
            for cmd_id in [i.cmd_id for i in affected] or [None]:
                self._emit(EventType.ALARM, code=AlarmCode.MEDIA_MISMATCH, detail=error.detail,
                           cmd_id=cmd_id, reason=NodeReason.MEDIA_MISMATCH, sha256=sha)
        for item in affected:
            self._waiting.remove(item)
            self._end(item, PlayResult.FAILED, error.reason, detail=error.detail)

    def _retry_media(self, now: int) -> None:
        for item in list(self._waiting):
            if item.sha256 is None or self._ready(item):
                continue
            state = self._media.get(item.sha256)
            if state is None:
                self._want_media(item.media)
            elif isinstance(state, _MediaFailure):
                due = item.ready_at <= now
                retry = state.reason == NodeReason.MEDIA_UNAVAILABLE and (
                    state.at < item.ready_at if due else now - state.at >= MEDIA_RETRY_MS)
                if retry or not item.is_slot:
                    self._media.pop(item.sha256, None)
                    self._want_media(item.media)
                elif due:
                    self._waiting.remove(item)
                    self._end(item, PlayResult.FAILED, state.reason, detail=state.detail)

    # --- the waiting line -------------------------------------------------------------------------
    def _tick(self) -> None:
        now = self.now_ms()
        if now - self._last_purge >= PURGE_EVERY_MS:
            self._last_purge = now
            self._store.forget_expired(now)
            self._store.forget_slots_before(now - SLOT_MEMORY_MS)
        self._retry_media(now)
        if self._store.unstored:  # a full disk: written once it takes them
            self._store.retry_unstored()
        for _ in range(100):
            now = self.now_ms()
            playing = self._playing.item if self._playing else None
            quiet = in_quiet_hours(now, self._quiet, self._tz)
            self._amp.update(now, playing, self._waiting, quiet)
            step = plan(now, playing, self._waiting, quiet=quiet,
                        ready=self._amp.gate(self._ready, now))
            for item, reason in step.skip:
                self._waiting.remove(item)
                self._end(item, PlayResult.SKIPPED, reason)
            if step.start is not None:
                if step.preempt:
                    self._interrupt(Interruption.PREEMPTED)
                self._waiting.remove(step.start)
                self._start(step.start)
            self._wake_at = self._amp.wake_at(step.wake_at)
            if not step.skip and step.start is None:
                break
        if self._reboot and (self._store.outbox_size() == 0 or now >= self._reboot.deadline):
            self._run_reboot(self._reboot)
        self._updater.switch_when_idle()

    def _start(self, item: QueueItem, rep: int = 0, since: int | None = None) -> None:
        now = self.now_ms()
        if rep == 0 and item.cmd_id:
            self._store.pending_started(item.key)
            self._ack(item.cmd_id, AckStatus.STARTED)
        path: Path | None
        duration: int | None
        player = self.player
        if item.item_id == ACOUSTIC_ITEM:
            player, path, duration = (self._acoustic, self._acoustic.sequence,
                                      self._acoustic.duration_ms)
        elif item.kind == ItemKind.TEST:
            path, duration = self._tone, int(TONE_S * 1000)
        else:
            path = self.cache.path(item.sha256) if item.sha256 else None
            duration = (item.media or {}).get("duration_ms")
        if path is None:
            if item.sha256:
                self._media.pop(item.sha256, None)
            self._end(item, PlayResult.FAILED, NodeReason.MEDIA_UNAVAILABLE,
                      detail="cached file disappeared")
            return
        request = PlayRequest(path, item.item_id, item.sha256,
                              effective_volume(item.priority, item.volume, self._volume),
                              duration)
        self._token += 1
        playing = _Playing(item, self._token, Cancel(), since if since is not None else now, now,
                           reps_done=rep)
        playing.thread = threading.Thread(target=self._play_thread,
                                          args=(playing, request, player),
                                          name="loa-play", daemon=True)
        self._playing = playing
        log.info("playing %s (priority %s, volume %s)", item.item_id, item.priority,
                 request.volume)
        playing.thread.start()

    def _play_thread(self, playing: _Playing, request: PlayRequest, player: Player) -> None:
        try:
            outcome = player.play(request, playing.cancel)
        except Exception as err:  # noqa: BLE001 - a player bug is a failed play, not a dead agent
            log.exception("player failed")
            outcome = PlayOutcome(PlayResult.FAILED, f"{type(err).__name__}: {err}")
        playing.ended_at = self.now_ms()
        playing.outcome = outcome
        self._inbox.put((Inbox.PLAY_DONE, playing.token))

    def _on_play_done(self, token: int) -> None:
        playing = self._playing
        if playing is None or playing.token != token:
            return  # a play we already ended (preempted, stopped)
        self._playing = None
        self._after_play(playing, playing.outcome or PlayOutcome(PlayResult.FAILED, "no outcome"))

    def _after_play(self, playing: _Playing, outcome: PlayOutcome,
                    interrupted: Interruption | None = None) -> None:
        item = playing.item
        ended = playing.ended_at or self.now_ms()
        self._count_player_failures(outcome, interrupted)
        if outcome.result == PlayResult.COMPLETED:
            self._report_play(item, PlayResult.COMPLETED, started_at=playing.rep_started,
                              ended_at=ended)
            if playing.reps_done + 1 < item.repeat and item.kind != ItemKind.TEST:
                if interrupted is None:
                    self._start(item, playing.reps_done + 1, playing.since)
                    return
                # the remaining repetitions are what the interruption cut
                self._end(item, *self._cut_result(interrupted), report=False)
                return
            self._end(item, PlayResult.COMPLETED, report=False, verdict=verdict_of(outcome))
        elif outcome.result == PlayResult.STOPPED or interrupted:
            self._end(item, *self._cut_result(interrupted or outcome.detail),
                      started_at=playing.rep_started, ended_at=ended)
        else:
            self._end(item, PlayResult.FAILED, NodeReason.PLAYER_ERROR,
                      started_at=playing.rep_started, ended_at=ended, detail=outcome.detail)

    def _count_player_failures(self, outcome: PlayOutcome,
                               interrupted: Interruption | None) -> None:
        """``player_failing`` once when PLAYER_FAILING_AFTER plays in a row failed in the
        player (a dead sound card, a broken player install); again only after one completed."""
        if outcome.result == PlayResult.COMPLETED:
            self._player_failures = 0
        elif outcome.result == PlayResult.FAILED and interrupted is None:
            self._player_failures += 1
            if self._player_failures == PLAYER_FAILING_AFTER:
                self._emit(EventType.ALARM, code=AlarmCode.PLAYER_FAILING,
                           detail=f"{PLAYER_FAILING_AFTER} plays in a row failed in player "
                                  f"{self.player.name}; the last: {outcome.detail[:300]}")

    @staticmethod
    def _cut_result(why: str) -> tuple[PlayResult, str | None]:
        """(result, reason) of an item cut short (``why``: an Interruption, or a stopped
        outcome's detail, which is one): preempted, stopped, or failed at shutdown."""
        if why == Interruption.SHUTDOWN:
            return PlayResult.FAILED, NodeReason.SHUTDOWN
        return (PlayResult.PREEMPTED if why == Interruption.PREEMPTED else PlayResult.STOPPED), None

    def _interrupt(self, why: Interruption) -> None:
        """End what plays now: ``preempted``, ``stopped`` or ``shutdown``; waits for the player."""
        playing = self._playing
        if playing is None:
            return
        self._playing = None
        playing.cancel.set(why)
        if playing.thread is not None:
            playing.thread.join(PLAYER_JOIN_S)
            if playing.thread.is_alive():
                log.error("player did not stop within %s s", PLAYER_JOIN_S)
        playing.ended_at = playing.ended_at or self.now_ms()
        self._after_play(playing, playing.outcome or PlayOutcome(PlayResult.STOPPED, why),
                         interrupted=why)

    def _report_play(self, item: QueueItem, result: PlayResult, reason: str | None = None,
                     started_at: int | None = None, ended_at: int | None = None) -> None:
        if item.kind == ItemKind.TEST:
            return
        self._emit(EventType.PLAYED, item_id=item.item_id, cmd_id=item.cmd_id, slot_id=item.slot_id,
                   sha256=item.sha256, scheduled_at=item.scheduled_at, started_at=started_at,
                   ended_at=ended_at, result=result, reason=reason)

    def _end(self, item: QueueItem, result: PlayResult, reason: str | None = None, *,
             started_at: int | None = None, ended_at: int | None = None,
             detail: str | None = None, report: bool = True,
             verdict: Verdict | None = None) -> None:
        """The final word on an item: its ``played`` event (unless already sent per repetition),
        then the command's last ack, or the slot marked done so a restart does not replay it."""
        if report:
            self._report_play(item, result, reason, started_at, ended_at)
        if item.kind == ItemKind.SLOT:
            assert item.slot_id is not None, "a slot item has its slot_id"
            self._store.slot_done(item.slot_id, self.now_ms())
            return
        assert item.cmd_id is not None, "a command item has its envelope id"
        if item.kind == ItemKind.TEST:
            amp = self.amplifier.state()
            ok = result == PlayResult.COMPLETED and amp is not False
            if verdict is not None:  # an acoustic test that ran: what the microphone heard
                ok, reason = verdict.passed, verdict.reason
                detail = verdict.detail + ("; amplifier off" if amp is False else "")
            elif result == PlayResult.COMPLETED:
                detail = (f"{TONE_S:g} s {TONE_HZ} Hz tone played through {self.player.name}; "
                          f"amplifier {'unknown' if amp is None else 'on' if amp else 'off'}")
            else:
                detail = detail or reason or result
            self._ack(item.cmd_id, AckStatus.FINISHED, None if ok else (reason or result),
                      result=HornVerdict.OK if ok else HornVerdict.FAIL, detail=detail)
        else:
            self._ack(item.cmd_id, ACK_FOR_RESULT[result], reason, detail=detail)
        self._store.pending_remove(item.key)

    # --- telemetry --------------------------------------------------------------------------------
    def telemetry(self) -> dict[str, Any]:
        """One telemetry message from the machine's real readings (None where unreadable)."""
        sample = self._probe.sample()
        unsynced = sample.pop("_clock_unsynced", False)
        self._active_alarms, raised = health_alarms({**sample, "_clock_unsynced": unsynced},
                                                    self._active_alarms)
        if raised:
            self._inbox.put((Inbox.ALARMS, raised))
        status = self.status()
        try:
            cache_bytes = self.cache.total_bytes()
        except OSError:
            cache_bytes = None
        return {"v": 1, "ts": self.now_ms(), "agent_version": AGENT_VERSION, **sample,
                "volume": status["volume"], "amp_on": status["amp_on"],
                "amp_fault": self._amp.fault,
                "playing": status["playing"], "desired_version": status["desired_version"],
                "cache_bytes": cache_bytes}

    def _telemetry_loop(self) -> None:
        period = self.config.telemetry_s
        while not self._stopping.is_set():
            if self._transport.wait_connected(min(period, 1.0)):
                try:
                    message = self.telemetry()
                    with self._last_word:  # never after the offline state of a stop meanwhile
                        if self._stopping.is_set():
                            return
                        self._transport.publish(self.topics[TopicKind.TELEMETRY], message,
                                                qos=0)
                except Exception:  # noqa: BLE001
                    log.exception("telemetry failed")
                self._stopping.wait(period)
