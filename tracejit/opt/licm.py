"""Loop-invariant frame loads: hoist them, and their type guards, above the label.

A frame slot the loop body never stores to holds the same object on every
iteration, so its load and type guard run once, in the preamble.  The hoisted
guard resumes at the loop header with the frame untouched, which is exactly
the preamble's state.
"""

from __future__ import annotations

from tracejit.ir.trace import Op, Snapshot, Trace, Value
from tracejit.opt.util import label_index


def hoist_invariant_loads(trace: Trace) -> Trace:
    li = label_index(trace)
    if li < 0:
        return trace
    body = trace.ops[li + 1:]
    stored = {op.attrs["slot"] for op in body if op.name == "store_local"}
    header_pc = None
    for op in body:
        if op.snapshot is not None and op.name == "check_eval_breaker":
            header_pc = op.snapshot.pc
            break
    if header_pc is None:
        return trace
    hoisted: list[Op] = []
    hoisted_ids: set[int] = set()
    kept: list[Op] = []
    for op in body:
        if op.name == "load_local" and op.attrs["slot"] not in stored:
            assert op.result is not None
            hoisted.append(op)
            hoisted_ids.add(op.result.id)
            continue
        if (
            op.name == "guard_type"
            and isinstance(op.args[0], Value)
            and op.args[0].id in hoisted_ids
        ):
            op.snapshot = Snapshot(header_pc)
            hoisted.append(op)
            continue
        kept.append(op)
    trace.ops = trace.ops[:li] + hoisted + [trace.ops[li]] + kept
    return trace
