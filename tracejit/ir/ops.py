"""The one table of trace IR ops.

Every op a trace can hold is defined here: its result type, operand types,
named attributes, and the properties the optimizer and the backend rely on.
docs/ir.md is generated from the same table (``python -m tracejit.ir.ops``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


class Type(enum.Enum):
    OBJ = "obj"  # a PyObject *
    INT = "int"  # an unboxed int64
    FLOAT = "float"  # an unboxed double
    BOOL = "bool"  # an unboxed 0/1
    VOID = "void"  # no result

    # Members are singletons compared by identity: hash them in C (Enum's
    # __hash__ is Python code, and the compiler hashes types constantly).
    __hash__ = object.__hash__


# Operand type that accepts any number of OBJ operands (calls).
VARARGS = "varargs"


@dataclass(frozen=True, slots=True)
class OpInfo:
    name: str
    result: Type
    operands: tuple[Type, ...]
    attrs: tuple[str, ...] = ()
    # Can leave the trace when a run-time check fails (needs a snapshot).
    guard: bool = False
    # Can raise a Python exception (needs a snapshot for the error exit).
    raises: bool = False
    # No side effect: removable when its result is unused, foldable.
    pure: bool = False
    # May run arbitrary Python code (a call, a decref, a generic C-API op).
    escapes: bool = False
    varargs: bool = False
    doc: str = ""

    @property
    def needs_snapshot(self) -> bool:
        return self.guard or self.raises


O, I, F, B, V = Type.OBJ, Type.INT, Type.FLOAT, Type.BOOL, Type.VOID  # noqa: E741


def _ops(*infos: OpInfo) -> dict[str, OpInfo]:
    table: dict[str, OpInfo] = {}
    for info in infos:
        assert info.name not in table, info.name
        table[info.name] = info
    return table


OPS: dict[str, OpInfo] = _ops(
    # Frame access.  Slots index the frame's localsplus (locals, then stack).
    OpInfo("load_local", O, (), ("slot",), doc="Borrowed reference held by frame slot `slot`."),
    OpInfo(
        "store_local", V, (O,), ("slot",), escapes=True,
        doc="Write an owned reference into frame slot `slot`, releasing the old one.",
    ),
    # Reference counting.
    OpInfo("incref", V, (O,), doc="Take a new reference."),
    OpInfo("decref", V, (O,), escapes=True, doc="Release a reference (may run __del__)."),
    # Guards.
    OpInfo("guard_type", V, (O,), ("type",), guard=True, doc="Exit unless type(v) is `type`."),
    OpInfo("guard_is", V, (O,), ("obj",), guard=True, doc="Exit unless v is `obj`."),
    OpInfo("guard_is_not", V, (O,), ("obj",), guard=True, doc="Exit if v is `obj`."),
    OpInfo("guard_true", V, (B,), guard=True, doc="Exit unless the flag is set."),
    OpInfo("guard_false", V, (B,), guard=True, doc="Exit if the flag is set."),
    OpInfo(
        "guard_dict_str_keys", V, (O,), guard=True,
        doc="Exit unless exact dict v's key table holds str keys only (no lookup calls __eq__).",
    ),
    OpInfo(
        "check_eval_breaker", V, (), guard=True,
        doc="Exit when signals, GIL requests or async events are pending.",
    ),
    # Boxing.
    OpInfo("unbox_int", I, (O,), guard=True, pure=True, doc="Exact int to int64; exit if too big."),
    OpInfo("box_int", O, (I,), raises=True, pure=True, doc="New int object."),
    OpInfo("unbox_float", F, (O,), pure=True, doc="Exact float to double."),
    OpInfo("box_float", O, (F,), raises=True, pure=True, doc="New float object."),
    OpInfo("box_bool", O, (B,), pure=True, doc="True or False (immortal)."),
    OpInfo(
        "is_true", B, (O,), raises=True, escapes=True, doc="Truth value (may call __bool__)."
    ),
    # Unboxed int64 arithmetic; guards exit on overflow so the interpreter redoes it.
    OpInfo("int_add", I, (I, I), guard=True, pure=True, doc="a + b, exit on overflow."),
    OpInfo("int_sub", I, (I, I), guard=True, pure=True, doc="a - b, exit on overflow."),
    OpInfo("int_mul", I, (I, I), guard=True, pure=True, doc="a * b, exit on overflow."),
    OpInfo("int_floordiv", I, (I, I), guard=True, pure=True, doc="a // b; exit if b == 0."),
    OpInfo("int_mod", I, (I, I), guard=True, pure=True, doc="a % b (sign of b); exit if b == 0."),
    OpInfo("int_and", I, (I, I), pure=True, doc="a & b."),
    OpInfo("int_or", I, (I, I), pure=True, doc="a | b."),
    OpInfo("int_xor", I, (I, I), pure=True, doc="a ^ b."),
    OpInfo("int_lshift", I, (I, I), guard=True, pure=True, doc="a << b, exit on overflow."),
    OpInfo("int_rshift", I, (I, I), guard=True, pure=True, doc="a >> b; exit if b < 0."),
    OpInfo("int_neg", I, (I,), guard=True, pure=True, doc="-a, exit on overflow."),
    OpInfo("int_lt", B, (I, I), pure=True, doc="a < b."),
    OpInfo("int_le", B, (I, I), pure=True, doc="a <= b."),
    OpInfo("int_eq", B, (I, I), pure=True, doc="a == b."),
    OpInfo("int_ne", B, (I, I), pure=True, doc="a != b."),
    OpInfo("int_gt", B, (I, I), pure=True, doc="a > b."),
    OpInfo("int_ge", B, (I, I), pure=True, doc="a >= b."),
    # Unboxed double arithmetic.
    OpInfo("float_add", F, (F, F), pure=True, doc="a + b."),
    OpInfo("float_sub", F, (F, F), pure=True, doc="a - b."),
    OpInfo("float_mul", F, (F, F), pure=True, doc="a * b."),
    OpInfo("float_div", F, (F, F), guard=True, pure=True, doc="a / b; exit if b == 0."),
    OpInfo(
        "float_pow", F, (F, F), guard=True, pure=True,
        doc="a ** b when a is finite and > 0, b finite and the result finite (C pow, "
        "as float_pow); exit otherwise (the interpreter raises or returns a complex).",
    ),
    OpInfo("float_neg", F, (F,), pure=True, doc="-a."),
    OpInfo("float_lt", B, (F, F), pure=True, doc="a < b."),
    OpInfo("float_le", B, (F, F), pure=True, doc="a <= b."),
    OpInfo("float_eq", B, (F, F), pure=True, doc="a == b."),
    OpInfo("float_ne", B, (F, F), pure=True, doc="a != b."),
    OpInfo("float_gt", B, (F, F), pure=True, doc="a > b."),
    OpInfo("float_ge", B, (F, F), pure=True, doc="a >= b."),
    OpInfo("int_to_float", F, (I,), pure=True, doc="float(a), correctly rounded."),
    OpInfo("bool_not", B, (B,), pure=True, doc="not a."),
    OpInfo("obj_is", B, (O, O), pure=True, doc="a is b (the same object)."),
    # Generic operations through the C-API (new references; NULL raises).
    OpInfo(
        "call_unary", O, (O,), ("fn",), raises=True, escapes=True,
        doc="fn(a) for a unary C-API function such as PyNumber_Negative.",
    ),
    OpInfo(
        "call_binary", O, (O, O), ("fn",), raises=True, escapes=True,
        doc="fn(a, b) for a binary C-API function such as PyNumber_Add.",
    ),
    OpInfo(
        "richcompare", O, (O, O), ("op",), raises=True, escapes=True,
        doc="PyObject_RichCompare(a, b, op).",
    ),
    OpInfo("getattr", O, (O,), ("name",), raises=True, escapes=True, doc="getattr(o, name)."),
    OpInfo(
        "setattr", V, (O, O), ("name",), raises=True, escapes=True, doc="setattr(o, name, v)."
    ),
    OpInfo("setitem", V, (O, O, O), raises=True, escapes=True, doc="o[k] = v."),
    OpInfo(
        "call", O, (O,), raises=True, escapes=True, varargs=True,
        doc="Vectorcall callable(args...) (first operand is the callable).",
    ),
    OpInfo(
        "call_kw", O, (O,), ("kwnames",), raises=True, escapes=True, varargs=True,
        doc="Vectorcall callable(args...) whose last len(kwnames) arguments are passed "
        "by the names of the tuple `kwnames` (CALL_KW).",
    ),
    OpInfo(
        "call_nocode", O, (O,), raises=True, varargs=True,
        doc="`call` of a builtin proven to run no Python code and to release no "
        "reference (a method of an exact str or bytes, list.append, isinstance of "
        "builtin types): nothing else in the trace can change meanwhile. A method "
        "descriptor's self is proven an exact instance of its class, so the backend "
        "calls its C function directly.",
    ),
    OpInfo(
        "make_function", O, (O,), raises=True,
        doc="MAKE_FUNCTION: a new function of code object a and the frame's globals, "
        "its version the code's (as the interpreter's).",
    ),
    OpInfo(
        "set_function_attribute", V, (O, O), ("flag",),
        doc="SET_FUNCTION_ATTRIBUTE: the new function a takes b (stolen) as its closure "
        "(flag 8), annotations (4), keyword defaults (2) or defaults (1, which resets its "
        "version, as the interpreter does).",
    ),
    OpInfo(
        "str_replace_chain", O, (O,), ("pairs",), guard=True,
        doc="s.replace(old1, new1).replace(old2, new2)... for an exact str s and the "
        "exact str constants of `pairs` ((old, new), ...), made by tracejit/opt/"
        "strings.py from a chain of call_nocode; exit (before the first replace, the "
        "interpreter runs them again) if a step fails.",
    ),
    OpInfo(
        "list_append", V, (O, O), raises=True,
        doc="list.append(l, v) on a list proven exact (CPython's CALL_LIST_APPEND): "
        "the list takes a new reference to v; runs no Python code.",
    ),
    OpInfo(
        "build_tuple", O, (O,), raises=True, varargs=True,
        doc="BUILD_TUPLE: a new tuple of the operands (each gets a new reference).",
    ),
    OpInfo(
        "build_list", O, (O,), raises=True, varargs=True,
        doc="BUILD_LIST with items: a new list of the operands (each gets a new reference).",
    ),
    OpInfo(
        "list_extend", V, (O, O), raises=True,
        doc="LIST_EXTEND: extend the exact list a by the items of b, an exact list or "
        "tuple (runs no Python code).",
    ),
    OpInfo(
        "get_slice", O, (O, O, O), raises=True, escapes=True,
        doc="BINARY_SLICE: a[b:c] (a slice object of b and c, then PyObject_GetItem).",
    ),
    OpInfo(
        "build_string", O, (O,), raises=True, varargs=True,
        doc="BUILD_STRING: the concatenation of the operands, exact strs.",
    ),
    OpInfo(
        "build_const_key_map", O, (O,), ("keys",), raises=True, escapes=True, varargs=True,
        doc="BUILD_CONST_KEY_MAP: a new dict mapping the items of the constant tuple "
        "`keys` to the operands (hashing a key may run code).",
    ),
    OpInfo(
        "contains", B, (O, O), ("invert",), raises=True, escapes=True,
        doc="CONTAINS_OP: `a in b` (PySequence_Contains), negated if `invert`.",
    ),
    OpInfo("len", I, (O,), raises=True, escapes=True, doc="len(o) as int64."),
    OpInfo("ob_size", I, (O,), doc="Length of an object proven an exact list or tuple."),
    OpInfo(
        "list_getitem", O, (O, I), guard=True,
        doc="New reference to an exact list's item; exit if out of range.",
    ),
    OpInfo(
        "tuple_getitem", O, (O, I), guard=True, pure=True,
        doc="New reference to an exact tuple's item; exit if out of range.",
    ),
    OpInfo(
        "list_getitem_borrowed", O, (O, I), guard=True,
        doc="Borrowed reference to an exact list's item (valid while nothing escapes); "
        "exit if out of range.",
    ),
    OpInfo(
        "tuple_getitem_borrowed", O, (O, I), guard=True, pure=True,
        doc="Borrowed reference to an exact tuple's item; exit if out of range.",
    ),
    OpInfo(
        "list_setitem", V, (O, I, O), guard=True, escapes=True,
        doc="Exact list item store (steals v, releases old); exit if out of range.",
    ),
    OpInfo(
        "list_setitem_float", V, (O, I, F), guard=True, raises=True, escapes=True,
        doc="Exact list item store of a float; an old exact float only the list refers "
        "to is updated in place; exit if out of range.",
    ),
    # Iteration (the iterator stays on the frame's value stack).
    OpInfo("range_next", I, (O,), guard=True, doc="Next value of a range iterator; exit at end."),
    OpInfo("list_next", O, (O,), guard=True, doc="Next item of a list iterator; exit at end."),
    OpInfo("tuple_next", O, (O,), guard=True, doc="Next item of a tuple iterator; exit at end."),
    OpInfo(
        "iter_next_or_null", O, (O,), raises=True, escapes=True,
        doc="tp_iternext: the next item (owned) or NULL at the end; raise on error.",
    ),
    OpInfo(
        "iter_next", O, (O,), guard=True, raises=True, escapes=True,
        doc="tp_iternext; exit at end, raise on error.",
    ),
    OpInfo(
        "guard_global", V, (), ("name", "obj"), guard=True, raises=True,
        doc="Exit unless `name` (the frame's globals, then builtins) is `obj`; no "
        "lookup while neither dict changed since the last check.",
    ),
    OpInfo(
        "load_global", O, (), ("name",), guard=True, raises=True,
        doc="The value of `name` in the frame's globals, then builtins, looked up at "
        "each use (a global whose guard_global went hot, or seen changing between "
        "recordings); exit if it is missing.",
    ),
    OpInfo(
        "guard_global_in", V, (), ("func", "name", "obj"), guard=True,
        raises=True, doc="guard_global in the globals and builtins of function `func` "
        "(an inlined callee's own).",
    ),
    OpInfo(
        "guard_module_attr", V, (), ("module", "name", "obj"), guard=True,
        raises=True, doc="Exit unless attribute `name` of module `module` (an exact "
        "module; the name is no attribute of the module type) is `obj` in its dict; "
        "no lookup while the dict did not change since the last check.",
    ),
    # Loop structure.
    OpInfo(
        "label", V, (), varargs=True,
        doc="Loop header: defines the loop-carried values; its operands are their "
        "values on entry from the preamble.",
    ),
    OpInfo("jump", V, (), varargs=True, doc="Back to the label, passing the carried values."),
    OpInfo(
        "check_instrumentation", V, (), guard=True,
        doc="After code ran (a call-out): exit if another monitoring tool (settrace, "
        "setprofile, sys.monitoring) now watches this code.",
    ),
    OpInfo(
        "guard_pure_call", V, (), guard=True,
        doc="After a `call` of a Python function whose function trace is pure (it runs no "
        "Python code and changes no dict): exit, after the call, unless that trace alone "
        "ran to its return, so the checks made before the call still hold.",
    ),
    OpInfo("exit", V, (), guard=True, doc="Always leave the trace (the end of a segment)."),
    # Inlined calls.
    OpInfo(
        "load_field", O, (O,), ("offset",),
        doc="Borrowed reference held by the object field at byte `offset` (a bound "
        "method's function or self).",
    ),
    OpInfo(
        "store_cell", V, (O, O), escapes=True,
        doc="STORE_DEREF: cell a takes the owned reference b and releases its old "
        "content (may run __del__).",
    ),
    OpInfo(
        "guard_field_is", V, (O,), ("offset", "obj"), guard=True,
        doc="Exit unless the object field at byte `offset` is `obj` (an inlined "
        "function's code or defaults).",
    ),
    OpInfo(
        "guard_cfunc", V, (O,), ("method",), guard=True,
        doc="Exit unless v is a builtin method object made from the method "
        "descriptor `method` (the same C function; its self is loaded with "
        "load_field and typed by its own guard).",
    ),
    OpInfo(
        "guard_type_version", V, (), ("type", "version"), guard=True,
        doc="Exit unless `type` still has version tag `version` (no attribute of it "
        "or its bases changed).",
    ),
)

# Ops that can run arbitrary Python code, not only a destructor (`escapes`
# also covers releases).  Unless the translator proves the operands' types
# make them code-free, the trace writes its unboxed locals into the frame
# before such an op (the code may read them through the frame), forgets what
# it knew about frame slots after it (the code may write them: f_locals is
# write-through), and checks for monitoring tools at the next instruction.
CALLS_OUT = frozenset({
    "is_true", "call_unary", "call_binary", "richcompare", "getattr", "setattr", "setitem",
    "call", "call_kw", "len", "iter_next_or_null", "iter_next", "contains",
    "build_const_key_map", "get_slice",
})

# Ops whose results are loop-carried label parameters must be of these types.
CARRIED_TYPES = (Type.INT, Type.FLOAT, Type.BOOL)


def info(name: str) -> OpInfo:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None


def markdown_table() -> str:
    rows = [
        "| op | result | operands | attrs | properties | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for op in OPS.values():
        props = [
            p
            for p, on in (
                ("guard", op.guard),
                ("raises", op.raises),
                ("pure", op.pure),
                ("escapes", op.escapes),
            )
            if on
        ]
        operands = ", ".join(t.value for t in op.operands) + (", ..." if op.varargs else "")
        rows.append(
            f"| `{op.name}` | {op.result.value} | {operands} | {', '.join(op.attrs)} "
            f"| {', '.join(props)} | {op.doc} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
