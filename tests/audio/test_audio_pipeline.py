"""The broadcast pipeline end to end on real ffmpeg and espeak-ng: every result is measured
(integrated loudness within 1 LU of the target, true peak at or under -1 dBTP, mono, at most
64 kbps) whether it started as speech, a clipped square wave, or a whisper-quiet recording."""
from __future__ import annotations

from pathlib import Path

import pytest

from audio.chime import INTRO, OUTRO, generate_all
from audio.loudness import measure, measure_loudness
from audio.pipeline import AudioSettings, Pipeline
from audio.probe import UploadError
from audio.store import MediaStore, probe_duration_ms
from audio.tts import build_chain
from tests.audio.helpers import (TEXT, assert_broadcast_ready, decoded_ms, espeak_wav, ffmpeg,
                                 media_files)


@pytest.fixture
def pipeline(tmp_path, media) -> Pipeline:
    cache = tmp_path / "cache"
    return Pipeline(MediaStore(media), build_chain(["espeak"], cache_dir=cache), cache_dir=cache)


def rendered_file(tmp_path: Path, rendered) -> Path:
    path = tmp_path / f"out.{rendered.ext}"
    path.write_bytes(rendered.audio)
    return path


# --- speech -------------------------------------------------------------------------------------

def test_spoken_bulletin_is_stored_broadcast_ready(pipeline, media, tmp_path):
    out = pipeline.render_text(TEXT, "vi-south")
    assert out.engine == "espeak" and out.voice == "vi-south"
    assert out.stored is not None and out.stored.path.is_file()
    assert out.stored.path.read_bytes() == out.audio
    assert out.stored.path.is_relative_to(media)
    assert_broadcast_ready(out.stored.path)
    # the length a player plays, to the millisecond (not the container's padded duration)
    assert abs(out.duration_ms - decoded_ms(out.stored.path)) <= 1
    assert abs(out.lufs + 16) <= 0.5 and out.true_peak <= -1.0


def test_opus_output_is_broadcast_ready(pipeline, tmp_path):
    out = pipeline.render_text(TEXT, settings=AudioSettings(fmt="opus"))
    assert out.ext == "opus" and out.stored.path.suffix == ".opus"
    assert_broadcast_ready(out.stored.path, codec="opus")
    assert abs(out.duration_ms - decoded_ms(out.stored.path)) <= 1


def test_configured_target_is_met(pipeline, tmp_path):
    out = pipeline.render_text(TEXT, settings=AudioSettings(target_lufs=-23.0))
    assert_broadcast_ready(out.stored.path, target=-23.0)


# --- uploads far from the target -------------------------------------------------------------

def test_clipped_square_wave_upload_is_brought_down_to_target(pipeline, tmp_path):
    loud = tmp_path / "loud.wav"
    # a 220 Hz sine driven 40 dB into clipping: a square wave at full scale
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=6", "-af", "volume=40dB",
           "-c:a", "pcm_s16le", str(loud))
    before, _ = measure_loudness(loud)
    assert before > -4, before
    out = pipeline.render_upload(loud)
    assert_broadcast_ready(rendered_file(tmp_path, out))


def test_very_quiet_upload_is_raised_to_target(pipeline, tmp_path):
    speech = espeak_wav(tmp_path / "speech.wav")
    lufs, _ = measure_loudness(speech)
    quiet = tmp_path / "quiet.m4a"
    ffmpeg("-i", str(speech), "-af", f"volume={-45 - lufs:.2f}dB", "-c:a", "aac", "-b:a", "64k",
           str(quiet))
    before, _ = measure_loudness(quiet)
    assert abs(before + 45) <= 1.5, before
    out = pipeline.render_upload(quiet)
    assert out.limited          # +29 dB needs a limiter to keep the peaks under -1 dBTP
    assert_broadcast_ready(rendered_file(tmp_path, out))


def test_very_short_clip_is_normalised(pipeline, tmp_path):
    beep = tmp_path / "beep.flac"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=880:duration=0.8", "-af", "volume=-20dB",
           str(beep))
    out = pipeline.render_upload(beep)
    assert_broadcast_ready(rendered_file(tmp_path, out))
    assert abs(out.duration_ms - decoded_ms(rendered_file(tmp_path, out))) <= 1


# --- trim and chime -----------------------------------------------------------------------------

def test_silence_is_trimmed_at_both_ends(pipeline, tmp_path):
    speech = espeak_wav(tmp_path / "speech.wav")
    padded = tmp_path / "padded.wav"
    ffmpeg("-i", str(speech), "-af", "adelay=3000,apad=pad_dur=4", str(padded))
    spoken_ms = probe_duration_ms(speech)
    assert probe_duration_ms(padded) >= spoken_ms + 6900
    out = pipeline.render_upload(padded)
    # espeak leaves a little silence of its own; 3 s + 4 s of padding must be gone
    assert out.duration_ms <= spoken_ms + 400, (out.duration_ms, spoken_ms)
    assert out.duration_ms >= spoken_ms - 1200


def test_chime_frames_the_bulletin_and_lengthens_it(pipeline, tmp_path):
    plain = pipeline.render_text(TEXT)
    chimed = pipeline.render_text(TEXT, settings=AudioSettings(chime="both"))
    chimes_ms = probe_duration_ms(INTRO) + probe_duration_ms(OUTRO) + 2 * 300
    assert chimed.duration_ms - plain.duration_ms >= chimes_ms - 200
    assert chimed.sha256 != plain.sha256
    assert_broadcast_ready(chimed.stored.path)
    intro_only = pipeline.render_text(TEXT, settings=AudioSettings(chime="intro"))
    assert plain.duration_ms < intro_only.duration_ms < chimed.duration_ms


def test_shipped_chime_is_what_the_generator_makes(tmp_path):
    made = generate_all(tmp_path)
    for shipped, fresh in zip((INTRO, OUTRO), made, strict=True):
        shipped_ms, fresh_ms = probe_duration_ms(shipped), probe_duration_ms(fresh)
        assert abs(shipped_ms - fresh_ms) <= 5
        # metered as measure_loudness meters them, on the durations just probed
        a, b = measure(shipped, shipped_ms / 1000), measure(fresh, fresh_ms / 1000)
        assert abs(a.integrated_lufs - b.integrated_lufs) <= 0.2
        assert a.true_peak_dbtp is not None and b.true_peak_dbtp is not None
        assert abs(a.true_peak_dbtp - b.true_peak_dbtp) <= 0.2


# --- refusals -----------------------------------------------------------------------------------

def test_silent_upload_is_refused_and_nothing_stored(pipeline, media, tmp_path):
    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5", str(silence))
    with pytest.raises(UploadError) as err:
        pipeline.render_upload(silence)
    assert err.value.code == "silent"
    assert media_files(media) == []


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="target_lufs"):
        AudioSettings(target_lufs=3)
    with pytest.raises(ValueError, match="audio.chime"):
        AudioSettings.from_mapping({"chime": "loud"}, prefix="audio.")
    with pytest.raises(ValueError, match="audio.volume: unknown"):
        AudioSettings.from_mapping({"volume": 3}, prefix="audio.")
