"""The project's own announcement chime: three struck-bell tones (an ascending C-E-G triad to
open a bulletin, the same descending to close it), synthesised by ffmpeg from a formula, so the
shipped files in audio/assets/ carry no one else's copyright and can be regenerated with

    python -m audio.chime [--out-dir audio/assets]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio import ff

ASSETS = Path(__file__).resolve().parent / "assets"
INTRO = ASSETS / "chime-intro.flac"
OUTRO = ASSETS / "chime-outro.flac"

NOTES_HZ = (523.25, 659.25, 783.99)     # C5 E5 G5
STEP_S = 0.38                           # between strikes
RING_S = 1.6                            # how long the last strike rings
RATE = 24000
# A struck bell: the fundamental plus inharmonic partials that die away faster than it does.
PARTIALS = ((1.0, 1.0, 2.6), (2.0, 0.45, 4.5), (2.76, 0.25, 7.0), (5.40, 0.10, 12.0))


def expression(freqs: tuple[float, ...]) -> str:
    """The aevalsrc formula for bell strikes at ``freqs``, STEP_S apart."""
    strikes = []
    for i, f in enumerate(freqs):
        t0 = i * STEP_S
        u = f"(t-{t0:.3f})"
        tone = "+".join(f"{amp}*sin(2*PI*{ratio * f:.3f}*{u})*exp(-{decay}*{u})"
                        for ratio, amp, decay in PARTIALS)
        # 4 ms attack so the strike does not click; the comma is escaped for the filtergraph
        strikes.append(f"gte(t\\,{t0:.3f})*(1-exp(-{u}/0.004))*({tone})")
    return "0.22*(" + "+".join(strikes) + ")"


def generate(path: str | Path, freqs: tuple[float, ...] = NOTES_HZ) -> Path:
    """Write a chime to ``path`` (FLAC, mono, 24 kHz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = (len(freqs) - 1) * STEP_S + RING_S
    argv = ff.ffmpeg_args("-f", "lavfi", "-i",
                          f"aevalsrc={expression(freqs)}:s={RATE}:c=mono:d={duration:.3f}",
                          "-af", f"afade=t=out:st={duration - 0.4:.3f}:d=0.4",
                          "-map_metadata", "-1", "-fflags", "+bitexact",
                          "-c:a", "flac", "-sample_fmt", "s16", str(path))
    ff.run(argv, timeout=60, what="ffmpeg (chime)")
    return path


def generate_all(out_dir: str | Path = ASSETS) -> list[Path]:
    out_dir = Path(out_dir)
    return [generate(out_dir / INTRO.name, NOTES_HZ),
            generate(out_dir / OUTRO.name, tuple(reversed(NOTES_HZ)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audio.chime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(ASSETS))
    args = parser.parse_args(argv)
    for path in generate_all(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
