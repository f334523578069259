"""The optimizer pipeline.

The optimized trace is always verified (a broken one is refused, never run).
With ``TRACEJIT_VERIFY=1`` (the tests set it) every pass's input and output
are too, to name the pass that broke it; that costs about a fifth of the
compile time on big traces.
"""

from __future__ import annotations

import os

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import Trace, verify
from tracejit.opt.dce import dce
from tracejit.opt.fold import fold
from tracejit.opt.licm import hoist_invariant_loads
from tracejit.opt.refcount import remove_refcount_pairs
from tracejit.opt.strings import fuse_replace_chains

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

PASSES = (hoist_invariant_loads, fold, dce, remove_refcount_pairs, fuse_replace_chains)


def optimize(trace: Trace) -> Trace:
    each = os.environ.get("TRACEJIT_VERIFY") == "1"
    for p in PASSES:
        if each:
            verify(trace)  # the input of p
        trace = p(trace)
    verify(trace)
    return trace
