"""The acoustic self-test (``test`` command, kind ``acoustic``): the node plays a known tone
sequence through its own player while a microphone records it, then judges the capture, so a
technician learns that a horn is dead, or its tweeter, or that it distorts, without climbing
the pole.

The analysis is pure Python: Goertzel filters on 16-bit PCM. A capture is a few seconds at
16 kHz (some 60,000 samples) and only a handful of known frequencies matter, so a Goertzel filter
per frequency costs well under a second even on a Pi Zero 2 W, and the agent keeps its small
dependencies (no numpy wheel, no sox on the node). The recorder is an interface: ``arecord``
(alsa-utils) on a node, a recorded file in the tests.
"""
from __future__ import annotations

import array
import logging
import math
import shutil
import subprocess
import sys
import time
import wave
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from .player import POLL_S, Cancel, Player, PlayOutcome, PlayRequest, tone_samples, write_wav
from .schemas import HornVerdict, PlayResult

log = logging.getLogger(__name__)

ACOUSTIC_ITEM = "test-acoustic"   # the item id an acoustic test plays (and the sink shows)
CAPTURE_RATE = 16_000             # Hz; the highest tone (3 kHz) and its 2nd harmonic fit
SEQUENCE_RATE = 22_050            # as the test tone's
FULL_SCALE = 32767
CLIP_AT = 32700                   # a sample this close to full scale counts as clipped
FLOOR_DBFS = -120.0               # what digital silence is reported as
HOP_S = 0.01                      # frame of the alignment search
EDGE_S = 0.05                     # left out at each end of a tone: onset, decay, misalignment
SEARCH_PCT = 4.0                  # the frequency search spans the expected one ± this


class Reason(StrEnum):
    """Why an acoustic test failed: the ``reason`` of its ``finished`` ack."""
    NO_MICROPHONE = "no_microphone"         # none configured, arecord missing, device not there
    RECORDING_FAILED = "recording_failed"   # the capture broke off or is unreadable
    CLIPPED = "clipped"                     # the capture hit full scale: mic gain too high
    NO_SOUND = "no_sound"                   # not one tone heard: horn, amplifier or cable dead
    TONE_MISSING = "tone_missing"           # some tones absent (a dead tweeter: the high ones)
    OFF_FREQUENCY = "off_frequency"
    DISTORTED = "distorted"


class Problem(StrEnum):
    """What is wrong with one tone of the sequence."""
    MISSING = "missing"
    OFF_FREQUENCY = "off"
    DISTORTED = "distorted"


@dataclass(frozen=True)
class TonePlan:
    """The sequence played: after ``lead_s`` of silence, each of ``freqs`` for ``tone_s`` at
    ``level`` of full scale, ``gap_s`` apart, then ``tail_s`` of silence."""
    freqs: tuple[int, ...] = (500, 1000, 2000, 3000)
    tone_s: float = 0.3
    gap_s: float = 0.1
    lead_s: float = 0.2
    tail_s: float = 0.2
    level: float = 0.5

    @property
    def period_s(self) -> float:
        return self.tone_s + self.gap_s

    @property
    def duration_s(self) -> float:
        return self.lead_s + len(self.freqs) * self.period_s - self.gap_s + self.tail_s


@dataclass(frozen=True)
class Limits:
    """What a capture must show to pass."""
    min_level_dbfs: float = -50.0      # each tone at least this loud at the microphone
    min_snr_db: float = 10.0           # and this far above the same band before the sequence
    max_thd_pct: float = 10.0          # loudspeakers are rated at 10 % THD at most
    max_clipped_pct: float = 0.1       # of the samples under the tones
    max_freq_error_pct: float = 2.0


