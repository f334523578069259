"""Helpers shared by the passes: use counts and value substitution."""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import Op, Ref, Trace, Value

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


def substitute(trace: Trace, mapping: dict[int, Ref]) -> None:
    """Replace uses of values (by id) everywhere, snapshots included."""
    if not mapping:
        return

    def sub(ref: Ref) -> Ref:
        while isinstance(ref, Value) and ref.id in mapping:
            ref = mapping[ref.id]
        return ref

    done: set[int] = set()  # snapshots and inlined frames are shared: map each once
    for op in trace.ops:
        op.args = [sub(a) for a in op.args]
        snap = op.snapshot
        if snap is not None and id(snap) not in done:
            done.add(id(snap))
            snap.map_refs(sub, done)


def use_counts(trace: Trace) -> dict[int, int]:
    counts: dict[int, int] = {}
    for op in trace.ops:
        refs: list[Ref] = list(op.args)
        if op.snapshot is not None:
            refs.extend(op.snapshot.refs())
        for r in refs:
            if isinstance(r, Value):
                counts[r.id] = counts.get(r.id, 0) + 1
    return counts


def label_index(trace: Trace) -> int:
    for i, op in enumerate(trace.ops):
        if op.name == "label":
            return i
    return -1


def defining_ops(trace: Trace) -> dict[int, Op]:
    return {op.result.id: op for op in trace.ops if op.result is not None}
