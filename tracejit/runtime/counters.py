"""Hot-loop counters with backoff, and blacklisting after repeated aborts.

Thresholds are odd, prime-derived numbers (as PyPy's 1039 and CPython 3.15's
backoff table) so that a recording does not always start on the same phase
of a periodic loop.  Each abort multiplies the wait (LuaJIT's penalty cache is
the model); after ``max_aborts`` aborts the location is blacklisted and its
events are turned off, so cold or hopeless code pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

# Multipliers of the threshold after the 1st, 2nd, ... abort.  Kept small: every
# back-edge of a loop still waiting costs a Python callback, so a hopeless loop
# must reach its blacklisting quickly (LuaJIT's penalties are small too).
BACKOFF = (1, 2, 3, 5, 7, 11)


@dataclass(slots=True)
class LoopCounter:
    threshold: int
    count: int = 0
    aborts: int = 0
    blacklisted: bool = False

    def tick(self) -> bool:
        """Count one back-edge; True when the loop should be recorded now."""
        self.count += 1
        return self.count >= self.threshold

    def abort(self, base_threshold: int, max_aborts: int, permanent: bool = False) -> None:
        self.aborts += 1
        self.count = 0
        if permanent or self.aborts >= max_aborts:
            self.blacklisted = True
            return
        factor = BACKOFF[min(self.aborts, len(BACKOFF) - 1)]
        self.threshold = base_threshold * factor + 1

    def reset(self) -> None:
        self.count = 0
