"""Type propagation and constant folding.

- A guard_type on a value whose type is already proven (by an earlier guard,
  or because it was made by box_int/box_float/box_bool) is removed.
- guard_true/guard_false on a constant flag that holds are removed.
- Pure int/float/bool ops on constants are evaluated when the result is
  exact (int results must fit int64; a guard that would fail is kept).
- unbox(box(x)) is x.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.ops import Type
from tracejit.ir.trace import Const, Op, Ref, Trace, Value
from tracejit.opt.util import substitute

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _floordiv(a: int, b: int) -> int | None:
    return None if b == 0 else a // b


def _mod(a: int, b: int) -> int | None:
    return None if b == 0 else a % b


def _lshift(a: int, b: int) -> int | None:
    return None if b < 0 or b > 63 else a << b


def _rshift(a: int, b: int) -> int | None:
    return None if b < 0 else a >> min(b, 63)


_INT_FOLD: dict[str, Callable[[int, int], int | None]] = {
    "int_add": operator.add,
    "int_sub": operator.sub,
    "int_mul": operator.mul,
    "int_floordiv": _floordiv,
    "int_mod": _mod,
    "int_and": operator.and_,
    "int_or": operator.or_,
    "int_xor": operator.xor,
    "int_lshift": _lshift,
    "int_rshift": _rshift,
}
_CMP_FOLD: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt, "le": operator.le, "eq": operator.eq,
    "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
}
_FLOAT_FOLD: dict[str, Callable[[float, float], float]] = {
    "float_add": operator.add,
    "float_sub": operator.sub,
    "float_mul": operator.mul,
}
_BOX_TYPE = {"box_int": int, "box_float": float, "box_bool": bool}
_UNBOX_OF = {"unbox_int": "box_int", "unbox_float": "box_float"}


def _const(ref: Ref) -> Const | None:
    return ref if isinstance(ref, Const) else None


def _fold_value(op: Op) -> Const | None:
    args = [_const(a) for a in op.args]
    if not op.args or any(a is None for a in args):
        return None
    vals = [a.value for a in args if a is not None]
    name = op.name
    if name in _INT_FOLD:
        r = _INT_FOLD[name](int(vals[0]), int(vals[1]))
        if r is None or not INT64_MIN <= r <= INT64_MAX:
            return None
        return Const(r, Type.INT)
    if name == "int_neg":
        r = -int(vals[0])
        return Const(r, Type.INT) if INT64_MIN <= r <= INT64_MAX else None
    if name in _FLOAT_FOLD:
        return Const(_FLOAT_FOLD[name](float(vals[0]), float(vals[1])), Type.FLOAT)
    if name == "float_neg":
        return Const(-float(vals[0]), Type.FLOAT)
    if name == "int_to_float":
        return Const(float(int(vals[0])), Type.FLOAT)
    if name == "bool_not":
        return Const(not vals[0], Type.BOOL)
    prefix, _, cmp = name.partition("_")
    if prefix in ("int", "float") and cmp in _CMP_FOLD:
        a, b = vals
        if prefix == "float" and (math.isnan(a) or math.isnan(b)):
            return Const(cmp == "ne", Type.BOOL)
        return Const(_CMP_FOLD[cmp](a, b), Type.BOOL)
    return None


def fold(trace: Trace) -> Trace:
    proven: dict[int, type] = {}
    boxed_from: dict[int, tuple[str, Ref]] = {}
    mapping: dict[int, Ref] = {}
    kept: list[Op] = []

    def cur(ref: Ref) -> Ref:
        while isinstance(ref, Value) and ref.id in mapping:
            ref = mapping[ref.id]
        return ref

    for op in trace.ops:
        op.args = [cur(a) for a in op.args]
        if op.name == "guard_type":
            subject = op.args[0]
            if isinstance(subject, Value) and proven.get(subject.id) is op.attrs["type"]:
                continue
            if isinstance(subject, Const) and type(subject.value) is op.attrs["type"]:
                continue
            if isinstance(subject, Value):
                proven[subject.id] = op.attrs["type"]
        elif op.name in ("guard_true", "guard_false"):
            c = _const(op.args[0])
            if c is not None and bool(c.value) == (op.name == "guard_true"):
                continue
        elif op.name in _UNBOX_OF:
            src = op.args[0]
            if isinstance(src, Value) and src.id in boxed_from:
                box, inner = boxed_from[src.id]
                if box == _UNBOX_OF[op.name] and op.result is not None:
                    mapping[op.result.id] = inner
                    continue
            c = _const(src)
            if c is not None and op.result is not None:
                want = int if op.name == "unbox_int" else float
                if type(c.value) is want and (
                    want is float or INT64_MIN <= c.value <= INT64_MAX
                ):
                    mapping[op.result.id] = Const(c.value, op.result.type)
                    continue
        elif op.result is not None and op.info.pure:
            folded = _fold_value(op)
            if folded is not None:
                mapping[op.result.id] = folded
                continue
        if op.name in _BOX_TYPE and op.result is not None:
            proven[op.result.id] = _BOX_TYPE[op.name]
            boxed_from[op.result.id] = (op.name, op.args[0])
        kept.append(op)
    trace.ops = kept
    substitute(trace, mapping)
    return trace
