"""The one place that starts ffmpeg and ffprobe: finding the binaries, running them with a
timeout, and turning a failure into an AudioError that says what went wrong."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence


class AudioError(RuntimeError):
    """Audio that could not be decoded, measured or encoded."""


def binary(name: str) -> str:
    """The path of ``ffmpeg`` or ``ffprobe``; AudioError when it is not installed."""
    exe = shutil.which(name)
    if exe is None:
        raise AudioError(f"{name} is not installed")
    return exe


def ffmpeg_args(*args: str) -> list[str]:
    """An ffmpeg command line with the project's quiet defaults in front of ``args``."""
    return [binary("ffmpeg"), "-hide_banner", "-nostdin", "-nostats", "-y", *args]


def run(argv: Sequence[str], *, input: bytes | None = None, timeout: float = 600,
        what: str = "ffmpeg") -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; AudioError (with the end of stderr) on a non-zero exit."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AudioError(f"{what} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise AudioError(f"{what} failed (exit {done.returncode}): {tail(done.stderr)}")
    return done


def tail(stderr: bytes, limit: int = 300) -> str:
    """The last, most telling part of a tool's stderr, as one line."""
    text = stderr.decode("utf-8", errors="replace").strip().replace("\n", " | ")
    return text[-limit:]
