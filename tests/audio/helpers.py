"""Helpers the audio tests share: a Vietnamese bulletin's text, ffmpeg and espeak-ng run as the
tests run them, what a stored file's stream is, and the broadcast-ready check (loudness within
1 LU of the target, true peak at or under -1 dBTP, mono, at most 64 kbps)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from audio.loudness import measure_loudness

TEXT = ("Ủy ban nhân dân phường thông báo: sáng chủ nhật này tổ chức tổng vệ sinh "
        "môi trường tại các tuyến hẻm. Đề nghị bà con tham gia đầy đủ.")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True, timeout=60)


def espeak_wav(path: Path, text: str = TEXT) -> Path:
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(path), text], check=True, timeout=60)
    return path


def stream_info(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_name,channels,sample_rate,bit_rate:format=bit_rate",
                          "-of", "json", str(path)], capture_output=True, check=True, timeout=30)
    info = json.loads(out.stdout)
    stream = info["streams"][0]
    stream["format_bit_rate"] = int(info["format"].get("bit_rate") or 0)
    return stream


def assert_broadcast_ready(path: Path, target: float = -16.0, codec: str = "mp3") -> None:
    lufs, tp = measure_loudness(path)
    assert abs(lufs - target) <= 1.0, f"{path.name}: {lufs} LUFS, target {target}"
    assert tp <= -1.0, f"{path.name}: true peak {tp} dBTP"
    info = stream_info(path)
    assert info["codec_name"] == codec
    assert info["channels"] == 1
    bitrate = int(info.get("bit_rate") or info["format_bit_rate"])
    assert 0 < bitrate <= 64_000, bitrate


def media_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
