"""The acoustic self-test's judgement of real captures (ffmpeg-made, tests/agent/captures.py):
a clean one passes with each tone's level; silence, clipping, distortion, a missing tone, a
wrong speed each fail with the reason and the numbers a technician reads. And the recorder:
the arecord command it runs, and its errors when there is no microphone."""
import hashlib
import os
import stat
import wave
from pathlib import Path

import pytest

from device_agent.player import Cancel, FileSinkPlayer, Interruption, PlayRequest
from device_agent.selftest import (
    AcousticSelfTest,
    ArecordRecorder,
    Problem,
    Reason,
    RecorderError,
    TonePlan,
    judge_capture,
    verdict_of,
)
from tests.agent import captures


def judge(folder, played, chain, **kw):
    name = "cap-" + hashlib.sha256(repr((chain, sorted(kw.items()))).encode()).hexdigest()[:12]
    return judge_capture(captures.capture(folder, played, name, chain, **kw))


@pytest.mark.parametrize("delay_ms", [300, 600, 1700])
def test_a_clean_capture_passes_with_every_tones_level_wherever_the_sequence_starts(
        folder, played, delay_ms):
    verdict = judge(folder, played, captures.CLEAN, delay_ms=delay_ms)
    assert verdict.passed and verdict.result == "ok", verdict.detail
    # played at -6 dBFS, heard 12 dB lower
    assert [t.hz for t in verdict.tones] == [500, 1000, 2000, 3000]
    for tone in verdict.tones:
        assert tone.problem is None
        assert -19.0 <= tone.level_dbfs <= -17.0, tone
        assert abs(tone.measured_hz - tone.hz) < tone.hz * 0.005, tone
        assert tone.thd_pct < 2 and tone.noise_dbfs is not None and tone.noise_dbfs < -60
    assert verdict.detail.startswith("500Hz -18.0dBFS ok; 1000Hz ")
    assert verdict.clipped_pct == 0


def test_a_microphone_that_records_at_48_khz_is_judged_alike(folder, played):
    verdict = judge(folder, played, captures.CLEAN, rate=48000)
    assert verdict.passed, verdict.detail
    assert all(-19.0 <= t.level_dbfs <= -17.0 for t in verdict.tones)


def test_a_capture_under_loud_traffic_noise_still_finds_the_tones(folder, played):
    verdict = judge(folder, played, captures.CLEAN, noise=0.3)
    assert verdict.passed, verdict.detail


def test_a_silent_capture_fails_no_sound_with_each_tones_level(folder, played):
    verdict = judge(folder, played, captures.SILENT)
    assert verdict.reason is Reason.NO_SOUND and verdict.result == "fail"
    assert all(t.problem is Problem.MISSING and t.level_dbfs < -60 for t in verdict.tones)
    assert verdict.detail.startswith("500Hz missing (-")


def test_noise_as_loud_as_a_tone_is_not_taken_for_one(folder, played):
    verdict = judge(folder, played, captures.SILENT, noise=0.5)
    assert verdict.reason is Reason.NO_SOUND, verdict.detail
    assert all(t.level_dbfs > -50 for t in verdict.tones)   # loud, yet no tone stands out


def test_digital_silence_says_the_microphone_may_be_muted(folder):
    verdict = judge_capture(captures.digital_silence(folder))
    assert verdict.reason is Reason.NO_SOUND and "microphone muted" in verdict.detail


def test_a_clipped_capture_fails_clipped(folder, played):
    verdict = judge(folder, played, captures.CLIPPED)
    assert verdict.reason is Reason.CLIPPED
    assert verdict.clipped_pct is not None and verdict.clipped_pct > 10
    assert verdict.detail.startswith("capture clipped ")


def test_a_distorting_horn_fails_distorted_with_its_thd(folder, played):
    verdict = judge(folder, played, captures.DISTORTED)
    assert verdict.reason is Reason.DISTORTED, verdict.detail
    assert verdict.clipped_pct == 0   # the microphone heard it cleanly: the horn distorts
    low = verdict.tones[0]
    assert low.problem is Problem.DISTORTED and low.thd_pct > 15
    assert f"500Hz {low.level_dbfs:.1f}dBFS distorted (THD {low.thd_pct:.0f}%)" in verdict.detail


def test_a_dead_tweeter_fails_naming_the_missing_frequency(folder, played):
    verdict = judge(folder, played, captures.DEAD_TWEETER)
    assert verdict.reason is Reason.TONE_MISSING, verdict.detail
    assert [t.problem for t in verdict.tones] == [None, None, None, Problem.MISSING]
    assert "3000Hz missing (" in verdict.detail and "500Hz -18" in verdict.detail


def test_a_sequence_played_at_the_wrong_speed_fails_off_frequency(folder, played):
    verdict = judge(folder, played, captures.FAST)
    assert verdict.reason is Reason.OFF_FREQUENCY, verdict.detail
    assert all(t.problem is Problem.OFF_FREQUENCY for t in verdict.tones)
    assert "1000Hz -18.0dBFS off (1030Hz)" in verdict.detail


