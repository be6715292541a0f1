"""The bridge's queue between the network thread and its worker: a node's ``received`` ack
(an emergency's receipts, what its operator watches) is written before the messages that
wait, the rest in arrival order; the network thread waits while the queue is full; stop()
ends the worker once what was queued before it is written."""
import json
import threading
import time

from device_agent.protocol import EventType, make_event
from server.bridge import Intake, urgent

PREFIX = "loa"
TS = 1764000000000
ACK, PLAYED = EventType.ACK, EventType.PLAYED


def _msg(node: str, kind: str, body: dict) -> tuple[str, bytes, None]:
    return f"{PREFIX}/nodes/{node}/{kind}", json.dumps(body).encode(), None


def _put(intake: Intake, item) -> None:
    topic, payload, _ = item
    intake.put(item, first=urgent(topic, payload))


def test_received_acks_are_taken_before_messages_that_came_earlier():
    tele = [_msg(f"n{i}", "telemetry", {"v": 1, "ts": TS + i}) for i in range(2)]
    played = _msg("n1", "events", make_event(PLAYED, TS, item_id="bc-1", result="completed"))
    started = _msg("n1", "events", make_event(ACK, TS, cmd_id="c1", status="started"))
    received = [_msg(f"n{i}", "events", make_event(ACK, TS, cmd_id="c1", status="received"))
                for i in range(2)]
    intake = Intake(100)
    for item in (tele[0], played, received[0], started, tele[1], received[1]):
        _put(intake, item)
    assert intake.take(3, 0) == ([received[0], received[1], tele[0]], False)
    assert intake.take(10, 0) == ([played, started, tele[1]], False)


def test_a_started_ack_or_an_event_naming_received_elsewhere_keeps_its_place():
    assert not urgent(*_msg("n1", "events", make_event(ACK, TS, cmd_id="c", status="started"))
                      [:2])
    assert not urgent(*_msg("n1", "telemetry", {"v": 1, "ts": TS, "note": "received"})[:2])
    assert urgent(*_msg("n1", "events", make_event(ACK, TS, cmd_id="c", status="received"))
                  [:2])


def test_the_worker_stops_once_what_was_queued_before_stop_is_taken():
    intake = Intake(10)
    items = [_msg("n1", "telemetry", {"v": 1, "ts": TS + i}) for i in range(3)]
    for item in items:
        _put(intake, item)
    intake.put(None)
    assert intake.take(2, 0) == (items[:2], False)
    assert intake.take(10, 0) == (items[2:], True)


def test_a_lone_message_is_taken_after_the_linger_without_company():
    intake = Intake(10)
    item = _msg("n1", "telemetry", {"v": 1, "ts": TS})
    _put(intake, item)
    started = time.monotonic()
    assert intake.take(10, 0.05) == ([item], False)
    assert time.monotonic() - started >= 0.05


def test_the_network_thread_waits_while_the_queue_is_full():
    intake = Intake(1)
    first, second = (_msg("n1", "telemetry", {"v": 1, "ts": TS + i}) for i in range(2))
    _put(intake, first)
    queued = threading.Event()

    def network_thread():
        _put(intake, second)
        queued.set()
    thread = threading.Thread(target=network_thread, daemon=True)
    thread.start()
    assert not queued.wait(0.2)            # full: the put waits
    assert intake.take(1, 0) == ([first], False)
    assert queued.wait(5)                  # room again: it goes in
    assert intake.take(1, 0) == ([second], False)
    thread.join(5)


def test_the_bridge_is_behind_once_more_than_a_batch_waits_to_be_written():
    # what the dispatcher's alert and retention passes wait on (schedules.dispatcher.busy)
    from server.bridge import INGEST_BATCH, Bridge
    bridge = Bridge(None, None, PREFIX)  # type: ignore[arg-type]  # the worker is not started
    for i in range(INGEST_BATCH):
        bridge.enqueue(*_msg(f"n{i}", "telemetry", {"v": 1, "ts": TS + i})[:2])
    assert not bridge.behind()
    bridge.enqueue(*_msg("n0", "telemetry", {"v": 1, "ts": TS - 1})[:2])
    assert bridge.behind()
