"""Lowering a recorded loop iteration to trace IR (a separate pass after recording).

The translator interprets the recorded bytecodes abstractly: an abstract
value stack of IR values, the frame locals the trace holds unwritten
("virtual": unboxed values not yet stored into the frame), and the Python
types proven by guards.  Guards take the types, branch directions and
identities seen while recording; every guard and every op that can raise
carries a snapshot of the frame as the interpreter would have it.

Reference counting follows the interpreter: values on the abstract stack are
either owned (the trace holds a reference) or borrowed (from a frame slot or
a constant); consumers release owned inputs; an exit hands owned entries to
the frame and takes new references for borrowed ones.

Loop shape::

    <loads and guards of the loop-carried locals>   # preamble, exits to header
    label p1, p2, ...                               # carried unboxed locals
    check_eval_breaker
    <one iteration>
    jump q1, q2, ...
"""

from __future__ import annotations

import builtins
import operator
import sys
import types
from dataclasses import dataclass, field
from typing import TypeGuard

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.layout import LAYOUT, METHOD_DESCRIPTOR, TPFLAGS_HEAPTYPE
from tracejit.ir.ops import CALLS_OUT, OPS, Type
from tracejit.ir.trace import Const, FrameSnap, Op, Ref, SnapEntry, Snapshot, Trace, Value
from tracejit.recorder.bytecodes import BYTECODES
from tracejit.recorder.record import (
    AbortReason,
    CodeInfo,
    InlineCall,
    NullType,
    Record,
    Recording,
    RecordingAborted,
    code_info,
)

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


