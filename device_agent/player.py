"""Audio output behind one small interface: ``Player.play(request, cancel)`` blocks until the
media ended, failed, or ``cancel`` was set from another thread (preemption, stop, shutdown).

Real players run a subprocess (mpv, ffplay, or ``ffmpeg -f wav - | aplay`` since aplay cannot
read MP3); ``FileSinkPlayer`` is the test double and demo sink: it copies each played file into a
directory and appends a JSON line to ``played.jsonl``. ``make_tone`` writes the test tone.
"""
from __future__ import annotations

import array
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import wave
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from .config import PlayerKind
from .files import atomic_file
from .schemas import PlayResult

log = logging.getLogger(__name__)

POLL_S = 0.05


class Interruption(StrEnum):
    """Why a play was cut short from another thread (``Cancel.set``)."""
    PREEMPTED = "preempted"    # something of a higher priority starts
    STOPPED = "stopped"        # a stop command
    SHUTDOWN = "shutdown"      # the agent stops


class Cancel:
    """Ends a play early from another thread; ``reason`` says why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: Interruption | None = None

    def set(self, reason: Interruption) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def outcome(self) -> PlayOutcome:
        """What a play cut short by this cancel ended as: stopped, and why."""
        return PlayOutcome(PlayResult.STOPPED, self.reason or Interruption.STOPPED)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class PlayRequest:
    path: Path
    item_id: str
    sha256: str | None
    volume: int                      # 0-100
    duration_ms: int | None = None   # as the command named it; None when unknown


@dataclass(frozen=True)
class PlayOutcome:
    result: PlayResult  # completed, stopped (the cancel was set: detail is why) or failed
    detail: str = ""


class Player(ABC):
    """Plays one file at a time; ``play`` blocks and must return soon after ``cancel`` is set."""

    name = "player"

    @abstractmethod
    def play(self, request: PlayRequest, cancel: Cancel) -> PlayOutcome:
        """Play ``request.path`` at ``request.volume``; never raises for a bad file."""

    @classmethod
    def available(cls) -> bool:
        return True


class SubprocessPlayer(Player):
    """A player that is a pipeline of commands; cancelling terminates every process of it."""

    @abstractmethod
    def pipeline(self, request: PlayRequest) -> list[list[str]]:
        """The commands, each reading the previous one's stdout."""

    def play(self, request: PlayRequest, cancel: Cancel) -> PlayOutcome:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            stdin: int | IO[bytes] | None = subprocess.DEVNULL
            for argv in self.pipeline(request):
                proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=self.env())
                if procs and procs[-1].stdout:
                    procs[-1].stdout.close()  # the next process owns the pipe now
                procs.append(proc)
                stdin = proc.stdout
        except OSError as err:
            self._kill(procs)
            return PlayOutcome(PlayResult.FAILED, f"{self.name}: {err}")
        last = procs[-1]
        while last.poll() is None:
            if cancel.wait(POLL_S):
                self._kill(procs)
                for p in procs:
                    if p.stderr:
                        p.stderr.close()
                return cancel.outcome()
        self._kill(procs)
        errors = " ".join((p.stderr.read() if p.stderr else b"").decode(errors="replace").strip()
                          for p in procs).strip()
        for p in procs:
            if p.stderr:
                p.stderr.close()
        codes = [p.returncode for p in procs]
        if all(code == 0 for code in codes) and not self.reports_failure(request, errors):
            return PlayOutcome(PlayResult.COMPLETED)
        return PlayOutcome(PlayResult.FAILED, f"{self.name} exited {codes}: {errors[-300:]}")

    def reports_failure(self, request: PlayRequest, stderr: str) -> bool:
        """Whether a run that exited 0 still failed, judged from its stderr."""
        return False

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @staticmethod
    def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(2)
            for stream in (p.stdout,):
                if stream:
                    stream.close()

    @classmethod
    def available(cls) -> bool:
        return all(shutil.which(cmd) for cmd in cls.needs)

    needs: tuple[str, ...] = ()


class MpvPlayer(SubprocessPlayer):
    name = "mpv"
    needs = ("mpv",)

    def pipeline(self, request: PlayRequest) -> list[list[str]]:
        return [["mpv", "--no-config", "--no-video", "--no-input-terminal", "--msg-level=all=error",
                 f"--volume={request.volume}", str(request.path)]]

    def reports_failure(self, request: PlayRequest, stderr: str) -> bool:
        return "no sound" in stderr  # mpv goes on silently without an audio device


class FfplayPlayer(SubprocessPlayer):
    name = "ffplay"
    needs = ("ffplay",)

    def pipeline(self, request: PlayRequest) -> list[list[str]]:
        return [["ffplay", "-nodisp", "-autoexit", "-loglevel", "error",
                 "-volume", str(request.volume), str(request.path)]]

    def reports_failure(self, request: PlayRequest, stderr: str) -> bool:
        # ffplay exits 0 when it cannot open the file or the sound card; it only says so
        return (f"{request.path}: " in stderr or "audio open failed" in stderr
                or "Failed to open file" in stderr)


