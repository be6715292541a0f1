"""How many examples a property test runs, by hypothesis profile (registered in
tests/conftest.py): "default" runs each test's full count, "fast" (``make test-fast``) a fifth
of it. The tests pass their full count through ``examples``; what each example checks is the
same in both."""
from __future__ import annotations

from hypothesis import settings

FULL = 100  # max_examples of hypothesis's default profile
FAST_PROFILE = "fast"
FAST_EXAMPLES = 20  # the "fast" profile's max_examples: a fifth of the default
MIN_EXAMPLES = 2


def examples(full: int) -> int:
    """``full`` under the default profile; in proportion (at least 2) under a smaller one."""
    current = settings().max_examples  # a settings object takes the loaded profile's values
    if current >= FULL:
        return full
    return max(MIN_EXAMPLES, full * current // FULL)
