"""Playing: exact bytes to the sink with acks and proof of play, repeat, media mismatch,
priority preemption and waiting, stop, quiet hours, emergency volume, expiry, volume, amplifier,
test tone, reboot."""
import hashlib
import re
import time
import wave
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from device_agent.agent import ACK_FOR_RESULT
from device_agent.amp import RecordingAmplifier
from device_agent.protocol import PlayResult


def index_of(h, pred):
    """Position of the first event fitting ``pred`` in arrival order."""
    for i, e in enumerate(h.events()):
        if pred(e):
            return i
    raise AssertionError(f"no such event in {h.events()}")


def ack_index(h, cmd_id, status):
    return index_of(h, lambda e: e["type"] == "ack" and e["cmd_id"] == cmd_id
                    and e["status"] == status)


def test_play_puts_exact_bytes_in_sink_and_reports_received_started_finished(node, media_dir):
    env = node.play("short", item_id="bulletin-1")
    node.wait_ack(env["id"], "finished")
    assert node.acks(env["id"]) == ["received", "started", "finished"]
    media = env["body"]["item"]["media"]
    played = node.wait_event("played", cmd_id=env["id"])
    assert played["result"] == "completed" and played["item_id"] == "bulletin-1"
    assert played["sha256"] == media["sha256"]
    assert played["scheduled_at"] <= played["started_at"] <= played["ended_at"]
    [line] = node.sink_lines()
    assert line["item_id"] == "bulletin-1" and line["result"] == "completed"
    [copy] = [p for p in node.sink.iterdir() if p.suffix == ".mp3"]
    assert re.fullmatch(rf"\d{{13}}-bulletin-1-{media['sha256']}\.mp3", copy.name)
    assert copy.read_bytes() == (media_dir / "short.mp3").read_bytes()
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == media["sha256"]


def test_repeat_n_means_n_plays_in_all(node):
    env = node.play("short", repeat=3)
    node.wait_ack(env["id"], "finished")
    assert len(node.events("played", cmd_id=env["id"], result="completed")) == 3
    assert len(node.sink_lines()) == 3
    assert node.acks(env["id"]) == ["received", "started", "finished"]


def test_media_mismatch_fails_play_and_raises_alarm(node, media_server):
    wrong = media_server.media("other")["sha256"]
    env = node.send("play", {"item": media_server.item("short", sha256=wrong), "priority": 3})
    assert node.wait_ack(env["id"], "failed")["reason"] == "media_mismatch"
    played = node.wait_event("played", cmd_id=env["id"])
    assert played["result"] == "failed" and played["reason"] == "media_mismatch"
    alarm = node.wait_event("alarm", code="media_mismatch")
    assert alarm["cmd_id"] == env["id"] and alarm["reason"] == "media_mismatch"
    assert node.acks(env["id"]) == ["received", "failed"]
    assert node.sink_lines() == []
    assert not node.agent.cache.has(wrong)


def test_unreachable_media_fails_play_as_unavailable(node, media_server):
    item = media_server.item("short")
    item["media"]["url"] = f"{media_server.base}/missing.mp3"
    item["media"]["sha256"] = "0" * 64
    env = node.send("play", {"item": item, "priority": 3})
    assert node.wait_ack(env["id"], "failed")["reason"] == "media_unavailable"


def test_higher_priority_preempts_and_preempted_item_does_not_resume(make_node):
    h = make_node(realtime=True)
    low = h.play("long", priority=3, item_id="low")
    h.wait_ack(low["id"], "started")
    high = h.play("blip", priority=5, item_id="high")
    h.wait_ack(low["id"], "preempted")
    h.wait_ack(high["id"], "finished")
    played = h.wait_event("played", cmd_id=low["id"])
    assert played["result"] == "preempted" and played["ended_at"] - played["started_at"] < 3000
    assert ack_index(h, low["id"], "preempted") < ack_index(h, high["id"], "started")
    h.marker()
    assert [(e["item_id"], e["result"]) for e in h.sink_lines()] == [("low", "preempted"),
                                                                      ("high", "completed")]
    assert h.acks(low["id"]) == ["received", "started", "preempted"]


def test_equal_priority_waits_its_turn_in_arrival_order(make_node):
    h = make_node(realtime=True)
    first = h.play("blip", priority=5, item_id="first")
    second = h.play("blip", priority=5, item_id="second")
    third = h.play("blip", priority=3, item_id="third")
    h.wait_ack(third["id"], "finished")
    assert ack_index(h, first["id"], "finished") < ack_index(h, second["id"], "started")
    assert ack_index(h, second["id"], "finished") < ack_index(h, third["id"], "started")
    assert [e["item_id"] for e in h.sink_lines()] == ["first", "second", "third"]
    assert not h.events("ack", status="preempted")


