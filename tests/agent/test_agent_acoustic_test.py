"""The acoustic self-test end to end: a signed ``test`` command of kind ``acoustic`` over the
test's Mosquitto, the agent playing its tone sequence into the file sink while a recorder hands
it a capture (a recorded file behind the Recorder interface, as arecord's would be), and the
``finished`` ack saying ok or fail with each tone's numbers."""
import shutil
from pathlib import Path


from device_agent.amp import RecordingAmplifier
from device_agent.selftest import Recorder, Recording
from tests.agent import captures


class _Done(Recording):
    def __init__(self, path: Path):
        self.path = path

    def wait(self, timeout: float) -> Path | None:
        return self.path

    def cancel(self) -> None:
        pass


class RecordedMicrophone(Recorder):
    """A microphone that 'records' ``heard``: copies it where arecord would have written."""

    name = "recorded"

    def __init__(self, heard: Path):
        self.heard = heard
        self.asked: list[float] = []

    def start(self, path: Path, seconds: float) -> Recording:
        self.asked.append(seconds)
        shutil.copyfile(self.heard, path)
        return _Done(path)


def test_acoustic_test_of_a_working_horn_acks_ok_with_each_tones_level(
        make_node, folder, played):
    mic = RecordedMicrophone(captures.capture(folder, played, "clean", captures.CLEAN))
    h = make_node(recorder=mic)
    env = h.send("test", {"kind": "acoustic"})
    finished = h.wait_ack(env["id"], "finished")
    assert finished["result"] == "ok" and finished.get("reason") is None, finished
    assert finished["detail"] == ("volume 80: 500Hz -18.0dBFS ok; 1000Hz -18.0dBFS ok; "
                                  "2000Hz -18.0dBFS ok; 3000Hz -18.0dBFS ok")
    assert h.acks(env["id"]) == ["received", "started", "finished"]
    assert mic.asked and mic.asked[0] > 1.9   # the sequence and a margin
    [line] = h.sink_lines()
    assert line["item_id"] == "test-acoustic" and line["result"] == "completed"
    [wav] = list(h.sink.glob("*.wav"))
    assert wav.read_bytes() == played.read_bytes()   # the sequence the capture was made from
    assert not h.events("played")   # a test is no proof of play


def test_acoustic_test_of_a_horn_with_a_dead_tweeter_acks_fail_naming_the_frequency(
        make_node, folder, played):
    mic = RecordedMicrophone(captures.capture(folder, played, "tweeter", captures.DEAD_TWEETER))
    h = make_node(recorder=mic)
    finished = h.wait_ack(h.send("test", {"kind": "acoustic"})["id"], "finished")
    assert finished["result"] == "fail" and finished["reason"] == "tone_missing"
    assert "500Hz -18.1dBFS ok" in finished["detail"]
    assert "3000Hz missing (" in finished["detail"]


def test_acoustic_test_of_a_silent_horn_with_the_amplifier_off_says_so(
        make_node, folder, played):
    mic = RecordedMicrophone(captures.capture(folder, played, "silent", captures.SILENT))
    h = make_node(recorder=mic, amplifier=RecordingAmplifier(initial=False))
    finished = h.wait_ack(h.send("test", {"kind": "acoustic"})["id"], "finished")
    assert finished["result"] == "fail" and finished["reason"] == "no_sound"
    assert finished["detail"].endswith("; amplifier off")


def test_acoustic_test_without_a_microphone_acks_fail_no_microphone_and_plays_nothing(
        make_node):
    h = make_node(mic={"device": ""})   # the real arecord recorder, no device configured
    env = h.send("test", {"kind": "acoustic"})
    finished = h.wait_ack(env["id"], "finished")
    assert finished["result"] == "fail" and finished["reason"] == "no_microphone"
    assert "no microphone configured (mic.device)" in finished["detail"]
    assert h.sink_lines() == []
    # the agent goes on: the tone test still works
    assert h.wait_ack(h.send("test", {"kind": "tone"})["id"], "finished")["result"] == "ok"


def test_acoustic_test_of_an_unknown_kind_is_rejected_malformed(node):
    env = node.send("test", {"kind": "sweep"})
    assert node.wait_ack(env["id"], "rejected")["reason"] == "malformed"
