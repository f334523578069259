"""Hot-loop counters with backoff, and blacklisting after repeated aborts.

Thresholds are odd, prime-derived numbers (as PyPy's 1039 and CPython 3.15's
backoff table) so that a recording does not always start on the same phase
of a periodic loop.  Each abort multiplies the wait (LuaJIT's penalty cache is
the model); after ``max_aborts`` aborts the location is blacklisted and its
events are turned off, so cold or hopeless code pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

# Multipliers applied after the 1st, 2nd, ... abort (CPython 3.15's backoff values).
BACKOFF = (1, 6, 30, 126, 508, 2052, 8190)


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

    def abort(self, base_threshold: int, max_aborts: int) -> None:
        self.aborts += 1
        self.count = 0
        if self.aborts >= max_aborts:
            self.blacklisted = True
            return
        factor = BACKOFF[min(self.aborts, len(BACKOFF) - 1)]
        self.threshold = base_threshold * factor + 1

    def reset(self) -> None:
        self.count = 0
