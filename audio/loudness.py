"""Loudness (ITU-R BS.1770 / EBU R128) as the pipeline uses it: reading ffmpeg's ebur128 meter,
and the arithmetic that turns a measurement into a gain and, where peaks demand it, a limiter.

Why not ffmpeg's loudnorm filter: its linear mode is what ``plan_gain`` does (one exact gain
when the peaks allow it); when they do not, loudnorm switches to its dynamic mode, which on
espeak-ng speech measured 1.8 LU under a -16 LUFS target and ran four times slower than a
look-ahead limiter whose input gain is solved from two trial measurements (``solve_gain``).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from audio import ff

SILENCE_LUFS = -70.0      # ebur128's floor: below the absolute gate nothing counts
MIN_MEASURE_S = 3.0       # shorter clips are looped to this length before metering


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float | None = None   # None when the meter ran without true peak
    lra_lu: float | None = None

    @property
    def silent(self) -> bool:
        return self.integrated_lufs <= SILENCE_LUFS + 0.05


@dataclass(frozen=True)
class GainPlan:
    """What the render pass does: a gain in dB, then a peak limiter when ``limit_dbfs`` is set."""

    gain_db: float
    limit_dbfs: float | None = None

    @property
    def linear(self) -> bool:
        return self.limit_dbfs is None

    def filters(self) -> list[str]:
        """The ffmpeg audio filters for this plan."""
        out = [f"volume={self.gain_db:.3f}dB:precision=float"]
        if self.limit_dbfs is not None:
            # level=false: alimiter would otherwise re-normalise its output to the limit
            out.append(f"alimiter=limit={db_to_linear(self.limit_dbfs):.5f}"
                       ":attack=5:release=50:level=false")
        return out


def db_to_linear(db: float) -> float:
    return float(10.0 ** (db / 20.0))


# --- pure arithmetic ----------------------------------------------------------------------------

def plan_gain(measured: Loudness, target_lufs: float, ceiling_dbtp: float,
              peak_margin_db: float) -> GainPlan:
    """The gain that brings ``measured`` to the target; a limiter only if the peaks need one.

    ``peak_margin_db`` is kept below the ceiling for what the lossy encoder and the
    limiter's inter-sample overshoot add; the final measurement checks it.
    """
    if measured.silent:
        raise ValueError("silent audio has no loudness to normalise")
    gain = target_lufs - measured.integrated_lufs
    peak = measured.true_peak_dbtp if measured.true_peak_dbtp is not None else 0.0
    limit = ceiling_dbtp - peak_margin_db
    if peak + gain <= limit:
        return GainPlan(gain)
    return GainPlan(gain, limit)


def trial_gains(plan: GainPlan) -> tuple[float, float]:
    """Two input gains to try with the limiter; the answer usually lies between them."""
    return plan.gain_db, plan.gain_db + 4.0


def solve_gain(trials: Sequence[tuple[float, float]], target_lufs: float) -> float:
    """The limiter's input gain that lands on ``target_lufs``, from (gain, measured) trials.

    A limiter makes output loudness rise more slowly than input gain (it removes more of the
    peaks the harder it is driven); between two trials that curve is close to a line. The slope
    is kept in [0.1, 1], and the answer within 12 dB above the trials, so a noisy or saturated
    pair of trials cannot send the gain somewhere absurd (the final measurement corrects).
    """
    pts = sorted(trials)
    if len(pts) == 1:
        g, out = pts[0]
        return g + (target_lufs - out)
    (g0, o0), (g1, o1) = pts[0], pts[-1]
    slope = (o1 - o0) / (g1 - g0) if g1 != g0 else 1.0
    slope = min(1.0, max(0.1, slope))
    base_g, base_o = (g0, o0) if abs(target_lufs - o0) <= abs(target_lufs - o1) else (g1, o1)
    return min(base_g + (target_lufs - base_o) / slope, g1 + 12.0)


def correct(plan: GainPlan, result: Loudness, target_lufs: float, ceiling_dbtp: float,
            slope: float = 1.0) -> GainPlan:
    """The next plan after a render measured ``result``: nudge the gain towards the target and,
    if the true peak came out over the ceiling, pull the limiter down by the overshoot."""
    gain = plan.gain_db + (target_lufs - result.integrated_lufs) / max(0.1, min(1.0, slope))
    limit = plan.limit_dbfs
    tp = result.true_peak_dbtp
    if tp is not None and tp > ceiling_dbtp:
        over = tp - ceiling_dbtp + 0.3
        if limit is None:
            # linear plan that overshot (the encoder added peaks): limit just below the ceiling
            limit = ceiling_dbtp - over
        else:
            limit -= over
    return GainPlan(gain, limit)


def acceptable(result: Loudness, target_lufs: float, ceiling_dbtp: float,
               tolerance_lu: float) -> bool:
    return (abs(result.integrated_lufs - target_lufs) <= tolerance_lu
            and (result.true_peak_dbtp is None or result.true_peak_dbtp <= ceiling_dbtp))


# --- reading ffmpeg's meter ---------------------------------------------------------------------

_SUMMARY = re.compile(r"^\[(?P<name>ebur128[^\s\]]*) @ [^\]]+\] Summary:\s*$", re.M)
_VALUE = re.compile(r"^\s*(I|LRA|Peak):\s+(-?(?:inf|\d+(?:\.\d+)?))", re.M)


def parse_ebur128(stderr: str) -> dict[str, Loudness]:
    """The summaries ffmpeg's ebur128 filters print, by filter instance name (``ebur128@x``)."""
    heads = list(_SUMMARY.finditer(stderr))
    out: dict[str, Loudness] = {}
    for i, head in enumerate(heads):
        body = stderr[head.end(): heads[i + 1].start() if i + 1 < len(heads) else len(stderr)]
        values: dict[str, float] = {}
        for key, raw in _VALUE.findall(body):
            values.setdefault(key, float(raw))   # float("-inf") parses too
        if "I" not in values:
            continue
        name = head.group("name")
        key = name.split("@", 1)[1] if "@" in name else name
        out[key] = Loudness(values["I"], values.get("Peak"), values.get("LRA"))
    return out