def test_a_capture_shorter_than_the_sequence_fails_recording_failed(folder, played):
    verdict = judge(folder, played, captures.CLEAN, delay_ms=0, seconds=1.0)
    assert verdict.reason is Reason.RECORDING_FAILED and "too short" in verdict.detail


def test_an_unreadable_capture_fails_recording_failed(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    verdict = judge_capture(bad)
    assert verdict.reason is Reason.RECORDING_FAILED and "unreadable" in verdict.detail


def test_the_sequence_is_four_tones_of_300_ms_between_silences(played):
    plan = TonePlan()
    with wave.open(str(played)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert abs(w.getnframes() / w.getframerate() - plan.duration_s) < 0.01
    assert plan.duration_s == pytest.approx(1.9)


# --- the recorder ---------------------------------------------------------------------------

def test_arecord_records_mono_16_bit_16_khz_from_the_configured_device_in_whole_seconds():
    argv = ArecordRecorder("plughw:CARD=Device,DEV=0").argv(Path("/tmp/c.wav"), 4.4)
    assert argv == ["arecord", "-q", "-D", "plughw:CARD=Device,DEV=0", "-t", "wav",
                    "-f", "S16_LE", "-c", "1", "-r", "16000", "-d", "5", "/tmp/c.wav"]


def test_no_arecord_installed_is_no_microphone(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # nothing on it
    with pytest.raises(RecorderError) as err:
        ArecordRecorder("default").start(tmp_path / "c.wav", 4)
    assert err.value.reason is Reason.NO_MICROPHONE
    assert "arecord not found: install alsa-utils" in err.value.detail


def test_no_microphone_configured_is_no_microphone(tmp_path):
    with pytest.raises(RecorderError) as err:
        ArecordRecorder("").start(tmp_path / "c.wav", 4)
    assert err.value.reason is Reason.NO_MICROPHONE and "mic.device" in err.value.detail


def fake_arecord(folder: Path, script: str) -> Path:
    """An ``arecord`` on PATH that runs ``script`` (bash; "$@" is the real argv)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "arecord"
    exe.write_text(f"#!/bin/bash\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_a_device_arecord_cannot_open_is_no_microphone_with_arecords_words(
        tmp_path, monkeypatch):
    bin_dir = fake_arecord(tmp_path, 'echo "arecord: main:831: audio open error: No such file '
                                     'or directory" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RecorderError) as err:
        ArecordRecorder("plughw:CARD=Nope").start(tmp_path / "c.wav", 4)
    assert err.value.reason is Reason.NO_MICROPHONE
    assert "plughw:CARD=Nope exited 1" in err.value.detail
    assert "audio open error" in err.value.detail


def test_the_self_test_records_through_arecord_while_the_player_plays_and_judges_it(
        tmp_path, monkeypatch, folder, played):
    """AcousticSelfTest with the real ArecordRecorder: an arecord that writes, after a while,
    what a microphone in front of a sound horn records."""
    heard = captures.capture(folder, played, "arecord-heard", captures.CLEAN)
    log = tmp_path / "argv"
    # still running after OPEN_S (here 0.1 s, not 0.3: what it waits for a failure at once)
    monkeypatch.setattr(ArecordRecorder, "OPEN_S", 0.1)
    bin_dir = fake_arecord(tmp_path, f'echo "$@" > {log}; sleep 0.3; cp {heard} "${{@: -1}}"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sink = FileSinkPlayer(tmp_path / "sink", realtime=False)
    test = AcousticSelfTest(sink, ArecordRecorder("hw:1,0"), tmp_path)
    test.prepare()
    outcome = test.play(PlayRequest(test.sequence, "test-acoustic", None, 70, test.duration_ms),
                        Cancel())
    verdict = verdict_of(outcome)
    assert outcome.result == "completed" and verdict is not None
    assert verdict.passed and verdict.detail.startswith("volume 70: 500Hz -18.0dBFS ok"), verdict
    assert log.read_text().split()[:4] == ["-q", "-D", "hw:1,0", "-t"]
    assert "-d 5" in log.read_text()   # 1.9 s of sequence and 2.5 s of margin, rounded up
    assert [p.name for p in (tmp_path / "sink").glob("*.wav")]   # the sequence was played
    assert test.capture.read_bytes() == heard.read_bytes()


def test_a_stopped_self_test_ends_its_recording_and_says_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(ArecordRecorder, "OPEN_S", 0.1)
    bin_dir = fake_arecord(tmp_path, f'echo $$ > {tmp_path}/pid; exec sleep 30')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cancel = Cancel()
    cancel.set(Interruption.PREEMPTED)   # an emergency came in while it played
    sink = FileSinkPlayer(tmp_path / "sink", realtime=True)
    test = AcousticSelfTest(sink, ArecordRecorder("hw:1,0"), tmp_path)
    test.prepare()
    outcome = test.play(PlayRequest(test.sequence, "test-acoustic", None, 70, test.duration_ms),
                        cancel)
    assert (outcome.result, outcome.detail) == ("stopped", "preempted")
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)   # arecord was ended and reaped
