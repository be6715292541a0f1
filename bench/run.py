"""`make bench`: run every benchmark in bench/ (each a script taking --write-docs) and let each
write its own section of docs/benchmarks.md. Benchmarks are not tests: they report, they do
not fail the build, except when a script itself crashes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), "--write-docs"],
                          cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"crashed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
