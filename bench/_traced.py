"""Run a module under tracemalloc, writing where its memory grew (bench/soak.py
--trace-dispatcher).

``python bench/_traced.py OUT EVERY_S -m MODULE ARGS...`` runs MODULE as ``python -m MODULE
ARGS...`` would, and every EVERY_S seconds appends to OUT the 25 source lines whose allocations
grew most since the first snapshot (taken EVERY_S seconds in, after start-up), and the traced
total. Slow (every allocation is traced): for short runs only, never for the figures of a soak.
"""
from __future__ import annotations

import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def watch(out: Path, every: float) -> None:
    time.sleep(every)
    first = tracemalloc.take_snapshot()
    t0 = time.monotonic()
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot()
        current, _peak = tracemalloc.get_traced_memory()
        top = snap.compare_to(first, "lineno")[:25]
        lines = [f"--- {time.monotonic() - t0:.0f} s after the first snapshot; traced "
                 f"{current / 2**20:.1f} MiB"]
        lines += [f"{st.size_diff / 1024:+9.0f} KiB {st.count_diff:+7d} blocks  "
                  f"{st.traceback[0].filename}:{st.traceback[0].lineno}" for st in top]
        with out.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def main() -> None:
    out, every, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(__doc__)
    tracemalloc.start(1)
    threading.Thread(target=watch, args=(Path(out), float(every)), daemon=True,
                     name="traced").start()
    sys.argv = [module, *rest]
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # bench/'s modules are not the traced program's
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