# what a graph's ``counter()`` prints when its stream ends: the samples that went through it
_SAMPLES = re.compile(r"^\[Parsed_astats_\d+ @ [^\]]+\] Number of samples: (\d+)\s*$", re.M)


def counter() -> str:
    """A filter that passes audio through and counts its samples (``parse_samples`` reads the
    count): put before an encoder, the count is the encoded file's length to the sample, which
    a container's duration is not (an MP3's holds the encoder's delay and padding, 40-70 ms)."""
    return "astats=metadata=0:measure_perchannel=none:measure_overall=Number_of_samples"


def parse_samples(stderr: str) -> int | None:
    """The count ``counter()`` printed; None when ffmpeg printed none (one counter a graph)."""
    found = _SAMPLES.findall(stderr)
    return int(found[-1]) if len(found) == 1 else None


def counted_ms(stderr: bytes, rate: int, what: str) -> int:
    """The length in ms that a graph's ``counter()`` at ``rate`` Hz counted; AudioError when
    ``what`` (the ffmpeg run, for the message) printed no count."""
    samples = parse_samples(stderr.decode("utf-8", errors="replace"))
    if not samples:
        raise ff.AudioError(f"{what} counted no samples: {ff.tail(stderr)}")
    return round(samples * 1000 / rate)


def meter(label: str, true_peak: bool = True) -> str:
    """An ebur128 filter named ``label`` whose summary ``parse_ebur128`` finds."""
    return f"ebur128@{label}=peak={'true' if true_peak else 'none'}:framelog=verbose"


def loops(duration_s: float) -> int:
    """How many times a clip of ``duration_s`` is repeated after itself to be metered (0 for
    one at least MIN_MEASURE_S long): ffmpeg's ``-stream_loop`` and ``aloop=loop=`` count
    alike."""
    return math.ceil(MIN_MEASURE_S / duration_s) if 0 < duration_s < MIN_MEASURE_S else 0


def input_args(path: str | os.PathLike[str], duration_s: float | None = None,
               raw: tuple[str, int] | None = None) -> list[str]:
    """ffmpeg input options for ``path``; short clips loop so the gated meter has enough blocks.

    ``raw`` = (sample format, rate) for headerless mono PCM files.
    """
    args: list[str] = []
    repeats = loops(duration_s) if duration_s is not None else 0
    if repeats:
        args += ["-stream_loop", str(repeats)]
    if raw is not None:
        args += ["-f", raw[0], "-ar", str(raw[1]), "-ac", "1"]
    return args + ["-i", str(path)]


def measure(path: str | os.PathLike[str], duration_s: float | None = None,
            raw: tuple[str, int] | None = None, timeout: float = 600) -> Loudness:
    """Integrated loudness and true peak of a file, by ffmpeg's ebur128 meter."""
    argv = ff.ffmpeg_args(*input_args(path, duration_s, raw), "-map", "0:a:0",
                          "-af", meter("m"), "-f", "null", "-")
    done = ff.run(argv, timeout=timeout, what="ffmpeg (loudness)")
    found = parse_ebur128(done.stderr.decode("utf-8", errors="replace"))
    if "m" not in found:
        raise ff.AudioError(f"no loudness summary from ffmpeg for {path}")
    return found["m"]


def measure_loudness(path: str | os.PathLike[str]) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of an audio file, ITU-R BS.1770 as ffmpeg meters it."""
    from audio.store import probe_duration_ms
    try:
        duration_s = probe_duration_ms(path) / 1000.0
    except ff.AudioError:
        duration_s = None
    found = measure(path, duration_s)
    tp = found.true_peak_dbtp if found.true_peak_dbtp is not None else float("-inf")
    return found.integrated_lufs, tp
