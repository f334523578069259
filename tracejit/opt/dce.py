"""Dead-code elimination: pure ops and frame loads whose results nobody uses."""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import Trace
from tracejit.opt.util import use_counts

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

# Ops removable when unused even though they are not "pure" in the table.
_REMOVABLE = {"load_local"}


def dce(trace: Trace) -> Trace:
    changed = True
    while changed:
        changed = False
        counts = use_counts(trace)
        kept = []
        for op in trace.ops:
            if (
                op.result is not None
                and counts.get(op.result.id, 0) == 0
                and (op.info.pure and not op.info.guard or op.name in _REMOVABLE
                     or op.name in ("box_int", "box_float", "box_bool"))
            ):
                changed = True
                continue
            kept.append(op)
        trace.ops = kept
    return trace
