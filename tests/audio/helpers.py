"""Helpers the audio tests share: a Vietnamese bulletin's text, ffmpeg and espeak-ng run as the
tests run them, what a stored file's stream is, and the broadcast-ready check (loudness within
1 LU of the target, true peak at or under -1 dBTP, mono, at most 64 kbps)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from audio.loudness import measure

TEXT = ("Ủy ban nhân dân phường thông báo: sáng chủ nhật này tổ chức tổng vệ sinh "
        "môi trường tại các tuyến hẻm. Đề nghị bà con tham gia đầy đủ.")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True, timeout=60)


def espeak_wav(path: Path, text: str = TEXT) -> Path:
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(path), text], check=True, timeout=60)
    return path


def decoded_ms(path: Path) -> float:
    """How long a player plays ``path``: ffmpeg decodes it to 48 kHz mono and the samples it
    gives are counted (a container's declared duration can hold an encoder's padding)."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                          "-i", str(path), "-ac", "1", "-ar", "48000", "-f", "s16le", "-"],
                         capture_output=True, check=True, timeout=60)
    return len(out.stdout) / 2 / 48


def stream_info(path: Path) -> dict:
    """The first stream's codec, channels, rate and bit rate, with the file's bit rate
    (``format_bit_rate``) and its duration in seconds as ffprobe reads it, to the millisecond
    as ``audio.store.probe_duration_ms`` gives it (``duration_s``; None when it has none)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_name,channels,sample_rate,bit_rate"
                          ":format=bit_rate,duration",
                          "-of", "json", str(path)], capture_output=True, check=True, timeout=30)
    info = json.loads(out.stdout)
    stream = info["streams"][0]
    stream["format_bit_rate"] = int(info["format"].get("bit_rate") or 0)
    duration = info["format"].get("duration")
    stream["duration_s"] = round(float(duration) * 1000) / 1000.0 if duration else None
    return stream


def assert_broadcast_ready(path: Path, target: float = -16.0, codec: str = "mp3") -> None:
    # one ffprobe for the stream and for the duration the meter needs (a clip under 3 s is
    # metered looped): what audio.loudness.measure_loudness measures, without probing twice
    info = stream_info(path)
    found = measure(path, info["duration_s"])
    lufs = found.integrated_lufs
    tp = found.true_peak_dbtp if found.true_peak_dbtp is not None else float("-inf")
    assert abs(lufs - target) <= 1.0, f"{path.name}: {lufs} LUFS, target {target}"
    assert tp <= -1.0, f"{path.name}: true peak {tp} dBTP"
    assert info["codec_name"] == codec
    assert info["channels"] == 1
    bitrate = int(info.get("bit_rate") or info["format_bit_rate"])
    assert 0 < bitrate <= 64_000, bitrate


def media_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
