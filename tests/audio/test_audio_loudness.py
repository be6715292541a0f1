"""Loudness arithmetic as pure functions: reading the meter, planning a gain, solving the
limiter's gain from trials, correcting after a measured miss."""
from __future__ import annotations

import pytest

from audio.loudness import (GainPlan, Loudness, acceptable, correct, parse_ebur128, plan_gain,
                            solve_gain, trial_gains)

METER = """\
[ebur128@t0 @ 0x55] Summary:

  Integrated loudness:
    I:         -17.1 LUFS
    Threshold: -27.2 LUFS

  Loudness range:
    LRA:         2.4 LU
[ebur128@m @ 0x56] Summary:

  Integrated loudness:
    I:         -18.7 LUFS
    Threshold: -28.9 LUFS

  Loudness range:
    LRA:         2.6 LU
    Threshold: -38.9 LUFS

  True peak:
    Peak:        0.1 dBFS
"""


def test_meter_summaries_are_read_by_filter_name():
    found = parse_ebur128(METER)
    assert found["m"] == Loudness(-18.7, 0.1, 2.6)
    assert found["t0"] == Loudness(-17.1, None, 2.4)


def test_silence_reads_as_silent():
    found = parse_ebur128(METER.replace("-18.7", "-70.0").replace("0.1 dBFS", "-inf dBFS"))
    assert found["m"].silent and found["m"].true_peak_dbtp == float("-inf")
    with pytest.raises(ValueError):
        plan_gain(found["m"], -16, -1, 1)


def test_gain_is_linear_when_the_peaks_allow_it():
    plan = plan_gain(Loudness(-30.0, -20.0), -16.0, -1.0, 1.0)
    assert plan == GainPlan(14.0) and plan.linear
    assert plan.filters() == ["volume=14.000dB:precision=float"]


def test_limiter_is_planned_when_the_gain_would_push_peaks_over_the_ceiling():
    plan = plan_gain(Loudness(-45.0, -25.0), -16.0, -1.0, 1.0)
    assert plan.gain_db == 29.0 and plan.limit_dbfs == -2.0
    assert "alimiter=limit=0.79433" in plan.filters()[1]
    assert trial_gains(plan) == (29.0, 33.0)


def test_limited_gain_is_interpolated_from_two_trials():
    # espeak speech measured: +2.7 dB -> -17.1 LUFS, +6.7 dB -> -15.1 LUFS (slope 0.5)
    assert solve_gain([(2.7, -17.1), (6.7, -15.1)], -16.0) == pytest.approx(4.9)
    # a saturated limiter (flat slope) is kept from sending the gain far away
    assert solve_gain([(0.0, -20.0), (4.0, -19.99)], -16.0) == pytest.approx(16.0)
    assert solve_gain([(3.0, -17.0)], -16.0) == pytest.approx(4.0)


def test_a_measured_miss_is_corrected():
    nudged = correct(GainPlan(3.0, -2.0), Loudness(-16.8, -1.5), -16.0, -1.0, slope=0.5)
    assert nudged.gain_db == pytest.approx(4.6) and nudged.limit_dbfs == -2.0
    pulled = correct(GainPlan(3.0), Loudness(-16.0, -0.6), -16.0, -1.0)
    assert pulled.gain_db == pytest.approx(3.0) and pulled.limit_dbfs == pytest.approx(-1.7)


def test_acceptance_needs_both_loudness_and_peak():
    assert acceptable(Loudness(-16.4, -1.2), -16.0, -1.0, 0.5)
    assert not acceptable(Loudness(-16.6, -1.2), -16.0, -1.0, 0.5)
    assert not acceptable(Loudness(-16.0, -0.9), -16.0, -1.0, 0.5)