class _Null:
    """The NULL pointer the interpreter pushes for calls (PUSH_NULL)."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

RANGE_ITER: type = type(iter(range(0)))
LIST_ITER: type = type(iter([]))
TUPLE_ITER: type = type(iter(()))

# BINARY_OP oparg -> (generic C-API function, int IR op, float IR op)
_BINOPS: dict[int, tuple[str, str | None, str | None]] = {
    0: ("PyNumber_Add", "int_add", "float_add"),
    1: ("PyNumber_And", "int_and", None),
    2: ("PyNumber_FloorDivide", "int_floordiv", None),
    3: ("PyNumber_Lshift", "int_lshift", None),
    4: ("PyNumber_MatrixMultiply", None, None),
    5: ("PyNumber_Multiply", "int_mul", "float_mul"),
    6: ("PyNumber_Remainder", "int_mod", None),
    7: ("PyNumber_Or", "int_or", None),
    8: ("pow", None, "float_pow"),  # ternary in the C-API: generic calls use operator.pow
    9: ("PyNumber_Rshift", "int_rshift", None),
    10: ("PyNumber_Subtract", "int_sub", "float_sub"),
    11: ("PyNumber_TrueDivide", None, "float_div"),
    12: ("PyNumber_Xor", "int_xor", None),
    13: ("PyNumber_InPlaceAdd", "int_add", "float_add"),
    14: ("PyNumber_InPlaceAnd", "int_and", None),
    15: ("PyNumber_InPlaceFloorDivide", "int_floordiv", None),
    16: ("PyNumber_InPlaceLshift", "int_lshift", None),
    17: ("PyNumber_InPlaceMatrixMultiply", None, None),
    18: ("PyNumber_InPlaceMultiply", "int_mul", "float_mul"),
    19: ("PyNumber_InPlaceRemainder", "int_mod", None),
    20: ("PyNumber_InPlaceOr", "int_or", None),
    21: ("ipow", None, "float_pow"),
    22: ("PyNumber_InPlaceRshift", "int_rshift", None),
    23: ("PyNumber_InPlaceSubtract", "int_sub", "float_sub"),
    24: ("PyNumber_InPlaceTrueDivide", None, "float_div"),
    25: ("PyNumber_InPlaceXor", "int_xor", None),
}
_CMP = ["lt", "le", "eq", "ne", "gt", "ge"]

# Exact builtin types whose arithmetic, comparisons and formatting (between
# two of them) run no Python code: generic ops on them are not call-outs.
_SCALARS = frozenset({int, float, bool, complex, str})
# Exact types whose truth value runs no Python code.
_PLAIN_TRUTH = _SCALARS | {bytes, list, tuple, dict, set, frozenset, range, type(None)}
# Exact containers whose iter() and [int/str/float] run no Python code.
_PLAIN_CONTAINERS = frozenset({list, tuple, str, bytes, range, dict, set, frozenset})
_PLAIN_KEYS = frozenset({int, bool, float, str})
# The Python type of an unboxed value.
_UNBOXED_PYTYPES: dict[Type, type] = {Type.INT: int, Type.FLOAT: float, Type.BOOL: bool}
_PYCMP = [operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge]


@dataclass(slots=True)
class SV:
    """An abstract value-stack entry."""

    ref: Ref
    owned: bool = False
    # Frame slot a borrowed reference comes from (to protect it on overwrite).
    slot: int | None = None
    # Its snapshot entry, made once (an SV is never changed, only replaced).
    entry: SnapEntry | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class _Callee:
    """An inlined call's frame: it has no interpreter frame, all its locals
    are values of the trace (owned or not, like stack entries)."""

    plan: InlineCall
    func: Const
    info: CodeInfo
    argc: int  # the oparg of the CALL that made it
    locals: dict[int, SV]
    # Snapshot entries of `locals`, shared by snapshots until a store.
    snap_locals: dict[int, SnapEntry] | None = None


@dataclass(slots=True)
class _Suspended:
    """A frame waiting for the inlined call it made (None: the trace's own)."""

    callee: _Callee | None
    stack: list[SV]  # below the CALL's inputs
    pc: int  # the CALL
    base: int
    info: CodeInfo


_FUNC_CODE = LAYOUT["PyFunctionObject.func_code"]
_FUNC_DEFAULTS = LAYOUT["PyFunctionObject.func_defaults"]
_IM_FUNC = LAYOUT["PyMethodObject.im_func"]
_IM_SELF = LAYOUT["PyMethodObject.im_self"]
_M_SELF = LAYOUT["PyCFunctionObject.m_self"]
_CELL_REF = LAYOUT["PyCellObject.ob_ref"]


class Translator:
    def __init__(self, rec: Recording, carried: dict[int, Type], name: str) -> None:
        self.rec = rec
        self.info = rec.info
        self.nlocalsplus = rec.info.nlocalsplus
        self.carried = carried
        self.trace = Trace(name)
        self.stack: list[SV] = []
        self.base = 0  # header stack depth: entries below are never popped
        self.virtual: dict[int, Ref] = {}
        self.known: dict[int, Value] = {}  # borrowed frame slot contents loaded this iteration
        self.ptype: dict[int, type] = {}  # Value id -> proven Python type
        self.pc = 0  # current instruction, code units
        self.record: Record | None = None
        # Code ran since the last instruction boundary: check for tools there.
        self.pending_check = False
        # Inlined calls: the innermost callee (None in the trace's own code) and
        # the frames waiting for their calls, the trace's own first.
        self.cur: _Callee | None = None
        self.suspended: list[_Suspended] = []
        # The snapshot of the suspended frames (they do not change while the
        # innermost callee runs), made once per change of `suspended`.
        self.suspended_snap: Snapshot | None = None
        # Checks that still hold (guard_global, guard_field_is and
        # guard_type_version on constants): key -> what was checked.  Dropped
        # at any op that could rebind a global or reassign a field.
        self.checked: dict[tuple[object, ...], object] = {}
        # Facts about immutable objects held in SSA values, true for the whole
        # trace: a builtin method object's checked descriptor and its self;
        # a tuple proven to hold exactly these classes (its items never change).
        self.cfunc_self: dict[int, tuple[object, Value]] = {}
        self.class_tuples: dict[int, tuple[type, ...]] = {}
        # Proven types of what frame slots hold (a store's release of the old
        # object runs no destructor if its type has none).
        self.frame_types: dict[int, type] = {}
        # Values read out of a list, tuple or dict that still holds them (no
        # op since could have changed one): releasing one frees nothing.
        self.contained: set[int] = set()
        # Functions the trace makes (MAKE_FUNCTION): never inlined.
        self.made_functions: set[int] = set()
        # Ops that dropped the checks so far (Trace.pure: none did).
        self.barriers = 0

    # ------------------------------------------------------------ emission

    def emit(self, opname: str, args: list[Ref], result: Type | None = None,
             snapshot: Snapshot | None = None, calls: bool | None = None,
             **attrs: object) -> Value | None:
        """Append an op.  ``calls``: whether it can run arbitrary Python code
        (default: the op is in CALLS_OUT; False where the operand types prove
        it cannot).  Such code may read and write this frame's locals, so the
        frame is brought up to date first and trusted again only after.
        Inside an inlined call only ops proven not to run Python code are
        allowed (the callee has no frame such code could see)."""
        if calls is None:
            calls = opname in CALLS_OUT and not (self.cur is None and self._runs_no_code(
                opname, args, attrs))
        if self.cur is not None and OPS[opname].escapes and opname not in ("decref", "store_cell"):
            self._check_frame_safe(opname, args, attrs, snapshot)
            calls = False
        if opname == "call" and not calls and _releases_nothing(args):
            opname = "call_nocode"
        if calls or (OPS[opname].escapes and not self._keeps_checks(opname, args, attrs)):
            self.checked.clear()
            self.contained.clear()
            self.barriers += 1
        elif opname == "call_nocode" and isinstance(args[0], Const) \
                and args[0].value in _REMOVING_METHODS:
            self.contained.clear()  # the item it takes out may be one of them
        if calls:
            snapshot = self.sync_frame(snapshot)
        if opname == "store_local":
            slot, stored = int(str(attrs["slot"])), self._reftype(args[0])
            if stored is None:
                self.frame_types.pop(slot, None)
            else:
                self.frame_types[slot] = stored
        value = self.trace.new_value(result) if result is not None else None
        if value is not None and (opname in ("list_getitem", "tuple_getitem") or (
                opname == "call_binary" and attrs.get("fn") == "PyObject_GetItem"
                and self._reftype(args[0]) in (list, tuple, dict))):
            self.contained.add(value.id)
        self.trace.ops.append(Op(opname, list(args), dict(attrs), value, snapshot))
        if calls:
            # The code may have rebound locals (f_locals is write-through since
            # PEP 667) or turned a tool on: reload slots; check at the next
            # instruction boundary.
            self.known.clear()
            self.frame_types.clear()
            self.pending_check = True
        return value

    def _runs_no_code(self, opname: str, args: list[Ref], attrs: dict[str, object]) -> bool:
        """In the trace's own frame: an op proven to run no Python code (a
        module's attribute is excluded: a missing one runs its __getattr__)."""
        types_ = [self._reftype(a) for a in args]
        if opname == "getattr" and types_[0] is types.ModuleType:
            return False
        return _frame_safe(opname, args, types_, attrs, self._str_keys_proven(opname, args))

    def _keeps_checks(self, opname: str, args: list[Ref], attrs: dict[str, object]) -> bool:
        """Whether an escaping op that runs no Python code also changes no
        dict or function (so the checks in ``self.checked`` still hold).  A
        release may run a destructor, unless the object's type has none."""
        if opname == "decref":
            ref = args[0]
            if isinstance(ref, Value) and ref.id in self.contained:
                return True
            if isinstance(ref, Value) and ref.id in self.class_tuples:
                # a tuple of static types: its dealloc runs nothing
                return not any(t.__flags__ & TPFLAGS_HEAPTYPE
                               for t in self.class_tuples[ref.id])
            return self._reftype(ref) in _LEAF
        if opname == "store_local":
            slot = int(str(attrs["slot"]))
            old = self.known.get(slot)
            if old is not None and old.id in self.contained:
                return True
            held = self._reftype(old) if old is not None else self.frame_types.get(slot)
            return held in _LEAF
        # A call that keeps them releases nothing: it is call_nocode, which
        # does not escape, by now.
        return opname in ("is_true", "len", "getattr", "call_unary", "call_binary",
                          "richcompare", "iter_next", "iter_next_or_null", "contains",
                          "build_const_key_map", "get_slice")

    def _guard_str_keys(self, d: Ref, r: Record, snap: Snapshot) -> None:
        """Before a lookup in exact dict `d` by a leaf key: when the recording
        saw a str-only key table, guard that it still is one, so the lookup is
        known to call no __eq__ (_frame_safe).  Else the lookup may run code."""
        if r.str_keys and self.check_once(_str_keys_key(d), True):
            self.emit("guard_dict_str_keys", [d], None, snap)

    def _str_keys_proven(self, opname: str, args: list[Ref]) -> bool:
        """Whether the dict an op looks keys up in has a guarded str-only key table."""
        if opname in ("call_binary", "setitem"):
            d = args[0]
        elif opname in ("call", "call_nocode", "contains") and len(args) >= 2:
            d = args[1]
        else:
            return False
        return _str_keys_key(d) in self.checked

    def check_once(self, key: tuple[object, ...], what: object) -> bool:
        """Whether a check keyed `key` that `what` holds must be emitted
        (it was not made since the last op that could undo it)."""
        if key in self.checked and self.checked[key] is what:
            return False
        self.checked[key] = what
        return True

    def emitv(self, opname: str, args: list[Ref], result: Type,
              snapshot: Snapshot | None = None, calls: bool | None = None,
              **attrs: object) -> Value:
        v = self.emit(opname, args, result, snapshot, calls, **attrs)
        assert v is not None
        return v

    def sync_frame(self, snapshot: Snapshot | None) -> Snapshot | None:
        """Before code runs that may look at the frame (locals(), f_locals, eval,
        debuggers): store the unboxed locals, and own the stack entries borrowed
        from frame slots (the code may rebind the slot and free the object) or
        constants held weakly (the code may rebind the global).
        Returns ``snapshot`` without the locals now in the frame: an exit after
        the code ran must not overwrite what it wrote there."""
        for slot, ref in sorted(self.virtual.items()):
            assert snapshot is not None  # ops that call out can raise
            obj, owned = self.as_obj(SV(ref), snapshot)
            if not owned:
                self.emit("incref", [obj])
            self.emit("store_local", [obj], None, slot=slot)
        self.virtual.clear()
        owned_now: list[int] = []
        for i, sv in enumerate(self.stack):
            if sv.owned or sv.ref.type is not Type.OBJ:
                continue
            if sv.slot is not None or (isinstance(sv.ref, Const) and _held_weakly(sv.ref.value)):
                # A constant the trace holds weakly (a guarded global's value) is
                # kept alive by the interpreter's stack across the code too.
                self.stack[i] = self.own(sv)
                owned_now.append(i)
        if snapshot is None:
            return None
        snap = Snapshot(snapshot.pc, list(snapshot.stack), {}, snapshot.entry)
        for i in owned_now:
            j = i - self.base
            if 0 <= j < len(snap.stack) and snap.stack[j].ref is self.stack[i].ref:
                snap.stack[j] = SnapEntry(self.stack[i].ref, True)
        return snap

    def step(self, record: Record) -> None:
        """Translate one recorded instruction."""
        self.record = record
        self.pc = record.instr.start // 2
        if self.pending_check:
            # Code that ran in the previous instruction may have turned on a
            # tool that watches this code: the interpreter runs the rest then.
            self.pending_check = False
            self.emit("check_instrumentation", [], None, self.snapshot())
        handler = getattr(self, "op_" + BYTECODES[record.instr.opname].handler)
        handler(record)

    def snapshot(self, pc: int | None = None, stack: list[SV] | None = None) -> Snapshot:
        entries = stack if stack is not None else self.stack
        here = self.pc if pc is None else pc
        if self.cur is None:
            return self._own_snapshot(here, entries, self.base)
        # Inside inlined calls: the trace's own frame at its CALL, then each
        # callee's frame (see Snapshot.frames).  Snapshots share the suspended
        # frames' lists and entries (passes replace them, never change them).
        outer = self.suspended_snap
        if outer is None:
            own = self.suspended[0]
            outer = self._own_snapshot(own.pc, own.stack, own.base)
            for s in self.suspended[1:]:
                assert s.callee is not None
                outer.frames.append(_frame_snap(s.callee, s.stack, s.pc))
            self.suspended_snap = outer
        snap = Snapshot(outer.pc, list(outer.stack), dict(outer.locals), False,
                        list(outer.frames))
        snap.frames.append(_frame_snap(self.cur, entries, here))
        return snap

    def _own_snapshot(self, pc: int, entries: list[SV], base: int) -> Snapshot:
        snap = Snapshot(pc, [sv.entry or _entry(sv) for sv in entries[base:]])
        for slot, ref in self.virtual.items():
            snap.locals[slot] = SnapEntry(ref, True)
        return snap

    def pytype(self, sv: SV) -> type | None:
        ref = sv.ref
        if isinstance(ref, Const):
            if ref.type is Type.INT:
                return int
            if ref.type is Type.FLOAT:
                return float
            if ref.type is Type.BOOL:
                return bool
            return type(ref.value) if ref.value is not NULL else None
        if ref.type is Type.INT:
            return int
        if ref.type is Type.FLOAT:
            return float
        if ref.type is Type.BOOL:
            return bool
        return self.ptype.get(ref.id)

    def guard_type(self, sv: SV, seen: type, snap: Snapshot) -> type:
        """Prove sv has the type seen while recording."""
        t = seen
        known = self.pytype(sv)
        if known is t:
            return t
        if known is not None or sv.ref.type is not Type.OBJ:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "type changed in trace")
        assert isinstance(sv.ref, Value)
        self.emit("guard_type", [sv.ref], None, snap, type=t)
        self.ptype[sv.ref.id] = t
        return t

    def as_int(self, sv: SV, snap: Snapshot) -> Ref:
        ref = sv.ref
        if ref.type is Type.INT:
            return ref
        if isinstance(ref, Const) and type(ref.value) is int:
            if INT64_MIN <= ref.value <= INT64_MAX:
                return Const(ref.value, Type.INT)
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "int constant too big")
        assert isinstance(ref, Value) and self.ptype.get(ref.id) is int
        return self.emitv("unbox_int", [ref], Type.INT, snap)

    def as_float(self, sv: SV, snap: Snapshot) -> Ref:
        ref = sv.ref
        if ref.type is Type.FLOAT:
            return ref
        if ref.type is Type.INT:
            return self.emitv("int_to_float", [ref], Type.FLOAT)
        if isinstance(ref, Const):
            if type(ref.value) is float:
                return Const(ref.value, Type.FLOAT)
            if type(ref.value) is int:
                return self.emitv("int_to_float", [self.as_int(sv, snap)], Type.FLOAT)
        assert isinstance(ref, Value)
        if self.ptype.get(ref.id) is int:
            return self.emitv("int_to_float", [self.as_int(sv, snap)], Type.FLOAT)
        return self.emitv("unbox_float", [ref], Type.FLOAT)

    def as_obj(self, sv: SV, snap: Snapshot) -> tuple[Ref, bool]:
        """An object reference for sv and whether it is a new (owned) one."""
        ref = sv.ref
        if ref.type is Type.OBJ:
            return ref, False
        if isinstance(ref, Const):
            if ref.type is Type.INT:
                return Const(int(ref.value), Type.OBJ), False
            if ref.type is Type.FLOAT:
                return Const(float(ref.value), Type.OBJ), False
            return Const(bool(ref.value), Type.OBJ), False
        name = {Type.INT: "box_int", Type.FLOAT: "box_float", Type.BOOL: "box_bool"}[ref.type]
        v = self.emitv(name, [ref], Type.OBJ, snap if name != "box_bool" else None)
        self.ptype[v.id] = {Type.INT: int, Type.FLOAT: float, Type.BOOL: bool}[ref.type]
        return v, True

    def _owned_obj(self, sv: SV, snap: Snapshot) -> tuple[Ref, bool]:
        """sv as an owned object reference (boxing or increfing as needed)."""
        obj, new = self.as_obj(sv, snap)
        if new or sv.owned:
            return obj, True
        if isinstance(obj, Const):
            return obj, False
        self.emit("incref", [obj])
        return obj, True

    def release(self, sv: SV) -> None:
        # Constants are owned only after sync_frame took a reference to them.
        if sv.owned and sv.ref.type is Type.OBJ and (
                isinstance(sv.ref, Value) or sv.ref.value is not NULL):
            self.emit("decref", [sv.ref])

    def release_obj(self, ref: Ref, owned: bool) -> None:
        if owned and isinstance(ref, Value):
            self.emit("decref", [ref])

    def on_objects(self, opname: str, svs: list[SV], snap: Snapshot,
                   calls: bool | None = None, result: Type = Type.OBJ,
                   **attrs: object) -> Value:
        """Op `opname` of the stack entries `svs` as objects (unboxed values
        boxed for it), after which they are all released: its result."""
        return self.on_objects_and_operands(opname, svs, snap, calls, result, **attrs)[0]

    def on_objects_and_operands(self, opname: str, svs: list[SV], snap: Snapshot,
                                calls: bool | None = None, result: Type = Type.OBJ,
                                **attrs: object) -> tuple[Value, list[Ref]]:
        """on_objects, and the op's operands (the objects it was given)."""
        temps = [self.as_obj(sv, snap) for sv in svs]
        operands = [o for o, _ in temps]
        res = self.emitv(opname, operands, result, snap, calls, **attrs)
        for o, new in temps:
            self.release_obj(o, new)
        for sv in svs:
            self.release(sv)
        return res, operands

    def push(self, ref: Ref, owned: bool = False, slot: int | None = None) -> None:
        self.stack.append(SV(ref, owned, slot))

    def pop(self) -> SV:
        if len(self.stack) <= self.base:
            raise RecordingAborted(AbortReason.STACK_SHAPE)
        return self.stack.pop()

    def own(self, sv: SV) -> SV:
        """Make sv an owned reference (incref a borrowed object)."""
        if sv.ref.type is Type.OBJ and not sv.owned:
            if isinstance(sv.ref, Const) and sv.ref.value is NULL:
                return sv
            self.emit("incref", [sv.ref])
            return SV(sv.ref, True, None)
        return sv

    # ------------------------------------------------------------ driver

    def run(self) -> Trace:
        rec = self.rec
        header_pc = rec.header // 2
        self.pc = header_pc
        # Header value stack: borrowed from the frame, never popped by the body.
        for i, st in enumerate(rec.entry_stack):
            if st is NullType:
                # a comprehension's saved unbound variable: the body never reads it
                v = self.emitv("load_local", [], Type.OBJ, slot=self.nlocalsplus + i)
                self.emit("guard_is", [v], None, Snapshot(header_pc, entry=True), obj=NULL)
                self.stack.append(SV(Const(NULL, Type.OBJ), False, None))
                continue
            v = self.emitv("load_local", [], Type.OBJ, slot=self.nlocalsplus + i)
            self.emit("guard_type", [v], None, Snapshot(header_pc, entry=True), type=st)
            self.ptype[v.id] = st
            self.stack.append(SV(v, False, None))
        self.base = len(self.stack)
        # Loop-carried locals: loaded, guarded and unboxed once, then kept in registers.
        initial: list[Ref] = []
        for slot, t in sorted(self.carried.items()):
            v = self.emitv("load_local", [], Type.OBJ, slot=slot)
            pyt = {Type.INT: int, Type.FLOAT: float, Type.BOOL: bool}[t]
            self.emit("guard_type", [v], None, Snapshot(header_pc, entry=True), type=pyt)
            if t is Type.INT:
                initial.append(self.emitv("unbox_int", [v], Type.INT,
                                          Snapshot(header_pc, entry=True)))
            elif t is Type.FLOAT:
                initial.append(self.emitv("unbox_float", [v], Type.FLOAT))
            else:
                initial.append(self.emitv("is_true", [v], Type.BOOL,
                                          Snapshot(header_pc, entry=True), calls=False))
        label = Op("label", [])
        for (slot, t), _init in zip(sorted(self.carried.items()), initial, strict=True):
            p = self.trace.new_value(t)
            label.params.append(p)
            self.virtual[slot] = p
        # The preamble jumps into the loop by passing the initial values.
        self.trace.ops.append(Op("_enter", list(initial)))
        self.trace.ops.append(label)
        self.emit("check_eval_breaker", [], None, self.entry_snapshot(header_pc))
        self.translate_records()
        raise AssertionError("recording did not end with a back-edge")

    def translate_records(self) -> None:
        for record in self.rec.records:
            if record.depth != len(self.suspended):
                raise RecordingAborted(AbortReason.BACKEND, "inlining depth mismatch")
            self.step(record)

    def entry_snapshot(self, pc: int) -> Snapshot:
        snap = self.snapshot(pc)
        snap.entry = True
        return snap

    def run_linear(self) -> Trace:
        """A trace that does not loop back to its start (a bridge, a function
        entry, a segment, or a loop's first part before an inner loop): it starts
        from the frame as it is at ``rec.header`` and ends by leaving at
        ``rec.end.pc`` with everything written back (the runtime may link that
        exit to another trace)."""
        rec = self.rec
        start = rec.header // 2
        self.pc = start
        # The whole value stack is taken over from the frame (owned), then typed.
        loaded: list[tuple[SV, type]] = []
        for i, st in enumerate(rec.entry_stack):
            if st is NullType:
                self.stack.append(SV(Const(NULL, Type.OBJ), True))
                continue
            v = self.emitv("load_local", [], Type.OBJ, slot=self.nlocalsplus + i)
            sv = SV(v, True)
            self.stack.append(sv)
            loaded.append((sv, st))
        self.emit("check_eval_breaker", [], None, self.entry_snapshot(start))
        for sv, st in loaded:
            assert isinstance(sv.ref, Value)
            self.emit("guard_type", [sv.ref], None, self.entry_snapshot(start), type=st)
            self.ptype[sv.ref.id] = st
        self.translate_records()
        if self.cur is not None:
            raise RecordingAborted(AbortReason.BACKEND, "trace ends inside an inlined call")
        end = rec.end
        assert end is not None
        self.pc = end.pc // 2
        # Run to its return, a function trace that dropped no check ran no
        # Python code and changed no dict (tj_call_py checks that clearing
        # its frame frees nothing).
        self.trace.pure = rec.kind == "function" and end.kind == "return" \
            and not self.barriers and not self.pending_check
        if self.pending_check:
            # The end may be linked to another trace: no tool may watch then.
            self.pending_check = False
            self.emit("check_instrumentation", [], None, self.snapshot())
        self.emit("exit", [], None, self.snapshot(end.pc // 2))
        return self.trace

    def close_loop(self) -> Trace:
        """At the back-edge: pass carried values to the label."""
        if len(self.stack) != self.base or self.cur is not None:
            raise RecordingAborted(AbortReason.STACK_SHAPE)
        args: list[Ref] = []
        mismatched = {}
        for slot, t in sorted(self.carried.items()):
            ref = self.virtual.get(slot)
            if ref is None or ref.type is not t:
                mismatched[slot] = t
            else:
                args.append(ref)
        if mismatched:
            raise CarriedMismatch(set(mismatched))
        # Virtual locals that are not carried are written back every iteration.
        for slot, ref in sorted(self.virtual.items()):
            if slot in self.carried:
                continue
            obj, owned = self.as_obj(SV(ref), self.snapshot(self.rec.header // 2))
            if not owned:
                self.emit("incref", [obj])
            self.emit("store_local", [obj], None, slot=slot)
        self.emit("jump", args)
        return self.trace

    def end_state_types(self) -> dict[int, Type]:
        return {slot: ref.type for slot, ref in self.virtual.items()}

    # ------------------------------------------------------------ handlers

    def op_nop(self, r: Record) -> None:
        pass

    def op_jump_backward(self, r: Record) -> None:
        end = self.rec.end
        if end is not None and end.kind == "loop" and r is self.rec.records[-1]:
            raise _LoopClosed
        # An inner loop the recording went round: the interpreter polls the
        # eval breaker at this back-edge (the exit resumes at it).
        self.emit("check_eval_breaker", [], None, self.snapshot())

    def _load(self, slot: int, check: bool = False) -> None:
        if self.cur is not None:
            sv = self.cur.locals.get(slot)
            if sv is None:
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND,
                                       "unbound local in an inlined call")
            owner = slot if isinstance(sv.ref, Value) and sv.ref.type is Type.OBJ else None
            self.push(sv.ref, False, owner)
            return
        if slot in self.virtual:
            self.push(self.virtual[slot])
            return
        v = self.known.get(slot)
        if v is None:
            v = self.emitv("load_local", [], Type.OBJ, slot=slot)
            if check:
                self.emit("guard_is_not", [v], None, self.snapshot(), obj=NULL)
            self.known[slot] = v
        self.push(v, False, slot)

    def op_load_fast(self, r: Record) -> None:
        self._load(r.instr.arg)

    def op_load_fast_check(self, r: Record) -> None:
        self._load(r.instr.arg, check=True)

    def op_load_fast_load_fast(self, r: Record) -> None:
        self._load(r.instr.arg >> 4)
        self._load(r.instr.arg & 15)

    def op_load_fast_and_clear(self, r: Record) -> None:
        """Move a local (or its NULL) to the stack and unbind it: a
        comprehension saving the outer value of its variable."""
        slot = r.instr.arg
        if self.cur is not None:
            sv = self.cur.locals.pop(slot, None)
            self.cur.snap_locals = None
            self.push(Const(NULL, Type.OBJ) if sv is None else sv.ref, sv is None or sv.owned)
            return
        snap = self.snapshot()
        self._own_aliases(slot)
        if slot in self.virtual:
            # an unboxed local: the frame's stale object goes, the value moves
            self.push(self.virtual.pop(slot))
            self.emit("store_local", [Const(NULL, Type.OBJ)], None, slot=slot)
            return
        v = self.known.pop(slot, None)
        if v is None:
            v = self.emitv("load_local", [], Type.OBJ, slot=slot)
        self.frame_types.pop(slot, None)
        if r.seen is NullType:
            self.emit("guard_is", [v], None, snap, obj=NULL)
            self.push(Const(NULL, Type.OBJ), True)
            return
        self.emit("guard_is_not", [v], None, snap, obj=NULL)
        self.emit("incref", [v])  # the stack's reference; the frame's is released
        self.emit("store_local", [Const(NULL, Type.OBJ)], None, slot=slot)
        self.push(v, True)

    def _own_aliases(self, slot: int) -> None:
        """Before frame slot `slot` is overwritten or cleared: the borrowed
        stack entries that alias it must survive it."""
        for i, other in enumerate(self.stack):
            if other.slot == slot and not other.owned:
                self.stack[i] = self.own(other)

    def _store(self, slot: int, sv: SV) -> None:
        self._own_aliases(slot)
        if self.cur is not None:
            if sv.ref.type is Type.OBJ and isinstance(sv.ref, Value):
                sv = self.own(sv)
                new = SV(sv.ref, True)
            else:
                new = SV(sv.ref, False)
            old = self.cur.locals.get(slot)
            self.cur.locals[slot] = new
            self.cur.snap_locals = None
            if old is not None:
                self.release(old)
            return
        if sv.ref.type is not Type.OBJ:
            held = self.known.pop(slot, None)
            if held is not None and slot not in self.virtual:
                # the frame still holds that object until the value is written
                t = self._reftype(held)
                if t is not None:
                    self.frame_types[slot] = t
            self.virtual[slot] = sv.ref
            return
        sv = self.own(sv)
        self.virtual.pop(slot, None)
        assert isinstance(sv.ref, Value) or isinstance(sv.ref, Const)
        self.emit("store_local", [sv.ref], None, slot=slot)
        if isinstance(sv.ref, Value):
            self.known[slot] = sv.ref
        else:
            self.known.pop(slot, None)

    def op_store_fast(self, r: Record) -> None:
        self._store(r.instr.arg, self.pop())

    def op_store_fast_load_fast(self, r: Record) -> None:
        self._store(r.instr.arg >> 4, self.pop())
        self._load(r.instr.arg & 15)

    def op_store_fast_store_fast(self, r: Record) -> None:
        self._store(r.instr.arg >> 4, self.pop())
        self._store(r.instr.arg & 15, self.pop())

    def _cell(self, slot: int) -> Ref:
        """The cell in frame slot `slot` (a cell or free variable): the frame
        holds it for its whole life, so a borrowed reference.  An inlined
        callee's free variables are its (guarded) function's closure cells."""
        if self.cur is not None:
            sv = self.cur.locals.get(slot)
            if sv is None or not isinstance(sv.ref, Const):
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND,
                                       "cell variable in an inlined call")
            return sv.ref
        v = self.known.get(slot)
        if v is None:
            v = self.known[slot] = self.emitv("load_local", [], Type.OBJ, slot=slot)
        return v

    def op_load_deref(self, r: Record) -> None:
        # The content is owned at once: code the trace calls may rebind the
        # cell and release it.  An empty cell leaves to the interpreter, which
        # raises NameError or UnboundLocalError.
        snap = self.snapshot()
        v = self.emitv("load_field", [self._cell(r.instr.arg)], Type.OBJ, offset=_CELL_REF)
        self.emit("guard_is_not", [v], None, snap, obj=NULL)
        self.emit("incref", [v])
        self.push(v, True)

    def op_store_deref(self, r: Record) -> None:
        snap = self.snapshot()
        sv = self.pop()
        cell = self._cell(r.instr.arg)
        self.emit("store_cell", [cell, self._stolen(sv, snap)])

    def _stolen(self, sv: SV, snap: Snapshot) -> Ref:
        """sv as a reference an op takes over (a constant gets one of its own)."""
        ref, owned = self._owned_obj(sv, snap)
        if not owned:
            self.emit("incref", [ref])
        return ref

    def _own_frame_only(self, what: str) -> None:
        """Inside an inlined call: refuse `what` (the callee is called instead)."""
        if self.cur is not None:
            raise RecordingAborted(AbortReason.INLINE_REFUSED,
                                   f"{what} in {self.cur.info.code.co_name}",
                                   callee=self.cur.info.code)

    def op_make_function(self, r: Record) -> None:
        self._own_frame_only("MAKE_FUNCTION")  # it takes the frame's globals
        snap = self.snapshot()
        code = self.pop()
        if not (isinstance(code.ref, Const) and type(code.ref.value) is types.CodeType):
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "MAKE_FUNCTION operand")
        func = self.emitv("make_function", [code.ref], Type.OBJ, snap)
        self.ptype[func.id] = types.FunctionType
        self.made_functions.add(func.id)
        self.push(func, True)

    def op_set_function_attribute(self, r: Record) -> None:
        snap = self.snapshot()
        func = self.pop()
        attr = self.pop()
        if r.instr.arg not in (1, 2, 4, 8) or not (
                func.owned and isinstance(func.ref, Value)
                and self.ptype.get(func.ref.id) is types.FunctionType):
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "SET_FUNCTION_ATTRIBUTE")
        self.emit("set_function_attribute", [func.ref, self._stolen(attr, snap)],
                  flag=r.instr.arg)
        self.push(func.ref, True)

    def op_load_const(self, r: Record) -> None:
        self.push(Const(r.instr.argval, Type.OBJ))

    def op_pop_top(self, r: Record) -> None:
        self.release(self.pop())

    def op_push_null(self, r: Record) -> None:
        self.push(Const(NULL, Type.OBJ))

    def op_copy(self, r: Record) -> None:
        sv = self.stack[-r.instr.arg]
        if len(self.stack) - r.instr.arg < self.base:
            raise RecordingAborted(AbortReason.STACK_SHAPE)
        if sv.ref.type is Type.OBJ and not isinstance(sv.ref, Const):
            self.emit("incref", [sv.ref])
            self.push(sv.ref, True)
        elif sv.ref.type is Type.OBJ:
            self.push(sv.ref)  # a constant, borrowed (even if the original is owned)
        else:
            self.push(sv.ref, sv.owned, sv.slot)

    def op_swap(self, r: Record) -> None:
        n = r.instr.arg
        if len(self.stack) - n < self.base:
            raise RecordingAborted(AbortReason.STACK_SHAPE)
        self.stack[-1], self.stack[-n] = self.stack[-n], self.stack[-1]

    def _generic_binary(self, fn: str, a: SV, b: SV, snap: Snapshot, calls: bool) -> None:
        if fn in ("pow", "ipow"):
            # PyNumber_Power takes a third (modulo) argument: call operator.pow.
            func = SV(Const(getattr(operator, fn), Type.OBJ), False)
            res = self.on_objects("call", [func, a, b], snap, calls)
        else:
            res = self.on_objects("call_binary", [a, b], snap, calls, fn=fn)
        self.push(res, True)

    def op_binary_op(self, r: Record) -> None:
        snap = self.snapshot()
        b = self.pop()
        a = self.pop()
        ta = self.guard_type(a, r.inputs[0], snap)
        tb = self.guard_type(b, r.inputs[1], snap)
        fn, int_op, float_op = _BINOPS[r.instr.arg]
        if ta is int and tb is int and int_op is not None:
            res = self.emitv(int_op, [self.as_int(a, snap), self.as_int(b, snap)], Type.INT,
                             snap if int_op not in ("int_and", "int_or", "int_xor") else None)
            self.release(a)  # after the op: its exit hands a and b to the frame
            self.release(b)
            self.push(res)
            return
        if float_op is not None and {ta, tb} <= {int, float} and float in (ta, tb):
            fa, fb = self.as_float(a, snap), self.as_float(b, snap)
            res = self.emitv(float_op, [fa, fb], Type.FLOAT,
                             snap if float_op in ("float_div", "float_pow") else None)
            self.release(a)
            self.release(b)
            self.push(res)
            return
        self._generic_binary(fn, a, b, snap, not {ta, tb} <= _SCALARS)

    def op_compare_op(self, r: Record) -> None:
        snap = self.snapshot()
        b = self.pop()
        a = self.pop()
        ta = self.guard_type(a, r.inputs[0], snap)
        tb = self.guard_type(b, r.inputs[1], snap)
        cmp = r.instr.arg >> 5
        to_bool = bool(r.instr.arg & 16)
        if ta is int and tb is int:
            res = self.emitv(f"int_{_CMP[cmp]}", [self.as_int(a, snap), self.as_int(b, snap)],
                             Type.BOOL)
            self.release(a)
            self.release(b)
            self.push(res)
            return
        if {ta, tb} == {float, int} and _exact_float_const(a if ta is int else b):
            # an int constant a double holds exactly compares as that double
            ta = tb = float
        if ta is float and tb is float:
            res = self.emitv(f"float_{_CMP[cmp]}", [self.as_float(a, snap),
                                                   self.as_float(b, snap)], Type.BOOL)
            self.release(a)
            self.release(b)
            self.push(res)
            return
        ao, a_new = self.as_obj(a, snap)
        bo, b_new = self.as_obj(b, snap)
        plain = {ta, tb} <= _SCALARS  # and the result is a bool
        res = self.emitv("richcompare", [ao, bo], Type.OBJ, snap, not plain, op=cmp)
        if plain:
            self.ptype[res.id] = bool  # immortal: releasing it frees nothing
        self.release_obj(ao, a_new)
        self.release_obj(bo, b_new)
        self.release(a)
        self.release(b)
        if to_bool:
            after = self.snapshot(stack=self.stack + [SV(res, True)])
            flag = self.emitv("is_true", [res], Type.BOOL, after, not plain)
            self.emit("decref", [res])
            self.push(flag)
        else:
            self.push(res, True)

    def op_is_op(self, r: Record) -> None:
        b = self.pop()
        a = self.pop()
        invert = bool(r.instr.arg)
        same = bool(r.seen)
        if isinstance(b.ref, Const) and isinstance(a.ref, Value) and a.ref.type is Type.OBJ:
            target = b.ref.value
            probe = a
        elif isinstance(a.ref, Const) and isinstance(b.ref, Value) and b.ref.type is Type.OBJ:
            target = a.ref.value
            probe = b
        elif a.ref.type is Type.OBJ and b.ref.type is Type.OBJ:
            # two objects the trace cannot name: compare their addresses
            if isinstance(a.ref, Const) and isinstance(b.ref, Const):
                res: Ref = Const((a.ref.value is b.ref.value) != invert, Type.BOOL)
            else:
                res = self.emitv("obj_is", [a.ref, b.ref], Type.BOOL)
                if invert:
                    res = self.emitv("bool_not", [res], Type.BOOL)
            self.release(a)
            self.release(b)
            self.push(res)
            return
        else:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "'is' with an unboxed value")
        snap = self.snapshot(stack=self.stack + [a, b])
        assert isinstance(probe.ref, Value)
        self.emit("guard_is" if same else "guard_is_not", [probe.ref], None, snap, obj=target)
        self.release(a)
        self.release(b)
        self.push(Const(same != invert, Type.BOOL))

    def op_unary_negative(self, r: Record) -> None:
        snap = self.snapshot()
        a = self.pop()
        t = self.guard_type(a, r.inputs[0], snap)
        if t is int:
            self.push(self.emitv("int_neg", [self.as_int(a, snap)], Type.INT, snap))
            self.release(a)
        elif t is float:
            self.push(self.emitv("float_neg", [self.as_float(a, snap)], Type.FLOAT))
            self.release(a)
        else:
            ao, new = self.as_obj(a, snap)
            res = self.emitv("call_unary", [ao], Type.OBJ, snap, t not in _SCALARS,
                             fn="PyNumber_Negative")
            self.release_obj(ao, new)
            self.release(a)
            self.push(res, True)

    def op_unary_invert(self, r: Record) -> None:
        snap = self.snapshot()
        a = self.pop()
        t = self.guard_type(a, r.inputs[0], snap)
        if t is int:
            self.push(self.emitv("int_xor", [self.as_int(a, snap), Const(-1, Type.INT)],
                                 Type.INT))
            self.release(a)
        else:
            ao, new = self.as_obj(a, snap)
            res = self.emitv("call_unary", [ao], Type.OBJ, snap, t not in _SCALARS,
                             fn="PyNumber_Invert")
            self.release_obj(ao, new)
            self.release(a)
            self.push(res, True)

    def _truth(self, sv: SV, seen: type, snap: Snapshot) -> Ref:
        """The truth of sv as an unboxed flag; releases sv."""
        ref = sv.ref
        if ref.type is Type.BOOL:
            return ref
        if isinstance(ref, Const):
            if ref.type is not Type.OBJ or type(ref.value) in _IMMUTABLE_TRUTH:
                self.release(sv)
                return Const(bool(ref.value), Type.BOOL)
            # A guarded global such as a list: same object, not same contents
            # (found by the inlining work: `while pending:` never saw it fill).
            truth = self.emitv("is_true", [ref], Type.BOOL, snap)
            self.release(sv)
            return truth
        if ref.type is Type.INT:
            return self.emitv("int_ne", [ref, Const(0, Type.INT)], Type.BOOL)
        if ref.type is Type.FLOAT:
            return self.emitv("float_ne", [ref, Const(0.0, Type.FLOAT)], Type.BOOL)
        t = self.guard_type(sv, seen, snap)
        flag: Ref
        if t is int:
            flag = self.emitv("int_ne", [self.as_int(sv, snap), Const(0, Type.INT)], Type.BOOL)
        elif t is float:
            flag = self.emitv("float_ne", [self.as_float(sv, snap), Const(0.0, Type.FLOAT)],
                              Type.BOOL)
        elif t is type(None):
            flag = Const(False, Type.BOOL)
        else:
            flag = self.emitv("is_true", [ref], Type.BOOL, snap, t not in _PLAIN_TRUTH)
        self.release(sv)
        return flag

    def op_to_bool(self, r: Record) -> None:
        snap = self.snapshot()
        sv = self.pop()
        self.push(self._truth(sv, r.inputs[0], snap))

    def op_unary_not(self, r: Record) -> None:
        snap = self.snapshot()
        sv = self.pop()
        flag = self._truth(sv, r.inputs[0], snap)
        if isinstance(flag, Const):
            self.push(Const(not flag.value, Type.BOOL))
        else:
            self.push(self.emitv("bool_not", [flag], Type.BOOL))

    def _other_successor(self, r: Record) -> int:
        taken = r.next_offset
        fall, target = r.instr.next_offset, r.instr.jump_target
        assert target is not None
        return (target if taken == fall else fall) // 2

    def op_pop_jump_if(self, r: Record) -> None:
        sv = self.pop()
        taken = r.next_offset == r.instr.jump_target
        want_true = taken == (r.instr.opname == "POP_JUMP_IF_TRUE")
        snap = self.snapshot(pc=self._other_successor(r))
        flag = self._truth(sv, r.inputs[0], self.snapshot(stack=self.stack + [sv]))
        if isinstance(flag, Const):
            if bool(flag.value) != want_true:
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "constant branch")
            return
        self.emit("guard_true" if want_true else "guard_false", [flag], None, snap)

    def op_pop_jump_if_none(self, r: Record) -> None:
        sv = self.pop()
        taken = r.next_offset == r.instr.jump_target
        is_none = taken == (r.instr.opname == "POP_JUMP_IF_NONE")
        snap = self.snapshot(pc=self._other_successor(r))
        if isinstance(sv.ref, Const):
            if (sv.ref.value is None) != is_none:
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "constant branch")
            self.release(sv)
            return
        if sv.ref.type is not Type.OBJ:
            if is_none:
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "unboxed None")
            return
        # The pointer is only compared, so releasing first is safe.
        self.release(sv)
        self.emit("guard_is" if is_none else "guard_is_not", [sv.ref], None, snap, obj=None)

    def op_load_global(self, r: Record) -> None:
        snap = self.snapshot()
        name = str(r.instr.argval)
        if self.cur is not None:
            # An inlined callee's own globals (it has no frame to read them from).
            func = self.cur.plan.func
            if self.check_once(("global_in", id(func.__globals__),
                                id(getattr(func, "__builtins__", None)), name), r.seen):
                self.emit("guard_global_in", [], None, snap, func=func, name=name, obj=r.seen)
        elif name in self.info.varying_globals:
            key = ("varying_global", name)
            prior = self.checked.get(key)
            if isinstance(prior, Value):
                # Loaded since the last op that could rebind a global: the
                # same object, still held by the globals dict (borrowed).
                self.push(prior)
            else:
                v = self.emitv("load_global", [], Type.OBJ, snap, name=name)
                self.push(v, True)
                if _class_tuple(r.seen):
                    # Rebound to a new but equal tuple of classes each run
                    # (Tornado's _tt_string_types): check the items, so
                    # isinstance folds.
                    self._prove_class_tuple(self.stack[-1], r.seen, snap)
                self.checked[key] = v
            if r.instr.arg & 1:
                self.push(Const(NULL, Type.OBJ))
            return
        else:
            # Checked in the frame's own globals and builtins (no reference to the
            # dicts: a trace must not keep a dead module alive).
            if self.check_once(("global", name), r.seen):
                self.emit("guard_global", [], None, snap, name=name, obj=r.seen)
        self.push(Const(r.seen, Type.OBJ))
        if r.instr.arg & 1:
            self.push(Const(NULL, Type.OBJ))

    def _prove_class_tuple(self, sv: SV, seen: tuple[type, ...], snap: Snapshot) -> None:
        """Guard that sv is a tuple of exactly the classes in `seen`."""
        assert isinstance(sv.ref, Value)
        self.guard_type(sv, tuple, snap)
        n = self.emitv("ob_size", [sv.ref], Type.INT)
        same = self.emitv("int_eq", [n, Const(len(seen), Type.INT)], Type.BOOL)
        self.emit("guard_true", [same], None, snap)
        for i, cls in enumerate(seen):
            item = self.emitv("tuple_getitem_borrowed", [sv.ref, Const(i, Type.INT)],
                              Type.OBJ, snap)
            self.emit("guard_is", [item], None, snap, obj=cls)
        self.class_tuples[sv.ref.id] = seen

    def op_load_attr(self, r: Record) -> None:
        snap = self.snapshot()
        owner = self.pop()
        name = self.info.code.co_names[r.instr.arg >> 1]
        descr = _plain_method(r.inputs[0], name) if r.instr.arg & 1 else None
        if descr is not None:
            # A method of a builtin type, loaded for a call: push the descriptor
            # and the owner as self (what LOAD_ATTR_METHOD does), no bound method.
            self.guard_type(owner, r.inputs[0], snap)
            self.push(Const(descr, Type.OBJ))
            self.push(*self._owned_obj(owner, snap))
            return
        module = owner.ref.value if isinstance(owner.ref, Const) else None
        if type(module) is types.ModuleType and r.seen is not None:
            # A module attribute (html.escape): checked in the module's dict
            # like a global, then a constant (no getattr, no reference).
            if self.check_once(("module_attr", id(module), name), r.seen):
                self.emit("guard_module_attr", [], None, snap, module=module, name=name,
                          obj=r.seen)
            self.release(owner)
            self.push(Const(r.seen, Type.OBJ))
            if r.instr.arg & 1:
                self.push(Const(NULL, Type.OBJ))
            return
        if self.cur is not None:
            self.guard_type(owner, r.inputs[0], snap)
        oo, new = self.as_obj(owner, snap)
        res = self.emitv("getattr", [oo], Type.OBJ, snap, name=name)
        self.release_obj(oo, new)
        self.release(owner)
        self.push(res, True)
        if r.instr.arg & 1:
            self.push(Const(NULL, Type.OBJ))

    def op_store_attr(self, r: Record) -> None:
        snap = self.snapshot()
        owner = self.pop()
        value = self.pop()
        name = self.info.code.co_names[r.instr.arg]
        oo, onew = self.as_obj(owner, snap)
        vo, vnew = self.as_obj(value, snap)
        self.emit("setattr", [oo, vo], None, snap, name=name)
        for ref, new in ((oo, onew), (vo, vnew)):
            self.release_obj(ref, new)
        self.release(owner)
        self.release(value)

    def op_binary_subscr(self, r: Record) -> None:
        snap = self.snapshot()
        sub = self.pop()
        container = self.pop()
        tc = self.guard_type(container, r.inputs[0], snap)
        ts = self.guard_type(sub, r.inputs[1], snap)
        if tc in (list, tuple) and ts is int:
            op = "list_getitem" if tc is list else "tuple_getitem"
            assert isinstance(container.ref, Value) or isinstance(container.ref, Const)
            res = self.emitv(op, [container.ref, self.as_int(sub, snap)], Type.OBJ, snap)
            self.release(container)
            self.release(sub)
            self.push(res, True)
            return
        if tc is dict and ts in _LEAF:
            self._guard_str_keys(container.ref, r, snap)
        self._generic_binary("PyObject_GetItem", container, sub, snap,
                             tc not in _PLAIN_CONTAINERS or ts not in _PLAIN_KEYS)

    def op_store_subscr(self, r: Record) -> None:
        snap = self.snapshot()
        sub = self.pop()
        container = self.pop()
        value = self.pop()
        tc = self.guard_type(container, r.inputs[1], snap)
        ts = self.guard_type(sub, r.inputs[2], snap)
        if tc is list and ts is int and value.ref.type is Type.FLOAT:
            # An unboxed float: boxed by the store itself (or stored in place).
            idx = self.as_int(sub, snap)
            assert isinstance(container.ref, Value) or isinstance(container.ref, Const)
            self.emit("list_setitem_float", [container.ref, idx, value.ref], None, snap)
            self.release(container)
            self.release(sub)
            return
        if tc is list and ts is int:
            idx = self.as_int(sub, snap)
            vo, vnew = self.as_obj(value, snap)
            if not vnew and not value.owned:
                self.emit("incref", [vo])
            # The value is owned from here; an exit hands that reference to the frame.
            held = SV(vo, True)
            snap2 = self.snapshot(stack=self.stack + [held, container, sub])
            self.emit("list_setitem", [container.ref, idx, vo], None, snap2)
            if vnew:
                pass  # the boxed value was stolen by the list
            elif value.owned:
                pass  # our reference moved into the list
            self.release(container)
            self.release(sub)
            return
        if tc is dict and ts in _LEAF:
            self._guard_str_keys(container.ref, r, snap)
        vo, vnew = self.as_obj(value, snap)
        ko, knew = self.as_obj(sub, snap)
        co, cnew = self.as_obj(container, snap)
        self.emit("setitem", [co, ko, vo], None, snap)
        for ref, new in ((vo, vnew), (ko, knew), (co, cnew)):
            self.release_obj(ref, new)
        self.release(value)
        self.release(container)
        self.release(sub)

    def op_call(self, r: Record) -> None:
        if isinstance(r.seen, InlineCall):
            self._inline_call(r, r.seen)
            return
        snap = self.snapshot()
        argc = r.instr.arg
        if self.cur is not None:
            # Inside an inlined call: the callee's checks need the types.
            for k, sv in enumerate(self.stack[len(self.stack) - argc - 1:]):
                if isinstance(sv.ref, Value) and sv.ref.type is Type.OBJ:
                    self.guard_type(sv, r.inputs[k + 1], snap)
        args = [self.pop() for _ in range(argc)][::-1]
        self_or_null = self.pop()
        callable_ = self.pop()
        if isinstance(callable_.ref, Const) and callable_.ref.value is isinstance \
                and isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL \
                and argc == 2:
            # isinstance(x, C) with type(x) a builtin type proven by a guard and
            # C a class (or tuple of classes) of metaclass type: a constant.
            cls: Ref = args[1].ref
            if isinstance(cls, Value) and cls.id in self.class_tuples:
                cls = Const(self.class_tuples[cls.id], Type.OBJ)  # the same items
            t = self.pytype(args[0])
            if t is None and args[0].ref.type is Type.OBJ \
                    and _isinstance_safe(r.inputs[2], cls):
                t = self.guard_type(args[0], r.inputs[2], snap)
            if t is not None and _isinstance_safe(t, cls):
                assert isinstance(cls, Const)
                self.release(args[0])
                self.release(args[1])
                self.push(Const(issubclass(t, cls.value), Type.OBJ))
                return
        if isinstance(callable_.ref, Const) and callable_.ref.value is builtins.len \
                and isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL \
                and argc == 1:
            seen = r.inputs[2]  # inputs: callable, self_or_null, arg
            if seen in (list, tuple) and args[0].ref.type is Type.OBJ:
                self.guard_type(args[0], seen, snap)
            ao, new = self.as_obj(args[0], snap)
            if self.pytype(args[0]) in (list, tuple):
                n = self.emitv("ob_size", [ao], Type.INT)
            else:
                n = self.emitv("len", [ao], Type.INT, snap)
            self.release_obj(ao, new)
            self.release(args[0])
            self.release(callable_)
            self.push(n)
            return
        bound = None
        descr = r.seen if type(r.seen) is METHOD_DESCRIPTOR else None
        if descr is not None and isinstance(callable_.ref, Value) \
                and callable_.ref.type is Type.OBJ \
                and isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL:
            # A builtin method object ([].append): call its descriptor with its
            # self, so the call can be proven to run no code.  The method
            # object keeps self alive until released after the call.
            known = self.cfunc_self.get(callable_.ref.id)
            if known is not None and known[0] is descr:
                selfv = known[1]  # m_ml and m_self never change
            else:
                self.emit("guard_cfunc", [callable_.ref], None, snap, method=descr)
                selfv = self.emitv("load_field", [callable_.ref], Type.OBJ, offset=_M_SELF)
                self.cfunc_self[callable_.ref.id] = (descr, selfv)
            bound = callable_
            callable_ = SV(Const(descr, Type.OBJ), False)
            self_or_null = SV(selfv, False)
            self.guard_type(self_or_null, getattr(descr, "__objclass__", object), snap)
        fn = callable_.ref.value if isinstance(callable_.ref, Const) else None
        if type(fn) is METHOD_DESCRIPTOR and fn in _DICT_LOOKUPS and args \
                and self._reftype(self_or_null.ref) is dict and self._reftype(args[0].ref) in _LEAF:
            self._guard_str_keys(self_or_null.ref, r, snap)  # before any boxing
        if fn is sys.getrefcount:
            # The count is seen: pass each argument with a reference of its own,
            # as the interpreter's value stack holds one.
            args = [self.own(a) for a in args]
        if fn is list.append and len(args) == 1 and self._reftype(self_or_null.ref) is list:
            # An exact list's append (CPython's CALL_LIST_APPEND): returns None.
            self._list_append(self_or_null.ref, args[0], snap)
            self.release(callable_)
            self.release(self_or_null)
            if bound is not None:
                self.release(bound)
            self.push(Const(None, Type.OBJ))
            return
        pure = self.cur is None and type(fn) is types.FunctionType \
            and isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL \
            and self.rec.pure_call(fn.__code__)
        kept = (dict(self.checked), set(self.contained), dict(self.frame_types)) if pure \
            else None
        barriers = self.barriers
        res, operands = self._call_out("call", callable_, self_or_null, args, snap)
        if kept is not None and self.barriers == barriers + 1:
            # The callee's pure trace ran, and only it, or the trace leaves
            # right after the call: the checks made before it still hold (the
            # releases of the arguments after it dropped none).
            self.push(res, True)
            self.emit("guard_pure_call", [], None, self.snapshot(r.instr.next_offset // 2))
            self.pop()
            self.checked, self.contained, self.frame_types = kept
            self.pending_check = False
        rtype = _result_type(operands, [self._reftype(o) for o in operands])
        if rtype is not None:
            self.ptype[res.id] = rtype
        if bound is not None:
            self.release(bound)
        self.push(res, True)

    def _call_out(self, opname: str, callable_: SV, self_or_null: SV, args: list[SV],
                  snap: Snapshot, **attrs: object) -> tuple[Value, list[Ref]]:
        """A call op of the callable, self (unless NULL) and the arguments as
        objects, all released after it; the result and the operands."""
        everything = [callable_]
        if not (isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL):
            everything.append(self_or_null)
        everything.extend(args)
        return self.on_objects_and_operands(opname, everything, snap, None, Type.OBJ, **attrs)

    def op_call_kw(self, r: Record) -> None:
        """A keyword call: a plain vectorcall with the constant tuple of
        keyword names (the compiler's LOAD_CONST).  Keyword arguments can
        reach code no type check sees (a key= function), so it always counts
        as running code (CALLS_OUT); inside an inlined call the callee is
        called instead."""
        self._own_frame_only("keyword call")
        snap = self.snapshot()
        kwnames = self.pop()
        if not isinstance(kwnames.ref, Const) or type(kwnames.ref.value) is not tuple:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "keyword names")
        argc = r.instr.arg
        args = [self.pop() for _ in range(argc)][::-1]
        self_or_null = self.pop()
        callable_ = self.pop()
        res, _ = self._call_out("call_kw", callable_, self_or_null, args, snap,
                                kwnames=kwnames.ref.value)
        self.push(res, True)

    # ------------------------------------------------------------ inlining

    def _inline_call(self, r: Record, plan: InlineCall) -> None:
        """Continue in the callee: guard its identity, code and defaults; its
        arguments become its locals (owned, as in the interpreter's frame)."""
        snap = self.snapshot()
        argc = r.instr.arg
        args = [self.pop() for _ in range(argc)][::-1]
        self_or_null = self.pop()
        callable_ = self.pop()
        func = plan.func
        code = plan.code
        fconst = Const(func, Type.OBJ)
        is_null = isinstance(self_or_null.ref, Const) and self_or_null.ref.value is NULL
        if is_null and argc + 1 == plan.nargs:
            # A bound method object: on the stack (plan.method), or made by the
            # trace's generic LOAD_ATTR where the interpreter pushed the
            # function and self.
            if not isinstance(callable_.ref, Value):
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "bound method call")
            self.guard_type(callable_, types.MethodType, snap)
            fv = self.emitv("load_field", [callable_.ref], Type.OBJ, offset=_IM_FUNC)
            self.emit("guard_is", [fv], None, snap, obj=func)
            selfv = self.emitv("load_field", [callable_.ref], Type.OBJ, offset=_IM_SELF)
            params = [SV(selfv, False)] + args
        else:
            if isinstance(callable_.ref, Const):
                if callable_.ref.value is not func:
                    raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "callee changed")
            elif callable_.ref.id in self.made_functions:
                # A function this trace makes (MAKE_FUNCTION) is a new object each
                # run: a guard on the recorded one would fail, and the trace would
                # hold an object that dies.  Called instead.
                raise RecordingAborted(AbortReason.INLINE_REFUSED,
                                       f"{code.co_name} made by the trace", callee=code)
            elif callable_.ref.type is Type.OBJ:
                self.emit("guard_is", [callable_.ref], None, snap, obj=func)
                self.ptype[callable_.ref.id] = types.FunctionType
            else:
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "unboxed callee")
            params = ([] if is_null else [self_or_null]) + args
        if len(params) != plan.nargs:
            raise RecordingAborted(AbortReason.BACKEND, "inlined call arity")
        # `__code__` and `__defaults__` can be reassigned: guard them too.
        if self.check_once(("field", id(func), _FUNC_CODE), code):
            self.emit("guard_field_is", [fconst], None, snap, offset=_FUNC_CODE, obj=code)
        defaults = func.__defaults__ or ()
        if plan.nargs < code.co_argcount and self.check_once(
                ("field", id(func), _FUNC_DEFAULTS), func.__defaults__):
            self.emit("guard_field_is", [fconst], None, snap, offset=_FUNC_DEFAULTS,
                      obj=func.__defaults__)
        locals_: dict[int, SV] = {}
        for i, sv in enumerate(params):
            if sv.ref.type is Type.OBJ and isinstance(sv.ref, Value) and not sv.owned:
                self.emit("incref", [sv.ref])
                locals_[i] = SV(sv.ref, True)
            else:
                locals_[i] = SV(sv.ref, sv.owned and sv.ref.type is Type.OBJ)
        first_default = code.co_argcount - len(defaults)
        for i in range(plan.nargs, code.co_argcount):
            locals_[i] = SV(Const(defaults[i - first_default], Type.OBJ), False)
        # Free variables: what COPY_FREE_VARS puts in the frame (the function's
        # closure tuple cannot be reassigned; the callee has no cell variables).
        for i, cell in enumerate(func.__closure__ or ()):
            locals_[len(code.co_varnames) + i] = SV(Const(cell, Type.OBJ), False)
        # The callable's reference goes with the frame in the interpreter; the
        # function stays alive as a constant of the trace.
        self.release(callable_)
        self.suspended.append(_Suspended(self.cur, self.stack, self.pc, self.base, self.info))
        self.suspended_snap = None
        self.cur = _Callee(plan, fconst, code_info(code), argc, locals_)
        self.stack = []
        self.base = 0
        self.info = self.cur.info
        self.trace.inlined_calls += 1
        if not any(c is code for c in self.trace.inlined_codes):
            self.trace.inlined_codes.append(code)

    def op_return_value(self, r: Record) -> None:
        if self.cur is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, "RETURN_VALUE")
        self._return(self.pop())

    def op_return_const(self, r: Record) -> None:
        if self.cur is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, "RETURN_CONST")
        self._return(SV(Const(self.info.code.co_consts[r.instr.arg], Type.OBJ), False))

    def _return(self, sv: SV) -> None:
        """Back in the caller: the result (owned) replaces the CALL's inputs;
        the callee's locals are released as its frame's would be."""
        callee = self.cur
        assert callee is not None
        if self.stack:
            raise RecordingAborted(AbortReason.STACK_SHAPE, "return with a value stack")
        if sv.ref.type is Type.OBJ and isinstance(sv.ref, Value) and not sv.owned:
            self.emit("incref", [sv.ref])
            sv = SV(sv.ref, True)
        elif sv.ref.type is not Type.OBJ or isinstance(sv.ref, Const):
            sv = SV(sv.ref, False)
        s = self.suspended.pop()
        self.suspended_snap = None
        self.cur, self.stack, self.pc, self.base, self.info = (
            s.callee, s.stack, s.pc, s.base, s.info)
        for _slot, local in sorted(callee.locals.items()):
            self.release(local)
        self.push(sv.ref, sv.owned)

    def _check_frame_safe(self, opname: str, args: list[Ref], attrs: dict[str, object],
                          snap: Snapshot | None) -> None:
        """Inside an inlined call, an op that could run Python code would show
        that code a frame stack without the callee's frame (sys._getframe,
        warnings, logging): only ops proven not to are allowed; otherwise the
        callee is called instead of inlined next time."""
        types_ = [self._reftype(a) for a in args]
        if _frame_safe(opname, args, types_, attrs, self._str_keys_proven(opname, args)):
            return
        if opname in ("getattr", "setattr") and snap is not None and types_[0] is not None \
                and _plain_attr(types_[0], str(attrs["name"]), opname == "setattr"):
            # An instance attribute or a method of a class without Python-level
            # attribute hooks: exact as long as the class does not change.
            from tracejit.runtime.resume import type_version

            version = type_version(types_[0])
            if version:
                if self.check_once(("type_version", id(types_[0])), version):
                    self.emit("guard_type_version", [], None, snap, type=types_[0],
                              version=version)
                return
        assert self.cur is not None
        shown = ", ".join(t.__name__ if t is not None else "?" for t in types_)
        raise RecordingAborted(AbortReason.INLINE_REFUSED,
                               f"{opname}({shown}) in {self.cur.info.code.co_name}",
                               callee=self.cur.info.code)

    def _reftype(self, ref: Ref) -> type | None:
        if isinstance(ref, Const):
            return None if ref.value is NULL else type(ref.value)
        t = _UNBOXED_PYTYPES.get(ref.type)
        return t if t is not None else self.ptype.get(ref.id)

    def op_unpack_sequence(self, r: Record) -> None:
        snap = self.snapshot()
        seq = self.pop()
        t = self.guard_type(seq, r.inputs[0], snap)
        if t not in (tuple, list):
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND,
                                   f"UNPACK_SEQUENCE of {t.__name__}")
        n = r.instr.arg
        length = self.emitv("ob_size", [seq.ref], Type.INT)
        same = self.emitv("int_eq", [length, Const(n, Type.INT)], Type.BOOL)
        self.emit("guard_true", [same], None, snap)
        getitem = "tuple_getitem" if t is tuple else "list_getitem"
        # No code runs between the length check and the loads, so they cannot fail.
        items = [self.emitv(getitem, [seq.ref, Const(i, Type.INT)], Type.OBJ, snap)
                 for i in range(n)]
        self.release(seq)
        for item in reversed(items):
            self.push(item, True)

    def op_get_iter(self, r: Record) -> None:
        snap = self.snapshot()
        sv = self.pop()
        # iter() of a plain container runs no Python code (worth a guard).
        t = self.guard_type(sv, r.inputs[0], snap) \
            if r.inputs[0] in _PLAIN_CONTAINERS or self.cur is not None else None
        obj, new = self.as_obj(sv, snap)
        it = self.emitv("call_unary", [obj], Type.OBJ, snap, t not in _PLAIN_CONTAINERS,
                        fn="PyObject_GetIter")
        self.release_obj(obj, new)
        self.release(sv)
        self.push(it, True)

    def op_build_list(self, r: Record) -> None:
        if r.instr.arg == 0:
            self._new_empty(list)
            return
        self._build("build_list", r.instr.arg, list)

    def _new_empty(self, t: type) -> None:
        """Push t() of the type object itself (not a name lookup): a new
        empty list or dict."""
        res = self.emitv("call", [Const(t, Type.OBJ)], Type.OBJ, self.snapshot(), calls=False)
        self.ptype[res.id] = t
        self.push(res, True)

    def op_list_extend(self, r: Record) -> None:
        """LIST_EXTEND (a list display of constants, or [*a]) by an exact list
        or tuple: the interpreter's _PyList_Extend, no code runs."""
        snap = self.snapshot()
        seq = self.pop()
        lst = self.stack[-r.instr.arg]
        ts = self.guard_type(seq, r.inputs[-1], snap) if r.inputs[-1] in (list, tuple) \
            else None
        if ts is None or self.guard_type(lst, r.inputs[0], snap) is not list:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND,
                                   "LIST_EXTEND of other than a list or tuple")
        assert isinstance(lst.ref, Value) or isinstance(lst.ref, Const)
        self.emit("list_extend", [lst.ref, seq.ref], None, snap)
        self.release(seq)

    def op_binary_slice(self, r: Record) -> None:
        snap = self.snapshot()
        stop = self.pop()
        start = self.pop()
        container = self.pop()
        tc = self.guard_type(container, r.inputs[0], snap)
        if tc in _CONTAINERS:
            for sv, seen in ((start, r.inputs[1]), (stop, r.inputs[2])):
                if seen is int or seen is type(None):
                    self.guard_type(sv, seen, snap)
        by_ints = all(self.pytype(sv) in (int, type(None)) for sv in (start, stop))
        res = self.on_objects("get_slice", [container, start, stop], snap)
        if tc in (list, tuple, str, bytes) and by_ints:
            self.ptype[res.id] = tc  # a slice of an exact sequence is one
        self.push(res, True)

    def op_build_tuple(self, r: Record) -> None:
        if r.instr.arg == 0:
            self.push(Const((), Type.OBJ))  # the empty tuple is a singleton
            return
        self._build("build_tuple", r.instr.arg, tuple)

    def _build(self, opname: str, n: int, t: type) -> None:
        """A new container of type t of the top n stack entries."""
        snap = self.snapshot()
        items = [self.pop() for _ in range(n)][::-1]
        res = self.on_objects(opname, items, snap)
        self.ptype[res.id] = t
        self.push(res, True)

    def op_build_map(self, r: Record) -> None:
        if r.instr.arg != 0:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "BUILD_MAP with items")
        self._new_empty(dict)

    def op_build_const_key_map(self, r: Record) -> None:
        n = r.instr.arg
        snap = self.snapshot()
        keys = self.pop()
        if not isinstance(keys.ref, Const) or type(keys.ref.value) is not tuple \
                or len(keys.ref.value) != n:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "BUILD_CONST_KEY_MAP keys")
        values = [self.pop() for _ in range(n)][::-1]
        res = self.on_objects("build_const_key_map", values, snap, keys=keys.ref.value)
        self.ptype[res.id] = dict
        self.push(res, True)

    def _formatted(self, fn: str, sv: SV, seen: type, snap: Snapshot,
                   spec: SV | None = None) -> None:
        """Push fn(sv) or fn(sv, spec) for an f-string's conversion or format,
        typed str when the value's type is a builtin leaf (its __format__,
        __str__ and __repr__ run no Python code and return exact strs)."""
        t = self.guard_type(sv, seen, snap) if seen in _LEAF else self.pytype(sv)
        if spec is None:
            res = self.on_objects("call_unary", [sv], snap, fn=fn)
        else:
            self.guard_type(spec, str, snap)
            res = self.on_objects("call_binary", [sv, spec], snap, fn=fn)
        if t in _LEAF:
            self.ptype[res.id] = str
        self.push(res, True)

    def op_format_simple(self, r: Record) -> None:
        sv = self.stack[-1]
        if r.inputs[0] is str and sv.ref.type is Type.OBJ:
            if self.pytype(sv) is not str:
                self.guard_type(sv, str, self.snapshot())
            return  # an exact str formats as itself
        snap = self.snapshot()
        self.pop()
        empty = SV(Const("", Type.OBJ), False)
        self._formatted("PyObject_Format", sv, r.inputs[0], snap, empty)

    def op_format_with_spec(self, r: Record) -> None:
        snap = self.snapshot()
        spec = self.pop()
        sv = self.pop()
        self._formatted("PyObject_Format", sv, r.inputs[0], snap, spec)

    def op_convert_value(self, r: Record) -> None:
        fn = {1: "PyObject_Str", 2: "PyObject_Repr", 3: "PyObject_ASCII"}.get(r.instr.arg)
        if fn is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "CONVERT_VALUE oparg")
        snap = self.snapshot()
        self._formatted(fn, self.pop(), r.inputs[0], snap)

    def op_build_string(self, r: Record) -> None:
        n = r.instr.arg
        snap = self.snapshot()
        pieces = [self.pop() for _ in range(n)][::-1]
        for sv, seen in zip(pieces, r.inputs, strict=True):
            if seen is not str:  # the compiler makes only strs: never seen
                raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "BUILD_STRING piece")
            self.guard_type(sv, str, snap)
        res = self.on_objects("build_string", pieces, snap)
        self.ptype[res.id] = str
        self.push(res, True)

    def op_contains_op(self, r: Record) -> None:
        snap = self.snapshot()
        b = self.pop()
        a = self.pop()
        ta = self.guard_type(a, r.inputs[0], snap)
        tb = self.guard_type(b, r.inputs[1], snap)
        if tb is dict and ta in _LEAF:
            self._guard_str_keys(b.ref, r, snap)  # before any boxing
        self.push(self.on_objects("contains", [a, b], snap, result=Type.BOOL,
                                  invert=bool(r.instr.arg)))

    def op_list_append(self, r: Record) -> None:
        """LIST_APPEND (a list comprehension): append to the list oparg - 1
        entries below the item, as CPython's _PyList_AppendTakeRef."""
        snap = self.snapshot()
        item = self.pop()
        lst = self.stack[-r.instr.arg]
        if self.guard_type(lst, r.inputs[0], snap) is not list:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPERAND, "LIST_APPEND to a non-list")
        self._list_append(lst.ref, item, snap)

    def _list_append(self, lst: Ref, item: SV, snap: Snapshot) -> None:
        """Append `item` (released after) to `lst`, an exact list."""
        obj, new = self.as_obj(item, snap)
        self.emit("list_append", [lst, obj], None, snap)
        self.release_obj(obj, new)
        self.release(item)

    def op_for_iter(self, r: Record) -> None:
        it = self.stack[-1]
        assert r.instr.jump_target is not None
        exhausted = r.next_offset != r.instr.next_offset
        snap = self.snapshot()
        t = self.guard_type(it, r.inputs[0], snap)
        assert isinstance(it.ref, Value)
        if exhausted:
            # The iterator ended while recording (a bridge from a loop's exit):
            # prove it is exhausted (tp_iternext returns NULL, cleaning up as the
            # interpreter's FOR_ITER does), then drop it.
            nxt = self.emitv("iter_next_or_null", [it.ref], Type.OBJ, snap)
            body = self.snapshot(pc=r.instr.next_offset // 2,
                                 stack=self.stack + [SV(nxt, True)])
            self.emit("guard_is", [nxt], None, body, obj=NULL)
            self.release(self.pop())
            return
        if t is RANGE_ITER:
            self.push(self.emitv("range_next", [it.ref], Type.INT, snap))
        elif t is LIST_ITER:
            self.push(self.emitv("list_next", [it.ref], Type.OBJ, snap), True)
        elif t is TUPLE_ITER:
            self.push(self.emitv("tuple_next", [it.ref], Type.OBJ, snap), True)
        else:
            # Any other iterator: one tp_iternext; at the end leave at END_FOR with
            # a placeholder next to the iterator (END_FOR and POP_TOP drop both),
            # so the interpreter never calls tp_iternext a second time.
            nxt = self.emitv("iter_next_or_null", [it.ref], Type.OBJ, snap)
            done = self.snapshot(pc=r.instr.jump_target // 2,
                                 stack=self.stack + [SV(Const(None, Type.OBJ), False)])
            self.emit("guard_is_not", [nxt], None, done, obj=NULL)
            self.push(nxt, True)


