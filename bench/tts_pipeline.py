"""Benchmark (not a test) of issue 3's performance targets: offline (espeak-ng) text to a
stored, broadcast-ready file, for a 1-minute bulletin (~150 words, target < 2 s) and a 5-minute
one (~750 words, < 8 s), and a cache hit (< 50 ms); each stage's share; and the ratio to
running espeak-ng and ffmpeg alone on the same text.

    .venv/bin/python bench/tts_pipeline.py [--repeats 5] [--write-docs]

--write-docs replaces this benchmark's section of docs/benchmarks.md with the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.pipeline import AudioSettings, Pipeline, normalise_text  # noqa: E402
from audio.store import MediaStore  # noqa: E402
from audio.tts import EspeakEngine, build_chain  # noqa: E402

TEXTS = {"1-minute": ROOT / "bench" / "texts" / "bulletin-1min.txt",
         "5-minute": ROOT / "bench" / "texts" / "bulletin-5min.txt"}
TARGET_S = {"1-minute": 2.0, "5-minute": 8.0}
CACHE_TARGET_S = 0.050
STAGES = ("normalise", "synthesise", "trim", "loudness", "chime", "encode", "store")
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench/tts_pipeline.py:begin -->", "<!-- bench/tts_pipeline.py:end -->"
COMMAND = ".venv/bin/python bench/tts_pipeline.py --write-docs"


def cold_render(text: str, settings: AudioSettings):
    """One render with empty caches and store, as the first request for this text would be."""
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        cache = Path(tmp) / "cache"
        pipeline = Pipeline(MediaStore(Path(tmp) / "media"), build_chain(["espeak"],
                            cache_dir=cache), settings, cache_dir=cache)
        t = time.perf_counter()
        out = pipeline.render_text(text)
        elapsed = time.perf_counter() - t
        hits = []
        for _ in range(20):
            # a new Pipeline each time: what a fresh server request finds on disk
            again = Pipeline(MediaStore(Path(tmp) / "media"), build_chain(["espeak"],
                             cache_dir=cache), settings, cache_dir=cache)
            t = time.perf_counter()
            hit = again.render_text(text)
            hits.append(time.perf_counter() - t)
            assert hit.cached and hit.sha256 == out.sha256
    return elapsed, out, hits


def tools_alone(text: str) -> float:
    """espeak-ng to WAV, then ffmpeg to mono 48 kbps MP3: the floor any pipeline stands on."""
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        wav, mp3 = Path(tmp) / "s.wav", Path(tmp) / "s.mp3"
        t = time.perf_counter()
        subprocess.run(["espeak-ng", "-v", "vi", "-s", str(EspeakEngine().speed_wpm), "-w",
                        str(wav)], input=text.encode("utf-8"), check=True)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i",
                        str(wav), "-ac", "1", "-ar", "24000", "-b:a", "48k", str(mp3)],
                       check=True)
        return time.perf_counter() - t


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        ram = f"{int(found.group(1)) / 1024 / 1024:.1f} GiB" if found else "unknown"
    except OSError:
        ram = "unknown"

    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "unknown"
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "ffmpeg": first_line(["ffmpeg", "-version"]).split(" Copyright")[0],
            "espeak": first_line(["espeak-ng", "--version"]).split("  Data")[0],
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def run(repeats: int) -> dict:
    # the chime's own loudness is measured once per process; pay that before timing
    Pipeline(None, build_chain(["espeak"])).render_text("Xin chào.",
                                                        settings=AudioSettings(chime="both"))
    results = {}
    for label, path in TEXTS.items():
        text = path.read_text(encoding="utf-8")
        row: dict[str, Any] = {"words": len(text.split()), "chars": len(text)}
        for chime in ("none", "both"):
            settings = AudioSettings(chime=chime)
            totals, stage_runs, hits, last = [], [], [], None
            for _ in range(repeats):
                elapsed, out, hit_times = cold_render(text, settings)
                totals.append(elapsed)
                stage_runs.append(out.timings)
                hits += hit_times
                last = out
            assert last is not None  # repeats >= 1 (main)
            row[chime] = {
                "total_s": statistics.median(totals), "max_s": max(totals),
                "stages": {s: statistics.median(r.get(s, 0.0) for r in stage_runs)
                           for s in STAGES},
                "decode_s": statistics.median(r.get("decode", 0.0) for r in stage_runs),
                "cache_hit_s": statistics.median(hits), "cache_hit_max_s": max(hits),
                "duration_ms": last.duration_ms, "lufs": last.lufs, "true_peak": last.true_peak,
                "renders": last.renders, "limited": last.limited, "bytes": len(last.audio)}
        row["tools_alone_s"] = statistics.median(tools_alone(text) for _ in range(repeats))
        results[label] = row
    try:
        from audio.normalize import normalize  # noqa: F401
        normaliser = "audio.normalize present"
    except ImportError:
        normaliser = "audio.normalize not installed yet: the normalise stage is a no-op"
    return {"machine": machine(), "repeats": repeats, "results": results,
            "normaliser": normaliser,
            "normalise_sample": normalise_text("UBND phường, 17h30")}


def report(data: dict) -> str:
    m, res = data["machine"], data["results"]
    lines = [
        "## TTS pipeline: text to stored broadcast-ready file (offline, espeak-ng)", "",
        f"- Date: {m['date']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['os']}, "
        f"Python {m['python']}, {m['ffmpeg']}, {m['espeak']}",
        f"- Command: `{COMMAND}` (median of {data['repeats']} cold runs: empty caches and "
        "store each time; cache hits: median of 20 per run, each through a new Pipeline)",
        f"- Settings: -16 LUFS, -1 dBTP, mono MP3 48 kbps 24 kHz; {data['normaliser']}.",
        "",
        "| bulletin | words | audio | chime | total | target | cache hit | espeak-ng + ffmpeg "
        "alone | ratio | result |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, row in res.items():
        for chime in ("none", "both"):
            r = row[chime]
            ok = r["total_s"] < TARGET_S[label] and r["cache_hit_s"] < CACHE_TARGET_S
            lines.append(
                f"| {label} | {row['words']} | {r['duration_ms'] / 1000:.1f} s | "
                f"{'intro+outro' if chime == 'both' else 'none'} | {r['total_s']:.2f} s "
                f"(max {r['max_s']:.2f}) | < {TARGET_S[label]:.0f} s | "
                f"{r['cache_hit_s'] * 1000:.1f} ms (max {r['cache_hit_max_s'] * 1000:.1f}) | "
                f"{row['tools_alone_s']:.2f} s | {r['total_s'] / row['tools_alone_s']:.1f}x | "
                f"{'met' if ok else 'MISSED'}: {r['lufs']} LUFS, {r['true_peak']} dBTP, "
                f"{r['renders']} render{'s' if r['renders'] > 1 else ''} |")
    lines += ["", "Share of each stage (with intro and outro chime; medians):", "",
              "| bulletin | " + " | ".join(STAGES) + " |",
              "| --- |" + " ---: |" * len(STAGES)]
    for label, row in res.items():
        r = row["both"]
        total = sum(r["stages"].values()) or 1.0
        lines.append(f"| {label} | " + " | ".join(
            f"{r['stages'][s]:.3f} s ({100 * r['stages'][s] / total:.0f}%)" for s in STAGES)
            + " |")
    lines += [
        "",
        "What the stages are: *normalise* Vietnamese text to spoken form (audio.normalize); "
        "*synthesise* espeak-ng; *trim* pydub finding the sound's ends; *loudness* the metering "
        "passes before encoding (analyse; the limiter trial when the peaks need one); *chime* "
        "preparing the chime (its level is measured once per process); *encode* the one "
        "ffmpeg pass that applies gain and limiter, mixes the chime in and encodes, while a "
        "second ffmpeg meters the encoded stream (the check of the result; the encode pass also "
        "counts the samples it encodes, the file's length); *store* writing it by sha256.",
        "Mixing the chime happens inside the encode pass; what the chime costs in all is the "
        "difference between the two rows of a bulletin: " + ", ".join(
            f"{label} {1000 * (row['both']['total_s'] - row['none']['total_s']):+.0f} ms"
            for label, row in res.items()) + ".",
        "The ratio compares with espeak-ng writing a WAV and ffmpeg encoding it to the same "
        "MP3, nothing else (no trim, no loudness, no check, no store).", ""]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    block = f"{BEGIN}\n{section}\n{END}"
    if DOCS.exists():
        text = DOCS.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\nFigures measured on real machines; each section says how.\n\n" \
               + block + "\n"
    DOCS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 1
    section = report(run(args.repeats))
    print(section)
    if args.write_docs:
        write_docs(section)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
