"""Render one bulletin through exactly the server's pipeline, for scripts and for measuring:

    echo "Thông báo ..." | python -m audio.render --out bulletin.mp3 --engine espeak
    python -m audio.render --in recording.m4a --out bulletin.mp3 --chime

Text comes from stdin (normalised first when audio.normalize is installed), or audio from
--in. One line of JSON describing the result goes to stdout. On bad input: a message on stderr,
exit status 2 (1 when the engines or ffmpeg fail), and no output file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from audio.ff import AudioError
from audio.pipeline import FORMATS, AudioFormat, AudioSettings, Chime, Pipeline, render_to_file
from audio.probe import UploadError
from audio.tts import DEFAULT_ENGINES, DEFAULT_VOICE, VOICE_ALIASES, TTSError, Voice, build_chain

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("LOA_AUDIO_CACHE") or os.path.join(base, "loaphuong", "audio"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audio.render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="where to write the rendered audio")
    p.add_argument("--in", dest="source", help="an audio file to render instead of text")
    engines = os.environ.get("LOA_TTS_ENGINES", ",".join(DEFAULT_ENGINES))
    p.add_argument("--engine", default=engines,
                   help="TTS engines to try, in order, comma-separated (default: %(default)s)")
    aliases = [name for name in VOICE_ALIASES if name not in tuple(Voice)]
    p.add_argument("--voice", default=None, help=f"{', '.join(Voice)} (default {DEFAULT_VOICE}; "
                   f"aliases: {', '.join(aliases)})")
    p.add_argument("--target-lufs", type=float, default=AudioSettings.target_lufs)
    p.add_argument("--true-peak", type=float, default=AudioSettings.true_peak_dbtp,
                   help="true-peak ceiling in dBTP (default: %(default)s)")
    p.add_argument("--chime", nargs="?", const=Chime.BOTH, default=Chime.NONE,
                   choices=[c.value for c in Chime],
                   help="frame the bulletin with the chime (alone: both ends)")
    p.add_argument("--format", default=AudioSettings.fmt, choices=[f.value for f in AudioFormat])
    kbps = ", ".join(f"{fmt}: {FORMATS[fmt][4]}" for fmt in AudioFormat)
    p.add_argument("--bitrate", type=int, default=None, help=f"kbps (default {kbps})")
    p.add_argument("--no-trim", action="store_true", help="keep silence at the ends")
    p.add_argument("--normalised", action="store_true",
                   help="the text is already in spoken form: do not normalise it")
    p.add_argument("--max-upload-mb", type=float, default=AudioSettings.max_upload_mb)
    p.add_argument("--max-upload-minutes", type=float,
                   default=AudioSettings.max_upload_minutes)
    p.add_argument("--gtts-timeout", type=float, default=4.0)
    p.add_argument("--gtts-endpoint", default=None, help="URL standing in for Google's")
    p.add_argument("--cache-dir", default=None,
                   help="speech and render cache (default: $LOA_AUDIO_CACHE or "
                        "~/.cache/loaphuong/audio)")
    p.add_argument("--no-cache", action="store_true")
    return p


def fail(code: str, message: str, status: int) -> int:
    print(f"error: {code}: {message}", file=sys.stderr)
    print(json.dumps({"error": code, "message": message}, ensure_ascii=False), file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        return fail("bad_output", f"{out} is a directory", EXIT_BAD_INPUT)
    try:
        settings = AudioSettings(target_lufs=args.target_lufs, true_peak_dbtp=args.true_peak,
                                 fmt=args.format, bitrate_kbps=args.bitrate, chime=args.chime,
                                 trim=not args.no_trim, max_upload_mb=args.max_upload_mb,
                                 max_upload_minutes=args.max_upload_minutes)
    except ValueError as err:
        return fail("bad_setting", str(err), EXIT_BAD_INPUT)
    cache_dir = None if args.no_cache else Path(args.cache_dir or default_cache_dir())
    names = [n.strip() for n in args.engine.split(",") if n.strip()]
    try:
        chain = build_chain(names, args.gtts_timeout, cache_dir=cache_dir,
                            gtts_endpoint=args.gtts_endpoint)
    except ValueError as err:
        return fail("bad_engine", str(err), EXIT_BAD_INPUT)
    pipeline = Pipeline(chain=chain, settings=settings, cache_dir=cache_dir)
    try:
        if args.source:
            if not Path(args.source).is_file():
                return fail("not_found", f"no such file: {args.source}", EXIT_BAD_INPUT)
            rendered = pipeline.render_upload(args.source)
        else:
            text = sys.stdin.buffer.read().decode("utf-8", errors="strict")
            if not text.strip():
                return fail("empty_text", "no text on stdin", EXIT_BAD_INPUT)
            rendered = pipeline.render_text(text, args.voice, normalised=args.normalised)
    except UploadError as err:
        return fail(err.code, err.message, EXIT_BAD_INPUT)
    except UnicodeDecodeError:
        return fail("bad_text", "stdin is not UTF-8 text", EXIT_BAD_INPUT)
    except TTSError as err:
        return fail("tts_failed", str(err), EXIT_FAILED)
    except AudioError as err:
        return fail("audio_failed", str(err), EXIT_FAILED)
    render_to_file(rendered, out)
    print(json.dumps(rendered.summary() | {"out": str(out)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