def _entry(sv: SV) -> SnapEntry:
    e = sv.entry
    if e is None:
        e = sv.entry = SnapEntry(sv.ref, sv.owned or sv.ref.type is not Type.OBJ)
    return e


def _frame_snap(callee: _Callee, stack: list[SV], pc: int) -> FrameSnap:
    locals_ = callee.snap_locals
    if locals_ is None:
        locals_ = callee.snap_locals = {slot: sv.entry or _entry(sv)
                                        for slot, sv in callee.locals.items()}
    return FrameSnap(callee.func, callee.info.code, pc, callee.argc,
                     [sv.entry or _entry(sv) for sv in stack], locals_)


# ---------------------------------------------------------------- frame safety

# Types whose operations (arithmetic, comparison, hashing, str(), attribute
# lookup) never run Python code.
_LEAF: frozenset[type] = frozenset({int, float, complex, str, bytes, bool, type(None)})
# Containers whose length, truth, iteration and indexing never run Python code.
_CONTAINERS: frozenset[type] = frozenset({list, tuple, dict, set, frozenset, str, bytes, range})
_SAFE_ITERATORS: frozenset[type] = frozenset({
    type(iter({})), type(iter({}.values())), type(iter({}.items())), type(iter("")),
    type(iter("\u0100")), type(iter(b"")), type(iter(set())), type(reversed([])),
    RANGE_ITER, LIST_ITER, TUPLE_ITER,
})
# Builtins that run no Python code when every argument is a leaf.
_LEAF_BUILTINS: frozenset[object] = frozenset({
    abs, chr, ord, hex, oct, bin, divmod, hash, str, int, float, bool, repr, min, max,
    operator.pow, operator.ipow, round,
})
# Builtin methods that release no reference they are given or hold.
_ANY_ARG_METHODS: frozenset[object] = frozenset({list.append, list.insert, list.pop,
                                                 str.join, bytes.join})


