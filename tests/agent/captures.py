"""Microphone captures of the acoustic self-test's tone sequence, made with ffmpeg from the very
file the agent plays (``selftest.make_sequence``): delayed as a player's start-up delays it,
changed as a horn and a room change it, under pink background noise, recorded as ``arecord``
records (mono 16-bit PCM at 16 kHz)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from device_agent.selftest import make_sequence

# What the room and the horn do to the sequence, as ffmpeg audio filters (after the delay).
CLEAN = "volume=-12dB"                                  # every tone at -18 dBFS
SILENT = "volume=0"                                     # a dead horn: the room's noise only
CLIPPED = "volume=+20dB"                                # the microphone's input overdriven
DISTORTED = "volume=+12dB,asoftclip=type=hard,volume=-16dB"  # a horn that distorts, heard clean
# a dead tweeter: an 8-pole low-pass at 1.8 kHz takes the 3 kHz tone down by some 40 dB
DEAD_TWEETER = "volume=-12dB," + ",".join(["lowpass=f=1800:p=2"] * 4)
FAST = "volume=-12dB,asetrate=22710,aresample=22050"    # played 3 % fast: wrong sample rate


def sequence(folder: Path) -> Path:
    return make_sequence(folder / "sequence.wav")


def capture(folder: Path, played: Path, name: str, chain: str, *, delay_ms: int = 600,
            noise: float = 0.003, seconds: float = 4.5, rate: int = 16000) -> Path:
    """``played`` heard through ``chain`` after ``delay_ms``, over pink noise of amplitude
    ``noise``, cut at ``seconds``."""
    out = folder / f"{name}.wav"
    graph = (f"[0:a]adelay={delay_ms},{chain},apad[s];"
             f"anoisesrc=a={noise}:c=pink:r=22050:seed=7[n];"
             f"[s][n]amix=inputs=2:normalize=0:duration=shortest,atrim=0:{seconds}")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(played),
                    "-filter_complex", graph, "-ar", str(rate), "-ac", "1", "-c:a", "pcm_s16le",
                    str(out)], check=True)
    return out


def digital_silence(folder: Path, seconds: float = 4.0) -> Path:
    out = folder / "zeros.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-t", str(seconds), "-c:a", "pcm_s16le",
                    str(out)], check=True)
    return out
