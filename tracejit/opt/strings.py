"""Fusing chains of constant str.replace calls.

``s.replace(a, b).replace(c, d)...`` on an exact str with constant exact str
arguments (html.escape's five replaces) becomes one ``str_replace_chain``:
the intermediate strings are never seen by anything else, so one runtime call
makes them and releases them.  A step that fails (out of memory) leaves the
trace before the first replace, and the interpreter runs them all again:
they have no effect besides their result.  A compiled template's code runs
once per render, so it is mostly fetched from memory: the chain is one op of
about 40 bytes instead of five calls and four releases of about 420.
"""

from __future__ import annotations

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.ops import Type
from tracejit.ir.trace import Const, Op, Ref, Trace, Value
from tracejit.opt.util import use_counts

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_STR_REPLACE = str.replace


def const_replace(op: Op) -> tuple[str, str] | None:
    """(old, new) of a call_nocode of str.replace(s, old, new) with constant
    exact strs (call_nocode's contract: s is an exact str)."""
    if op.name != "call_nocode" or len(op.args) != 4:
        return None
    fn, _, old, new = op.args
    if not (isinstance(fn, Const) and fn.value is _STR_REPLACE):
        return None
    if not (isinstance(old, Const) and isinstance(new, Const) and old.type is Type.OBJ
            and new.type is Type.OBJ and type(old.value) is str and type(new.value) is str):
        return None
    return old.value, new.value


def _refs(op: Op) -> list[Ref]:
    refs: list[Ref] = list(op.args)
    if op.snapshot is not None:
        refs.extend(op.snapshot.refs())
    return refs


def _is(ref: Ref, value: Ref) -> bool:
    return ref is value or (isinstance(ref, Value) and isinstance(value, Value)
                            and ref.id == value.id)


def fuse_replace_chains(trace: Trace) -> Trace:
    uses = use_counts(trace)
    ops = trace.ops
    out: list[Op] = []
    i = 0
    while i < len(ops):
        first = ops[i]
        pair = const_replace(first)
        if pair is None or first.result is None:
            out.append(first)
            i += 1
            continue
        source = first.args[1]
        pairs = [pair]
        cur: Value = first.result
        kept: list[Op] = []  # the source's release, moved after the chain
        j = i + 1  # the first op not taken into the chain
        while True:
            # Between two steps: releases of the source (once) and of cur (once).
            k, released, kept_here = j, False, list(kept)
            while k < len(ops) and ops[k].name == "decref":
                arg = ops[k].args[0]
                if _is(arg, cur) and not released:
                    released = True
                elif _is(arg, source) and not kept_here:
                    kept_here.append(ops[k])
                else:
                    break
                k += 1
            if k >= len(ops):
                break
            nxt = ops[k]
            step = const_replace(nxt)
            if step is None or nxt.result is None or not _is(nxt.args[1], cur):
                break
            end = k + 1
            if not released and end < len(ops) and ops[end].name == "decref" \
                    and _is(ops[end].args[0], cur):
                released, end = True, end + 1
            # cur is seen by nothing but the next step and its one release.
            seen = sum(1 for r in _refs(nxt) if _is(r, cur))
            if not released or uses.get(cur.id, 0) != seen + 1:
                break
            pairs.append(step)
            kept = kept_here
            cur = nxt.result
            j = end
        if len(pairs) < 2:
            out.append(first)
            i += 1
            continue
        out.append(Op("str_replace_chain", [source], {"pairs": tuple(pairs)}, cur,
                      first.snapshot))
        out.extend(kept)
        i = j
    trace.ops = out
    return trace
