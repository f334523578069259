"""Loop-invariant frame loads: hoist them, and their type guards, above the label.

A frame slot the loop body never stores to holds the same object on every
iteration, so its load and type guard run once, in the preamble.  The hoisted
guard resumes at the loop header with the frame untouched, which is exactly
the preamble's state.  A body with call-outs (followed by
check_instrumentation) hoists no loads: the code it calls may rebind any
local through the frame's f_locals (write-through since PEP 667).
"""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.ops import Type
from tracejit.ir.trace import Op, Snapshot, Trace, Value
from tracejit.opt.util import label_index

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


def hoist_invariant_loads(trace: Trace) -> Trace:
    li = label_index(trace)
    if li < 0:
        return trace
    body = trace.ops[li + 1:]
    stored = {op.attrs["slot"] for op in body if op.name == "store_local"}
    # A body that runs foreign code (every call-out is followed by this check)
    # may have any local rebound through f_locals: no frame slot is invariant.
    foreign = any(op.name == "check_instrumentation" for op in body)
    header_pc = None
    for op in body:
        if op.snapshot is not None and op.name == "check_eval_breaker":
            header_pc = op.snapshot.pc
            break
    if header_pc is None:
        return trace
    hoisted: list[Op] = []
    # Values defined above the label (preamble), plus those hoisted.
    invariant: set[int] = {op.result.id for op in trace.ops[:li] if op.result is not None}
    kept: list[Op] = []

    def all_invariant(op: Op) -> bool:
        return all(not isinstance(a, Value) or a.id in invariant for a in op.args)

    for op in body:
        if op.name == "load_local" and op.attrs["slot"] not in stored and not foreign:
            assert op.result is not None
            hoisted.append(op)
            invariant.add(op.result.id)
            continue
        if op.name == "guard_type" and all_invariant(op):
            op.snapshot = Snapshot(header_pc, entry=True)
            hoisted.append(op)
            continue
        # Pure computations on invariant values (unboxing, conversions); a guard
        # among them exits at the header with the frame untouched.  Never an op
        # returning an object: it is a new reference the body releases on every
        # iteration (hoisting tuple_getitem corrupted refcounts).
        if op.info.pure and op.result is not None and op.result.type is not Type.OBJ \
                and all_invariant(op) and not op.info.raises:
            if op.snapshot is not None:
                op.snapshot = Snapshot(header_pc, entry=True)
            hoisted.append(op)
            invariant.add(op.result.id)
            continue
        kept.append(op)
    trace.ops = trace.ops[:li] + hoisted + [trace.ops[li]] + kept
    return trace