def _frame_safe(opname: str, args: list[Ref], types_: list[type | None],
                attrs: dict[str, object], str_keys: bool = False) -> bool:
    """Whether an escaping op with operands of these (proven) types can run no
    Python code (so no code can observe that an inlined callee has no frame).
    ``str_keys``: the dict the op looks keys up in has a guarded str-only key
    table (a general one may hold a key whose __eq__ is Python code)."""
    leaf = all(t in _LEAF for t in types_)
    if opname in ("richcompare", "call_binary", "box_int", "box_float"):
        if opname == "call_binary" and attrs.get("fn") in ("PyObject_GetItem",):
            return types_[0] in _CONTAINERS and types_[1] in _LEAF \
                and (types_[0] is not dict or str_keys)
        return leaf
    if opname == "call_unary":
        if attrs.get("fn") == "PyObject_GetIter":
            return types_[0] in _CONTAINERS
        return leaf
    if opname in ("is_true", "len"):
        return types_[0] in _CONTAINERS or types_[0] in _LEAF
    if opname == "get_slice":
        # a slice of an exact sequence by ints or None runs no code
        return types_[0] in (list, tuple, str, bytes, range) \
            and all(t is int or t is type(None) for t in types_[1:])
    if opname == "build_const_key_map":
        # leaf keys hash and compare without code; distinct ones replace no value
        keys = attrs["keys"]
        return isinstance(keys, tuple) and all(type(k) in _LEAF for k in keys) \
            and len(set(keys)) == len(keys)
    if opname == "contains":
        # `str in str`, or a leaf key in a dict with a guarded str-only key
        # table; other containers compare items (their __eq__ may be code)
        return (types_[0] is str and types_[1] is str) \
            or (types_[0] in _LEAF and types_[1] is dict and str_keys)
    if opname == "getattr":
        return types_[0] in _LEAF or types_[0] is types.ModuleType
    if opname == "setitem":
        return (types_[0] is list or (types_[0] is dict and str_keys)) and types_[1] in _LEAF
    if opname in ("list_setitem", "store_local"):
        return True
    if opname in ("iter_next", "iter_next_or_null"):
        return types_[0] in _SAFE_ITERATORS
    if opname == "call":
        fn = args[0].value if isinstance(args[0], Const) else None
        rest = types_[1:]
        if fn is list or fn is tuple:
            return not rest or (len(rest) == 1 and rest[0] in _CONTAINERS)
        if fn is dict:
            return not rest  # {} (a dict of pairs hashes its keys)
        if fn is isinstance:
            return len(rest) == 2 and _isinstance_safe(rest[0], args[2])
        if fn is builtins.len or fn is enumerate:
            return len(rest) == 1 and rest[0] in _CONTAINERS
        if fn in _LEAF_BUILTINS:
            return all(t in _LEAF for t in rest)
        if type(fn) is METHOD_DESCRIPTOR:
            owner = getattr(fn, "__objclass__", None)
            if not isinstance(owner, type) or not rest or rest[0] is not owner:
                return False
            return _method_safe(fn, owner, rest[1:], args[2:], str_keys)
        return False
    return False