def test_stop_by_item_then_by_max_priority(make_node):
    h = make_node(realtime=True)
    playing = h.play("long", priority=3, item_id="playing")
    waiting = h.play("short", priority=3, item_id="waiting")
    later = int(time.time() * 1000) + 30_000
    future = h.play("short", priority=2, item_id="future", start_at=later)
    high = h.play("short", priority=5, item_id="high", start_at=later)
    h.wait_ack(playing["id"], "started")
    h.wait_ack(high["id"], "received")

    by_item = h.send("stop", {"item_id": "waiting"})
    h.wait_ack(by_item["id"], "finished")
    assert h.acks(by_item["id"]) == ["received", "finished"]
    assert h.acks(waiting["id"]) == ["received", "stopped"]
    assert h.wait_event("played", cmd_id=waiting["id"])["result"] == "stopped"
    assert h.agent.status()["playing"]["item_id"] == "playing"

    by_priority = h.send("stop", {"item_id": None, "max_priority": 3})
    h.wait_ack(by_priority["id"], "finished")
    assert h.acks(playing["id"]) == ["received", "started", "stopped"]
    assert h.acks(future["id"]) == ["received", "stopped"]
    assert h.acks(high["id"]) == ["received"]                 # above max_priority: untouched
    assert h.agent.status()["playing"] is None
    assert h.agent.status()["waiting"] == ["high"]
    assert h.wait_sink(lambda line: line["item_id"] == "playing")["result"] == "stopped"


def _quiet_now():
    now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    return [{"from": (now - timedelta(hours=1)).strftime("%H:%M"),
             "to": (now + timedelta(hours=1)).strftime("%H:%M")}]


def test_quiet_hours_skip_normal_play_but_emergency_plays_at_full_volume(node):
    node.send("desired", {"version": 1, "volume": 40, "quiet_hours": _quiet_now()})
    node.wait_event("desired_applied", version=1)
    normal = node.play("short", priority=3, volume=60)
    assert node.wait_ack(normal["id"], "skipped")["reason"] == "quiet_hours"
    played = node.wait_event("played", cmd_id=normal["id"])
    assert played["result"] == "skipped" and played["reason"] == "quiet_hours"
    emergency = node.play("short", priority=9, item_id="flood", volume=30)
    node.wait_ack(emergency["id"], "finished")
    assert node.acks(normal["id"]) == ["received", "skipped"]
    assert [(e["item_id"], e["volume"]) for e in node.sink_lines()] == [("flood", 100)]


def test_waiting_command_whose_exp_passes_is_skipped_expired(make_node):
    h = make_node(realtime=True)
    blocker = h.play("long", priority=5)
    h.wait_ack(blocker["id"], "started")
    short_lived = h.send("play", {"item": h.media.item("short"), "priority": 3}, ttl_ms=600)
    assert h.wait_ack(short_lived["id"], "skipped")["reason"] == "expired"
    assert h.wait_event("played", cmd_id=short_lived["id"])["reason"] == "expired"
    assert h.acks(blocker["id"]) == ["received", "started"]    # still playing


def test_future_start_at_waits_until_then(node):
    start_at = int(time.time() * 1000) + 600
    env = node.play("short", start_at=start_at)
    started = node.wait_ack(env["id"], "started")
    assert started["ts"] >= start_at
    assert node.wait_event("played", cmd_id=env["id"])["scheduled_at"] == start_at


def test_set_volume_applies_to_next_play_and_item_volume_overrides(node):
    node.wait_ack(node.send("set_volume", {"volume": 35})["id"], "finished")
    node.wait_ack(node.play("short", item_id="a")["id"], "finished")
    node.wait_ack(node.play("short", item_id="b", volume=60)["id"], "finished")
    assert [(e["item_id"], e["volume"]) for e in node.sink_lines()] == [("a", 35), ("b", 60)]


def test_amp_command_switches_relay_through_amplifier_interface(make_node):
    amp = RecordingAmplifier()
    h = make_node(amplifier=amp)
    h.wait_ack(h.send("amp", {"on": False})["id"], "finished")
    h.wait_ack(h.send("amp", {"on": True})["id"], "finished")
    assert amp.history == [False, True] and h.agent.status()["amp_on"] is True


def test_amp_fault_is_acked_failed_and_raises_alarm(make_node):
    h = make_node(amplifier=RecordingAmplifier(fail_with="relay coil open"))
    env = h.send("amp", {"on": True})
    assert h.wait_ack(env["id"], "failed")["reason"] == "amp_fault"
    assert "relay coil open" in h.wait_event("alarm", code="amp_fault")["detail"]


def test_test_command_plays_generated_tone_and_reports_result(node):
    env = node.send("test", {"kind": "tone"})
    finished = node.wait_ack(env["id"], "finished")
    assert finished["result"] == "ok" and "Hz tone" in finished["detail"]
    assert node.acks(env["id"]) == ["received", "started", "finished"]
    [line] = node.sink_lines()
    assert line["item_id"] == "test-tone" and line["result"] == "completed"
    [wav] = list(node.sink.glob("*.wav"))
    with wave.open(str(wav)) as w:
        assert w.getnframes() / w.getframerate() >= 1.0


def test_test_tone_with_amplifier_off_reports_fail(make_node):
    h = make_node(amplifier=RecordingAmplifier(initial=False))
    finished = h.wait_ack(h.send("test", {"kind": "tone"})["id"], "finished")
    assert finished["result"] == "fail" and "off" in finished["detail"]


def test_reboot_acks_received_then_runs_reboot_command(node):
    env = node.send("reboot", {})
    node.wait_ack(env["id"], "received")
    deadline = time.monotonic() + 10
    while not (node.dir / "rebooted").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (node.dir / "rebooted").exists()
    assert node.acks(env["id"]) == ["received"]


def test_every_way_a_play_ends_gives_its_command_a_last_ack():
    assert set(ACK_FOR_RESULT) == set(PlayResult)
