"""JIT parameters: one dataclass, validated in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


@dataclass(slots=True)
class Params:
    # Back-edge executions before a loop is recorded (PyPy uses 1039, a prime).
    threshold: int = 1039
    # Calls before a function is traced from its first instruction (fewer for
    # big functions: scaled by 64 / instructions, at least 3).
    function_threshold: int = 1619
    # Smallest function (in code units) traced from its entry: without inlining,
    # a small function's trace costs more to enter than it saves.
    function_min_size: int = 200
    # Guard failures before an exit grows a bridge.
    trace_eagerness: int = 200
    # Longest trace, counted in recorded bytecode instructions; a longer one
    # aborts and the code is traced in segments from then on.
    trace_limit: int = 6000
    # Recording follows calls of Python functions into their code, at most
    # max_inline_depth nested calls deep (docs/design.md, "Inlining").
    inlining: bool = True
    max_inline_depth: int = 8
    # Aborts at one location before it is blacklisted for good.
    max_aborts: int = 3
    # Bytes of mapped trace code (stats' code_bytes) kept: past it, the least
    # recently entered root traces are evicted with their bridges.
    code_cache_size: int = 64 * 1024 * 1024
    # Most of the run time, in percent, the JIT may spend recording and
    # compiling (after its first JIT_TIME_GRACE_S seconds): past it, hot loops
    # and exits wait until the program has run long enough.  Code where
    # traces cannot pay for themselves costs a bounded share, not a cliff.
    # 100 turns the limit off.
    jit_time_percent: int = 10

    def update(self, **changes: object) -> None:
        """Set parameters by name; raise ValueError with a clear message on bad input."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise ValueError(f"unknown tracejit parameter {name!r} (known: {known})")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"tracejit parameter {name} must be True or False")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"tracejit parameter {name} must be a positive integer, got {value!r}"
                    )
            if name == "jit_time_percent" and isinstance(value, int) and value > 100:
                raise ValueError(
                    f"tracejit parameter jit_time_percent must be at most 100, got {value!r}")
            setattr(self, name, value)


def parse_param_string(text: str) -> dict[str, object]:
    """Parse 'threshold=1,inlining=off' (the CLI's --param syntax)."""
    out: dict[str, object] = {}
    defaults = Params()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"tracejit parameter {part!r} needs the form name=value")
        name, raw = (s.strip() for s in part.split("=", 1))
        if not hasattr(defaults, name):
            raise ValueError(f"unknown tracejit parameter {name!r}")
        current = getattr(defaults, name)
        if isinstance(current, bool):
            low = raw.lower()
            if low in ("1", "on", "true", "yes"):
                out[name] = True
            elif low in ("0", "off", "false", "no"):
                out[name] = False
            else:
                raise ValueError(f"tracejit parameter {name} must be on or off, got {raw!r}")
        else:
            try:
                out[name] = int(raw)
            except ValueError:
                raise ValueError(
                    f"tracejit parameter {name} must be an integer, got {raw!r}"
                ) from None
    return out
