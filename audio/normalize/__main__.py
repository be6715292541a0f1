"""``python -m audio.normalize [--lexicon ward.tsv]``: one normalised line out per line in.

Reads UTF-8 lines on stdin, writes exactly one line per input line on stdout and flushes
after each, so it can sit behind a pipe. A blank line gives a blank line; a line that
cannot be normalised (a bug) is written back unchanged rather than lost.
"""
from __future__ import annotations

import argparse
import sys

from . import Lexicon, load_lexicon, normalize_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audio.normalize", description=__doc__)
    parser.add_argument("--lexicon", metavar="FILE",
                        help="ward lexicon, UTF-8 TSV lines: key<TAB>spoken form")
    args = parser.parse_args(argv)

    try:
        lexicon = Lexicon.build(load_lexicon(args.lexicon) if args.lexicon else None)
    except (OSError, UnicodeDecodeError) as err:
        parser.error(f"cannot read the lexicon {args.lexicon}: {err}")
    with open(sys.stdin.fileno(), encoding="utf-8", errors="replace", newline=None,
              closefd=False) as stdin, \
            open(sys.stdout.fileno(), "w", encoding="utf-8", newline="\n",
                 closefd=False) as stdout:
        for raw in stdin:
            line = raw.rstrip("\r\n")
            try:
                spoken = normalize_line(line, lexicon) if line.strip() else ""
            except Exception as err:  # never lose a line of a bulletin
                print(f"audio.normalize: {err!r} on {line!r}", file=sys.stderr)
                spoken = line
            stdout.write(spoken.replace("\n", " ") + "\n")
            stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