@dataclass(frozen=True)
class ToneResult:
    hz: int
    level_dbfs: float                  # of the fundamental; a full-scale sine is 0 dBFS
    measured_hz: float
    noise_dbfs: float | None           # the band before the sequence; None: no quiet stretch
    thd_pct: float
    problem: Problem | None

    def summary(self) -> str:
        head = f"{self.hz}Hz {self.level_dbfs:.1f}dBFS"
        if self.problem is None:
            return f"{head} ok"
        if self.problem is Problem.MISSING:
            noise = "" if self.noise_dbfs is None else f", noise {self.noise_dbfs:.1f}"
            return f"{self.hz}Hz missing ({self.level_dbfs:.1f}dBFS{noise})"
        if self.problem is Problem.OFF_FREQUENCY:
            return f"{head} off ({self.measured_hz:.0f}Hz)"
        return f"{head} distorted (THD {self.thd_pct:.0f}%)"


@dataclass(frozen=True)
class Verdict:
    """The test's outcome: ``reason`` None means it passed; ``detail`` is the ack's summary."""
    reason: Reason | None
    detail: str
    tones: tuple[ToneResult, ...] = ()
    clipped_pct: float | None = None

    @property
    def passed(self) -> bool:
        return self.reason is None

    @property
    def result(self) -> HornVerdict:
        return HornVerdict.OK if self.passed else HornVerdict.FAIL


@dataclass(frozen=True)
class AcousticOutcome(PlayOutcome):
    """A play outcome that carries the test's verdict (None when the play did not complete)."""
    verdict: Verdict | None = field(default=None)


# --- the sequence ---------------------------------------------------------------------------

def sequence_samples(plan: TonePlan, rate: int = SEQUENCE_RATE) -> array.array[int]:
    samples = array.array("h", bytes(2 * int(rate * plan.lead_s)))
    gap = array.array("h", bytes(2 * int(rate * plan.gap_s)))
    for i, freq in enumerate(plan.freqs):
        if i:
            samples.extend(gap)
        samples.extend(tone_samples(freq, plan.tone_s, rate, plan.level, fade_s=0.01))
    samples.extend(array.array("h", bytes(2 * int(rate * plan.tail_s))))
    return samples


def make_sequence(path: str | Path, plan: TonePlan = TonePlan(),
                  rate: int = SEQUENCE_RATE) -> Path:
    """Write the tone sequence as a mono 16-bit WAV (the same generator as the test tone)."""
    return write_wav(path, sequence_samples(plan, rate), rate)


# --- the analysis (pure) --------------------------------------------------------------------