class AplayPlayer(SubprocessPlayer):
    name = "aplay"
    needs = ("ffmpeg", "aplay")

    def pipeline(self, request: PlayRequest) -> list[list[str]]:
        gain = f"{request.volume / 100:.2f}"
        return [["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(request.path),
                 "-af", f"volume={gain}", "-f", "wav", "-"],
                ["aplay", "-q"]]


def wav_duration_ms(path: Path) -> int | None:
    try:
        with wave.open(str(path), "rb") as w:
            return int(w.getnframes() * 1000 / w.getframerate())
    except (wave.Error, OSError, EOFError):
        return None


SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


class FileSinkPlayer(Player):
    """Plays into a directory: copies the media to ``<utc-ms>-<item_id>-<sha256>.<ext>`` and
    appends ``{item_id, sha256, started_at, ended_at, volume, result}`` to played.jsonl.

    With ``realtime`` it takes the media's duration (cancellable), else it returns at once.
    """

    name = "file"

    def __init__(self, sink_dir: str | Path, realtime: bool = True):
        self.sink_dir = Path(sink_dir)
        self.sink_dir.mkdir(parents=True, exist_ok=True)
        self.realtime = realtime
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        return self.sink_dir / "played.jsonl"

    def play(self, request: PlayRequest, cancel: Cancel) -> PlayOutcome:
        started = int(time.time() * 1000)
        ext = request.path.suffix.lstrip(".") or "audio"
        name = f"{started}-{SAFE_RE.sub('_', request.item_id)}-{request.sha256 or 'none'}.{ext}"
        try:
            shutil.copyfile(request.path, self.sink_dir / name)
        except OSError as err:
            return self._record(request, started, PlayOutcome(PlayResult.FAILED, str(err)))
        duration = request.duration_ms
        if duration is None:
            duration = wav_duration_ms(request.path) or 0
        outcome = PlayOutcome(PlayResult.COMPLETED)
        if self.realtime and duration > 0:
            if cancel.wait(duration / 1000):
                outcome = cancel.outcome()
        elif cancel.is_set():
            outcome = cancel.outcome()
        return self._record(request, started, outcome)

    def _record(self, request: PlayRequest, started: int, outcome: PlayOutcome) -> PlayOutcome:
        # The sink writes the cancel reason (preempted, stopped) so a reader sees why it ended.
        result = outcome.detail if outcome.result == PlayResult.STOPPED else outcome.result
        line = {"item_id": request.item_id, "sha256": request.sha256, "started_at": started,
                "ended_at": int(time.time() * 1000), "volume": request.volume, "result": result}
        with self._lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        return outcome


REAL_PLAYERS: dict[str, type[SubprocessPlayer]] = {
    PlayerKind.MPV: MpvPlayer, PlayerKind.FFPLAY: FfplayPlayer, PlayerKind.APLAY: AplayPlayer}


class NoPlayerError(RuntimeError):
    pass


def make_player(kind: str, sink_dir: str | Path = "", realtime: bool = True) -> Player:
    """The player ``kind`` names; ``auto`` picks the first of mpv, ffplay, aplay installed."""
    if kind == PlayerKind.FILE:
        return FileSinkPlayer(sink_dir, realtime)
    if kind == PlayerKind.AUTO:
        for cls in REAL_PLAYERS.values():
            if cls.available():
                return cls()
        raise NoPlayerError("no audio player found: install mpv, ffplay or ffmpeg+aplay")
    cls = REAL_PLAYERS[kind]
    if not cls.available():
        raise NoPlayerError(f"player {kind} needs {' and '.join(cls.needs)} on PATH")
    return cls()


def tone_samples(freq_hz: float, seconds: float, rate: int, level: float = 0.5,
                 fade_s: float = 0.02) -> array.array[int]:
    """A 16-bit sine at ``level`` of full scale, faded in and out over ``fade_s`` (no clicks)."""
    frames = int(rate * seconds)
    fade = int(rate * fade_s)
    samples = array.array("h")
    for n in range(frames):
        envelope = min(1.0, n / fade, (frames - n) / fade) if fade else 1.0
        samples.append(int(32767 * level * envelope * math.sin(2 * math.pi * freq_hz * n / rate)))
    return samples


def write_wav(path: str | Path, samples: array.array[int], rate: int) -> Path:
    """Write mono 16-bit ``samples`` as a WAV file, atomically."""
    path = Path(path)
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()  # WAV is little-endian
    with atomic_file(path) as f, wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def make_tone(path: str | Path, *, freq_hz: int = 1000, seconds: float = 1.5,
              rate: int = 22050, level: float = 0.5) -> Path:
    """Write a mono 16-bit sine tone WAV (the ``test`` command's tone) with short fades."""
    return write_wav(path, tone_samples(freq_hz, seconds, rate, level), rate)