# Methods of dicts that look a key up (compare it with hash-equal keys).
_DICT_LOOKUPS: frozenset[object] = frozenset({dict.get, dict.__getitem__, dict.__contains__,
                                              dict.setdefault, dict.pop})
# Spellings of codec names str.encode and bytes.decode (strict errors) run in
# C without a codec lookup (CPython's fast paths; others may call Python codec
# functions, and may return a subclass): the utf-8 ones, then the others.
UTF8_CODECS = frozenset({"utf-8", "utf8", "UTF-8", "UTF8", "utf_8"})
_FAST_CODECS = UTF8_CODECS | {"ascii", "latin-1", "latin1", "iso-8859-1"}


def _fast_codec(name: Ref) -> bool:
    """A constant codec name of _FAST_CODECS."""
    return isinstance(name, Const) and type(name.value) is str and name.value in _FAST_CODECS


def _method_safe(fn: object, owner: type, argt: list[type | None], args: list[Ref],
                 str_keys: bool) -> bool:
    """A method of a builtin type called on an exact instance with arguments
    of types `argt`: whether it runs no Python code.  Methods that compare
    items (index, count, remove, sort, set membership), release them (clear)
    or take arbitrary iterables do not qualify."""
    if owner in _LEAF:
        if fn is str.encode or fn is bytes.decode:
            # the default codec, or a constant one with a fast path (no errors argument)
            return not args or (len(args) == 1 and _fast_codec(args[0]))
        if fn is str.join:
            return argt in ([list], [tuple])  # a non-str item raises TypeError in C
        if fn is bytes.join:
            return False  # an item's buffer may come from a Python __buffer__
        return all(t in _LEAF for t in argt)
    if owner is list:
        if fn is list.append:
            return len(argt) == 1
        if fn is list.insert:
            return len(argt) == 2 and argt[0] in (int, bool)
        if fn is list.pop:
            return not argt or (len(argt) == 1 and argt[0] in (int, bool))
        if fn is list.extend:
            return argt in ([list], [tuple])
        return fn in (list.copy, list.__len__) and not argt
    if owner is dict:
        if fn in _DICT_LOOKUPS:
            return str_keys and bool(argt) and argt[0] in _LEAF
        return fn in (dict.keys, dict.values, dict.items, dict.copy, dict.__len__) and not argt
    return False


