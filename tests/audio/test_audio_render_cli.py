"""`python -m audio.render` end to end, as a script would run it: text on stdin or a file with
--in, the result measured; bad input gives a clear error, a non-zero exit, and no file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audio.gtts_standin import StandIn
from tests.audio.helpers import TEXT, assert_broadcast_ready, espeak_wav, ffmpeg

ROOT = Path(__file__).resolve().parents[2]


def render(tmp_path: Path, *args: str, text: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "audio.render",
                           "--cache-dir", str(tmp_path / "cache"), *args],
                          input=(text or "").encode("utf-8"), capture_output=True, cwd=ROOT,
                          env=env, timeout=60)


def summary(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_text_on_stdin_is_rendered_broadcast_ready(tmp_path):
    out = tmp_path / "bulletin.mp3"
    result = summary(render(tmp_path, "--out", str(out), "--engine", "espeak",
                            "--voice", "vi-central", text=TEXT))
    assert result["engine"] == "espeak" and result["voice"] == "vi-central"
    assert result["bitrate"] == 48 and result["format"] == "mp3"
    assert abs(result["lufs"] + 16) <= 1 and result["true_peak"] <= -1
    assert result["duration_ms"] > 3000
    assert_broadcast_ready(out)


def test_upload_with_chime_as_opus_at_another_target(tmp_path):
    speech = espeak_wav(tmp_path / "speech.wav")
    quiet = tmp_path / "quiet.ogg"
    ffmpeg("-i", str(speech), "-af", "volume=-28dB", "-c:a", "libvorbis", str(quiet))
    out = tmp_path / "bulletin.opus"
    result = summary(render(tmp_path, "--in", str(quiet), "--out", str(out), "--chime",
                            "--format", "opus", "--target-lufs", "-18"))
    assert result["format"] == "opus" and result["engine"] is None
    assert_broadcast_ready(out, target=-18, codec="opus")


def test_gtts_through_a_standin_endpoint(tmp_path):
    out = tmp_path / "bulletin.mp3"
    with StandIn() as standin:
        result = summary(render(tmp_path, "--out", str(out), "--engine", "gtts,espeak",
                                "--gtts-endpoint", standin.url, text="Xin chào bà con."))
    assert result["engine"] == "gtts" and result["notes"] == []
    assert standin.texts == ["Xin chào bà con."]
    assert_broadcast_ready(out)


@pytest.mark.parametrize("case", ["not_audio", "empty_text", "missing_file", "bad_target"])
def test_bad_input_fails_clearly_without_an_output_file(tmp_path, case):
    out = tmp_path / "bulletin.mp3"
    fake = tmp_path / "fake.mp3"
    fake.write_text("không phải âm thanh", encoding="utf-8")
    args, text, code = {
        "not_audio": (["--in", str(fake)], None, "not_audio"),
        "empty_text": (["--engine", "espeak"], "  \n", "empty_text"),
        "missing_file": (["--in", str(tmp_path / "nope.wav")], None, "not_found"),
        "bad_target": (["--target-lufs", "5", "--engine", "espeak"], TEXT, "bad_setting"),
    }[case]
    done = render(tmp_path, "--out", str(out), *args, text=text)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"error: {code}: " in err
    assert done.stdout == b""
    assert not out.exists()
