"""The optimizer pipeline."""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import Trace, verify
from tracejit.opt.dce import dce
from tracejit.opt.fold import fold
from tracejit.opt.licm import hoist_invariant_loads
from tracejit.opt.refcount import remove_refcount_pairs

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

PASSES = (hoist_invariant_loads, fold, dce, remove_refcount_pairs)


def optimize(trace: Trace) -> Trace:
    verify(trace)
    for p in PASSES:
        trace = p(trace)
        verify(trace)
    return trace