def _str_keys_key(d: Ref) -> tuple[object, ...]:
    """The `Translator.checked` key of a dict's guarded str-only key table."""
    return ("str_keys", d.id) if isinstance(d, Value) else ("str_keys", "const", id(d.value))


# call_nocode methods that take an item out of a container.
_REMOVING_METHODS: frozenset[object] = frozenset({list.pop})
# Builtins that read their arguments only (no dict or function changes) when
# they run no Python code.
_READ_ONLY_CALLS: frozenset[object] = _LEAF_BUILTINS | {isinstance, builtins.len, list, tuple,
                                                          enumerate}
# Methods of exact builtin types whose result is always of one exact type
# (encode/decode only with a constant fast-path codec, see _FAST_CODECS).
_RESULT_TYPES: dict[object, type] = {
    str.replace: str, str.join: str, bytes.join: bytes, str.lower: str, str.upper: str,
    str.strip: str, str.lstrip: str, str.rstrip: str, str.format: str, bytes.replace: bytes,
    str.startswith: bool, str.endswith: bool, str.split: list,
    str.encode: bytes, bytes.decode: str, list.append: type(None), list.insert: type(None),
}


def _exact_float_const(sv: SV) -> bool:
    """An int constant that converts to a double exactly (|v| <= 2**53), so
    comparing a float with it compares the two doubles, as CPython does."""
    ref = sv.ref
    return (isinstance(ref, Const) and type(ref.value) is int
            and -(1 << 53) <= ref.value <= (1 << 53))


