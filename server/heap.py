"""What a long-running server process does once it has built what it keeps for its life."""
from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then move every object alive to the permanent generation (``gc.freeze``):
    the modules, the app or the ORM's mappers, the scheduler. Python's full collections then
    no longer walk them. Those come every few thousand new objects, and in the bridge, which
    allocates a great deal per node message, each walked about 170,000 objects: 80 ms, 13 of
    them while 80,000 node messages were stored (1.05 s of 11 s). Frozen, the same passes took
    7 ms each (docs/benchmarks.md, "The bridge's ingest in-process"). Nothing frozen is ever
    freed, so it is called once the process is built, not while it serves."""
    gc.collect()
    gc.freeze()