def read_wav(path: str | Path) -> tuple[array.array[int], int]:
    """The first channel of a 16-bit PCM WAV and its sample rate. Raises ValueError."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{w.getsampwidth() * 8}-bit samples, expected 16-bit")
            channels, rate = w.getnchannels(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as err:
        raise ValueError(f"unreadable capture: {err}") from None
    samples = array.array("h")
    samples.frombytes(data[:len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return (samples[::channels] if channels > 1 else samples), rate


def _goertzel(x: Sequence[float], freq: float, rate: int) -> float:
    """|X(freq)|² of ``x``: one DFT term, at any frequency (not only a bin's)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _dbfs(amplitude: float) -> float:
    return max(FLOOR_DBFS, 20 * math.log10(amplitude / FULL_SCALE)) if amplitude > 0 \
        else FLOOR_DBFS


class _Window:
    """One stretch of the capture, Hann-windowed, measured at chosen frequencies."""

    def __init__(self, x: Sequence[int], rate: int):
        n = len(x)
        hann = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
        self.rate = rate
        self.bin_hz = rate / n
        self.x = [v * w for v, w in zip(x, hann, strict=True)]
        self._gain = sum(hann) / 2      # |X| of a sine of amplitude A is A * sum(hann) / 2

    def amplitude(self, freq: float) -> float:
        """The amplitude (in sample units) of a sine at ``freq``."""
        return math.sqrt(max(0.0, _goertzel(self.x, freq, self.rate))) / self._gain

    def peak(self, around: float, span_pct: float) -> tuple[float, float]:
        """(frequency, amplitude) of the spectrum's peak within ``around`` ± ``span_pct`` %: a
        search one bin apart, refined by a parabola through the log magnitudes of the best
        three."""
        span = around * span_pct / 100
        steps = max(1, int(span / self.bin_hz))
        grid = [around + k * self.bin_hz for k in range(-steps, steps + 1)]
        mags = [self.amplitude(f) for f in grid]
        best = max(range(len(grid)), key=mags.__getitem__)
        if 0 < best < len(grid) - 1 and min(mags[best - 1:best + 2]) > 0:
            a, b, c = (math.log(m) for m in mags[best - 1:best + 2])
            denom = a - 2 * b + c
            if denom < 0:
                freq = grid[best] + 0.5 * (a - c) / denom * self.bin_hz
                return freq, self.amplitude(freq)
        return grid[best], mags[best]


def _frame_powers(x: Sequence[int], rate: int, freqs: Sequence[int],
                  hop: int) -> list[list[float]]:
    """Per frequency, the power at it in each ``hop``-sample frame (10 ms: every tone of the
    plan is a whole number of periods in it, so the tones do not leak into each other)."""
    frames = len(x) // hop
    return [[_goertzel(x[k * hop:(k + 1) * hop], f, rate) for k in range(frames)]
            for f in freqs]


def _align(powers: list[list[float]], tone: int, period: int) -> int | None:
    """The frame where the first tone starts: where the expected pattern (tone i in frames
    [d + i*period, d + i*period + tone)) collects the most energy at each tone's frequency.
    None when the capture is shorter than the pattern."""
    frames = len(powers[0]) if powers else 0
    last = frames - ((len(powers) - 1) * period + tone)
    if last < 0:
        return None
    sums = []
    for p in powers:
        acc = [0.0]
        for v in p:
            acc.append(acc[-1] + v)
        sums.append(acc)
    return max(range(last + 1), key=lambda d: sum(
        s[d + i * period + tone] - s[d + i * period] for i, s in enumerate(sums)))


def analyse(x: Sequence[int], rate: int, plan: TonePlan = TonePlan(),
            limits: Limits = Limits()) -> Verdict:
    """Judge a capture of the tone sequence: every tone heard loud enough above the quiet
    before it, at its frequency, undistorted, and the capture itself not clipped."""
    hop = max(1, round(rate * HOP_S))
    tone_f, period_f = round(plan.tone_s / HOP_S), round(plan.period_s / HOP_S)
    start = _align(_frame_powers(x, rate, plan.freqs, hop), tone_f, period_f)
    if start is None:
        return Verdict(Reason.RECORDING_FAILED,
                       f"capture too short: {len(x) / rate:.1f} s for a "
                       f"{plan.duration_s:.1f} s sequence")
    if not any(x):
        return Verdict(Reason.NO_SOUND, "the capture is digital silence: microphone muted or "
                                        "disconnected?")
    edge, tone_n = round(rate * EDGE_S), tone_f * hop
    spans = [((start + i * period_f) * hop, (start + i * period_f) * hop + tone_n)
             for i in range(len(plan.freqs))]
    under_tones = [v for a, b in spans for v in x[a:b]]
    clipped_pct = 100 * sum(1 for v in under_tones if abs(v) >= CLIP_AT) / len(under_tones)
    quiet = _quiet_window(x, rate, spans, tone_n - 2 * edge)
    tones = tuple(_tone(_Window(x[a + edge:b - edge], rate), freq, quiet, limits)
                  for (a, b), freq in zip(spans, plan.freqs, strict=True))
    return _verdict(tones, clipped_pct, limits)


def _quiet_window(x: Sequence[int], rate: int, spans: list[tuple[int, int]],
                  n: int) -> _Window | None:
    """The stretch of ``n`` samples just before the first tone (else just after the last),
    to measure what the microphone hears at each frequency without the horn."""
    gap = round(rate * EDGE_S)
    before_end = spans[0][0] - gap
    if before_end - n >= 0:
        return _Window(x[before_end - n:before_end], rate)
    after = spans[-1][1] + gap
    if after + n <= len(x):
        return _Window(x[after:after + n], rate)
    return None


def _tone(window: _Window, freq: int, quiet: _Window | None, limits: Limits) -> ToneResult:
    measured, amplitude = window.peak(freq, SEARCH_PCT)
    level = _dbfs(amplitude)
    # the quiet stretch's own peak in the same band: both sides get the search's upward bias
    noise = None if quiet is None else _dbfs(quiet.peak(freq, SEARCH_PCT)[1])
    harmonics = [window.amplitude(h * measured) for h in range(2, 6)
                 if h * measured < 0.45 * window.rate]
    thd = 100 * math.sqrt(sum(a * a for a in harmonics)) / amplitude if amplitude > 0 else 0.0
    problem = None
    if level < limits.min_level_dbfs or (noise is not None
                                         and level - noise < limits.min_snr_db):
        problem = Problem.MISSING
    elif abs(measured - freq) / freq * 100 > limits.max_freq_error_pct:
        problem = Problem.OFF_FREQUENCY
    elif thd > limits.max_thd_pct:
        problem = Problem.DISTORTED
    return ToneResult(freq, round(level, 1), round(measured, 1),
                      None if noise is None else round(noise, 1), round(thd, 1), problem)


def _verdict(tones: tuple[ToneResult, ...], clipped_pct: float, limits: Limits) -> Verdict:
    parts = [t.summary() for t in tones]
    problems = {t.problem for t in tones}
    reason: Reason | None = None
    if clipped_pct > limits.max_clipped_pct:
        reason = Reason.CLIPPED
        parts.insert(0, f"capture clipped {clipped_pct:.1f}% (microphone gain too high?)")
    elif problems == {Problem.MISSING}:
        reason = Reason.NO_SOUND
    elif Problem.MISSING in problems:
        reason = Reason.TONE_MISSING
    elif Problem.OFF_FREQUENCY in problems:
        reason = Reason.OFF_FREQUENCY
    elif Problem.DISTORTED in problems:
        reason = Reason.DISTORTED
    return Verdict(reason, "; ".join(parts), tones, round(clipped_pct, 2))


def judge_capture(path: str | Path, plan: TonePlan = TonePlan(),
                  limits: Limits = Limits()) -> Verdict:
    """``analyse`` the WAV at ``path``; an unreadable one fails ``recording_failed``."""
    try:
        samples, rate = read_wav(path)
    except ValueError as err:
        return Verdict(Reason.RECORDING_FAILED, str(err))
    return analyse(samples, rate, plan, limits)


# --- recording ------------------------------------------------------------------------------

class RecorderError(Exception):
    """The microphone could not record: ``reason`` (a Reason) and a sentence for the ack."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Recording(ABC):
    """A capture under way."""

    @abstractmethod
    def wait(self, timeout: float) -> Path | None:
        """The WAV once the capture ended, or None while it still runs after ``timeout``
        seconds. Raises RecorderError when it failed."""

    @abstractmethod
    def cancel(self) -> None:
        """End the capture now (its file is then not to be used)."""


class Recorder(ABC):
    """Records mono 16-bit PCM from a microphone."""

    name = "recorder"

    @abstractmethod
    def start(self, path: Path, seconds: float) -> Recording:
        """Start capturing ``seconds`` into the WAV ``path``; returns once it is capturing.
        Raises RecorderError (``no_microphone``) when there is nothing to record from."""


class _ProcessRecording(Recording):
    def __init__(self, proc: subprocess.Popen[bytes], path: Path, program: str):
        self.proc, self.path, self.program = proc, path, program

    def wait(self, timeout: float) -> Path | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        errors = _stderr(self.proc)
        if code != 0:
            raise RecorderError(Reason.RECORDING_FAILED, f"{self.program} exited {code}: {errors}")
        return self.path

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        _stderr(self.proc)


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    if proc.stderr is None or proc.stderr.closed:
        return ""
    text = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    return text[-300:]


class ArecordRecorder(Recorder):
    """``arecord`` (alsa-utils) from the ALSA capture ``device`` (``mic.device``), e.g.
    ``plughw:CARD=Device,DEV=0`` for a USB microphone (``arecord -L`` lists them)."""

    name = "arecord"
    program = "arecord"
    OPEN_S = 0.3       # arecord fails at once when it cannot open the device

    def __init__(self, device: str, rate: int = CAPTURE_RATE):
        self.device = device
        self.rate = rate

    def argv(self, path: Path, seconds: float) -> list[str]:
        # -d takes whole seconds: round up, the analysis finds the tones wherever they are
        return [self.program, "-q", "-D", self.device, "-t", "wav", "-f", "S16_LE",
                "-c", "1", "-r", str(self.rate), "-d", str(max(1, math.ceil(seconds))),
                str(path)]

    def start(self, path: Path, seconds: float) -> Recording:
        if not self.device:
            raise RecorderError(Reason.NO_MICROPHONE, "no microphone configured (mic.device)")
        if shutil.which(self.program) is None:
            raise RecorderError(Reason.NO_MICROPHONE,
                                f"{self.program} not found: install alsa-utils")
        try:
            proc = subprocess.Popen(self.argv(path, seconds), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as err:
            raise RecorderError(Reason.NO_MICROPHONE, f"{self.program}: {err}") from None
        try:
            code = proc.wait(self.OPEN_S)
        except subprocess.TimeoutExpired:
            return _ProcessRecording(proc, path, self.program)
        raise RecorderError(Reason.NO_MICROPHONE,
                            f"{self.program} -D {self.device} exited {code}: {_stderr(proc)}")


def make_recorder(device: str) -> Recorder:
    return ArecordRecorder(device)


# --- the test: play and record --------------------------------------------------------------

class AcousticSelfTest(Player):
    """A Player that runs the acoustic test: the recorder starts, ``player`` plays the
    sequence (the request's file, at its volume), the capture ends and is judged. Its outcome
    is an AcousticOutcome: ``completed`` with the verdict, or the player's own when the play
    was stopped or failed."""

    name = "acoustic"
    MARGIN_S = 2.5     # recorded beyond the sequence: the player's start-up and the room's echo

    def __init__(self, player: Player, recorder: Recorder, folder: Path,
                 plan: TonePlan = TonePlan(), limits: Limits = Limits()):
        self.player, self.recorder, self.plan, self.limits = player, recorder, plan, limits
        self.sequence = folder / "test-sequence-1.wav"
        self.capture = folder / "test-capture.wav"   # the last capture, kept for a technician

    @property
    def duration_ms(self) -> int:
        return int(self.plan.duration_s * 1000)

    def prepare(self) -> None:
        if not self.sequence.exists():
            make_sequence(self.sequence, self.plan)

    def play(self, request: PlayRequest, cancel: Cancel) -> PlayOutcome:
        seconds = self.plan.duration_s + self.MARGIN_S
        try:
            recording = self.recorder.start(self.capture, seconds)
        except RecorderError as err:
            return self._done(Verdict(err.reason, err.detail), request)
        outcome = self.player.play(request, cancel)
        if outcome.result != PlayResult.COMPLETED:
            recording.cancel()
            return outcome
        deadline = time.monotonic() + seconds + 5
        try:
            while (path := recording.wait(POLL_S)) is None:
                if cancel.is_set():
                    recording.cancel()
                    return cancel.outcome()
                if time.monotonic() > deadline:
                    recording.cancel()
                    raise RecorderError(Reason.RECORDING_FAILED,
                                        f"{self.recorder.name} did not end after {seconds:.0f} s")
        except RecorderError as err:
            return self._done(Verdict(err.reason, err.detail), request)
        return self._done(judge_capture(path, self.plan, self.limits), request)

    @staticmethod
    def _done(verdict: Verdict, request: PlayRequest) -> AcousticOutcome:
        log.info("acoustic test at volume %s: %s", request.volume, verdict.detail)
        return AcousticOutcome(PlayResult.COMPLETED, verdict=replace(
            verdict, detail=f"volume {request.volume}: {verdict.detail}"))


def verdict_of(outcome: PlayOutcome) -> Verdict | None:
    return outcome.verdict if isinstance(outcome, AcousticOutcome) else None