def _releases_nothing(args: list[Ref]) -> bool:
    """Whether a call (proven to run no Python code) also releases no
    reference the trace could rely on: a method of an immutable builtin type,
    a list method that drops no item (list.pop hands its item over), a join,
    or a read-only builtin."""
    fn = args[0].value if isinstance(args[0], Const) else None
    if type(fn) is METHOD_DESCRIPTOR:
        return getattr(fn, "__objclass__", None) in _LEAF or fn in _ANY_ARG_METHODS
    return fn in _READ_ONLY_CALLS


def _result_type(operands: list[Ref], types_: list[type | None]) -> type | None:
    """The exact type a call's result is known to have, or None."""
    fn = operands[0].value if isinstance(operands[0], Const) else None
    if type(fn) is METHOD_DESCRIPTOR:
        t = _RESULT_TYPES.get(fn)
        if t is None or len(types_) < 2 or types_[1] is not getattr(fn, "__objclass__", None):
            return None
        if fn in (str.encode, bytes.decode) and not (
                len(operands) == 3 and _fast_codec(operands[2])):
            return None
        return t
    if fn in (str, repr) and len(types_) == 2 and types_[1] in _LEAF:
        return str
    return None


_OBJECT_HOOKS = {name: object.__dict__[name]
                 for name in ("__getattribute__", "__setattr__", "__delattr__")}
