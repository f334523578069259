"""Reference counts the trace takes only to give back: pairs removed.

Between two points of a trace where no op escapes (runs a destructor or other
code, or stores a reference anywhere), nothing releases a reference, so an
object alive at the first point stays alive, and no list or tuple changes.

- ``incref x`` ... ``decref x`` with only non-escaping ops between: both go.
- ``v = list_getitem s, i`` (or ``tuple_getitem``) ... ``decref v`` with only
  non-escaping ops between and no use of v after the release: the container
  holds the item meanwhile, so the load becomes ``list_getitem_borrowed``
  (``tuple_getitem_borrowed``), which takes no reference, and the release goes.

Exactness at exits: the reference the trace no longer takes was one of the
owned entries of the snapshots in between (the exit stub hands it to the
frame); one such entry per snapshot becomes borrowed, so the stub takes that
reference itself (incref) and the frame ends with the same counts.  A pair
whose range has a snapshot without an owned entry of the value is kept.
"""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import Op, SnapEntry, Snapshot, Trace, Value

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_BORROWED = {"list_getitem": "list_getitem_borrowed", "tuple_getitem": "tuple_getitem_borrowed"}
# Ops that end a region: loop structure.
_BARRIERS = {"label", "jump", "exit"}


def _owned_index(snap: Snapshot, vid: int) -> tuple[int, str, int] | None:
    """Where an owned entry of value `vid` is in the snapshot: (frame, kind,
    index), frame -1 the trace's own and k its inlined frames[k]; innermost
    frame first, its stack from the top, then its locals."""
    levels: list[tuple[int, list[SnapEntry], dict[int, SnapEntry]]] = [
        (-1, snap.stack, snap.locals)]
    levels.extend((k, f.stack, f.locals) for k, f in enumerate(snap.frames))
    for level, stack, locals_ in reversed(levels):
        for i in range(len(stack) - 1, -1, -1):
            e = stack[i]
            if e.owned and isinstance(e.ref, Value) and e.ref.id == vid:
                return (level, "stack", i)
        for slot, e in sorted(locals_.items()):
            if e.owned and isinstance(e.ref, Value) and e.ref.id == vid:
                return (level, "local", slot)
    return None


def _disown(snap: Snapshot, where: tuple[int, str, int]) -> None:
    level, kind, i = where
    if level >= 0:
        stack, locals_ = snap.frames[level].stack, snap.frames[level].locals
    else:
        stack, locals_ = snap.stack, snap.locals
    if kind == "stack":
        stack[i] = SnapEntry(stack[i].ref, False)
    else:
        locals_[i] = SnapEntry(locals_[i].ref, False)


def _uses(op: Op, vid: int) -> bool:
    refs = list(op.args) + (op.snapshot.refs() if op.snapshot is not None else [])
    return any(isinstance(r, Value) and r.id == vid for r in refs)


def _release_after(ops: list[Op], start: int, vid: int, dead: set[int]) -> int | None:
    """Index of the first ``decref vid`` after `start` reached through
    non-escaping ops only, with a snapshot owning vid at every op between
    (ops in `dead` are already removed)."""
    for j in range(start + 1, len(ops)):
        if j in dead:
            continue
        op = ops[j]
        if op.name == "decref" and isinstance(op.args[0], Value) and op.args[0].id == vid:
            return j
        if op.info.escapes or op.name in _BARRIERS:
            return None
        if op.snapshot is not None and _owned_index(op.snapshot, vid) is None:
            return None
    return None


def _remove_pair(ops: list[Op], i: int, j: int, vid: int, dead: set[int]) -> None:
    for k in range(i + 1, j):
        if k in dead:
            continue
        snap = ops[k].snapshot
        if snap is not None:
            # Copy: snapshots may be shared between ops.
            snap = ops[k].snapshot = snap.copy()
            where = _owned_index(snap, vid)
            assert where is not None
            _disown(snap, where)


def remove_refcount_pairs(trace: Trace) -> Trace:
    ops = trace.ops
    dead: set[int] = set()
    for i, op in enumerate(ops):
        if i in dead:
            continue
        if op.name == "incref" and isinstance(op.args[0], Value):
            vid = op.args[0].id
        elif op.name in _BORROWED and op.result is not None:
            vid = op.result.id
        else:
            continue
        j = _release_after(ops, i, vid, dead)
        if j is None:
            continue
        if op.name in _BORROWED and any(_uses(later, vid) for later in ops[j + 1:]):
            continue
        _remove_pair(ops, i, j, vid, dead)
        dead.add(j)
        if op.name == "incref":
            dead.add(i)
        else:
            op.name = _BORROWED[op.name]
    trace.ops = [op for k, op in enumerate(ops) if k not in dead]
    return trace
