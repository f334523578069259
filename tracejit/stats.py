"""Counters the JIT keeps, and their text and JSON forms."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


@dataclass(slots=True)
class Stats:
    traces_started: int = 0
    traces_compiled: int = 0
    bridges_compiled: int = 0
    native_entries: int = 0
    # Exits that continued in another trace without returning to the interpreter.
    trace_transfers: int = 0
    guard_failures: int = 0
    # Calls inlined in compiled traces, and exits taken inside inlined calls
    # (each rebuilt the callees' frames).
    inlined_calls: int = 0
    inlined_exits: int = 0
    # Calls from traces that ran the callee's function trace on a frame
    # pushed by native code (no interpreter entry, no PY_START callback).
    direct_calls: int = 0
    time_in_jit_s: float = 0.0
    aborts: Counter[str] = field(default_factory=Counter)
    code_bytes: int = 0
    # Traces evicted to keep code_bytes under code_cache_size, and traces whose
    # machine code was unmapped (evicted, or their code object died).
    traces_evicted: int = 0
    traces_freed: int = 0

    def reset(self) -> None:
        fresh = Stats()
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "traces_started": self.traces_started,
            "traces_compiled": self.traces_compiled,
            "bridges_compiled": self.bridges_compiled,
            "native_entries": self.native_entries,
            "trace_transfers": self.trace_transfers,
            "guard_failures": self.guard_failures,
            "inlined_calls": self.inlined_calls,
            "inlined_exits": self.inlined_exits,
            "direct_calls": self.direct_calls,
            "time_in_jit_s": round(self.time_in_jit_s, 6),
            "aborts": dict(sorted(self.aborts.items())),
            "code_bytes": self.code_bytes,
            "traces_evicted": self.traces_evicted,
            "traces_freed": self.traces_freed,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        d = self.as_dict()
        lines = ["tracejit stats:"]
        for key in (
            "traces_started",
            "traces_compiled",
            "bridges_compiled",
            "native_entries",
            "trace_transfers",
            "guard_failures",
            "inlined_calls",
            "inlined_exits",
            "direct_calls",
            "code_bytes",
            "traces_evicted",
            "traces_freed",
        ):
            lines.append(f"  {key:<18} {d[key]}")
        lines.append(f"  {'time_in_jit_s':<18} {d['time_in_jit_s']:.4f}")
        if d["aborts"]:
            lines.append("  aborts:")
            for reason, count in d["aborts"].items():
                lines.append(f"    {reason:<30} {count}")
        return "\n".join(lines)


STATS = Stats()