# Descriptor types whose __get__/__set__ are C code calling no Python code.
_C_DESCRIPTORS: frozenset[type] = frozenset({
    types.FunctionType, staticmethod, classmethod, types.MemberDescriptorType,
    types.GetSetDescriptorType, types.MethodDescriptorType, types.BuiltinFunctionType,
    types.WrapperDescriptorType, types.MethodWrapperType, types.ClassMethodDescriptorType,
})


def _mro_lookup(tp: type, name: str) -> tuple[bool, object]:
    for klass in tp.__mro__:
        d = klass.__dict__
        if name in d:
            return True, d[name]
    return False, None


def _plain_attr(tp: type, name: str, store: bool) -> bool:
    """Whether getting (or setting) attribute `name` on an instance of the
    class `tp` runs no Python code: no __getattribute__/__getattr__/__setattr__
    of its own, and `name` is not a property or a Python-level descriptor."""
    if not tp.__flags__ & TPFLAGS_HEAPTYPE:  # a builtin type: see _frame_safe
        return False
    for hook in ("__getattribute__", "__setattr__", "__delattr__"):
        if _mro_lookup(tp, hook)[1] is not _OBJECT_HOOKS[hook]:
            return False
    if _mro_lookup(tp, "__getattr__")[0]:
        return False
    found, value = _mro_lookup(tp, name)
    if not found:
        return True
    vt = type(value)
    if vt in _C_DESCRIPTORS:
        return True
    # Anything else must not be a descriptor at all (a plain class attribute).
    return not any(hasattr(vt, h) for h in ("__get__", "__set__", "__delete__"))


def _class_tuple(value: object) -> TypeGuard[tuple[type, ...]]:
    """A small tuple of classes of metaclass type (isinstance's second argument)."""
    return type(value) is tuple and 0 < len(value) <= 8 \
        and all(type(t) is type for t in value)


def _isinstance_safe(inst: type | None, cls: Ref) -> bool:
    """isinstance(x, cls) runs no Python code when type(x) is a builtin type
    (its __class__ is object's) and cls is a class of metaclass type, or a
    tuple of such."""
    if inst is None or inst.__flags__ & TPFLAGS_HEAPTYPE:
        return False
    if not isinstance(cls, Const):
        return False
    c = cls.value
    items = c if type(c) is tuple else (c,)
    return all(type(t) is type for t in items)


# Constants whose truth never changes (a mutable container's does).
_IMMUTABLE_TRUTH: frozenset[type] = frozenset({
    type(None), bool, int, float, complex, str, bytes, tuple, frozenset, range,
    types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType,
})

_IMMUTABLETYPE = 1 << 8


def _plain_method(owner_type: type, name: str) -> object | None:
    """The method descriptor `owner.name` resolves to for every instance of an
    immutable type without instance dicts (so no guard beyond the type), or None."""
    if not owner_type.__flags__ & _IMMUTABLETYPE or owner_type.__dictoffset__ != 0:
        return None
    for klass in owner_type.__mro__:
        if name in klass.__dict__:
            found = klass.__dict__[name]
            return found if type(found) is METHOD_DESCRIPTOR else None
    return None


def _held_weakly(value: object) -> bool:
    """Whether a compiled trace holds this constant weakly (runtime/hooks.py
    _hold_weakly): objects whose type supports weak references."""
    return value is not NULL and type(value).__weakrefoffset__ != 0


class _LoopClosed(Exception):
    pass


class CarriedMismatch(Exception):
    def __init__(self, slots: set[int]) -> None:
        super().__init__(f"carried slots changed type: {sorted(slots)}")
        self.slots = slots


_CARRIED_TYPES = {int: Type.INT, float: Type.FLOAT, bool: Type.BOOL}


def translate(rec: Recording, name: str = "loop") -> Trace:
    """Translate a finished recording into a loop trace.

    Locals that hold an unboxed int, float or bool at the end of the
    iteration, with the same type at the header, are carried in registers
    across iterations; the set is found by translating until it is stable.
    """
    if rec.end is not None and rec.end.kind != "loop":
        trace = Translator(rec, {}, name).run_linear()
        _check_resume_points(trace, rec)
        return trace
    carried: dict[int, Type] = {}
    for _attempt in range(4):
        tr = Translator(rec, carried, name)
        try:
            tr.run()
        except _LoopClosed:
            pass
        try:
            end = tr.end_state_types()
            candidates = {
                slot: t
                for slot, t in end.items()
                if _CARRIED_TYPES.get(rec.entry_locals[slot]) is t
            }
            if candidates != carried and all(s in candidates for s in carried):
                carried = candidates
                continue
            trace = tr.close_loop()
        except CarriedMismatch as mismatch:
            carried = {s: t for s, t in carried.items() if s not in mismatch.slots}
            continue
        _fix_enter(trace)
        _check_resume_points(trace, rec)
        return trace
    raise RecordingAborted(AbortReason.TYPE_UNSTABLE)


def _check_resume_points(trace: Trace, rec: Recording) -> None:
    """Every exit must resume at the start of an instruction."""
    for op in trace.ops:
        snap = op.snapshot
        if snap is None:
            continue
        points = [(rec.info, snap.pc)] + [(code_info(f.code), f.pc) for f in snap.frames]
        for info, pc in points:
            ins = info.instrs.get(pc * 2)
            if ins is None or ins.start != ins.offset:
                raise RecordingAborted(AbortReason.BACKEND,
                                       f"{op.name} resumes inside an instruction (pc {pc})")


def _fix_enter(trace: Trace) -> None:
    """Replace the internal `_enter` marker: the preamble's initial values become
    the label parameters' definitions on entry (recorded as an attribute)."""
    for i, op in enumerate(trace.ops):
        if op.name == "_enter":
            label = trace.ops[i + 1]
            label.args = op.args
            del trace.ops[i]
            return
