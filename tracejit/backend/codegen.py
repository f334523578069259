"""Lowering optimized trace IR to machine ops and exit stubs.

Every SSA value gets its own 64-bit register in the trace's register file;
constants are materialised once at entry.  Each snapshot becomes an exit
stub that boxes the values the trace kept unboxed, writes locals and the
value stack into the frame, counts the exit, sets ``instr_ptr`` and
``stacktop`` and returns the exit's number (``-(n + 1)`` for an error exit,
with the exception set).
"""

from __future__ import annotations

import ctypes
import struct
import types
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.assembler import (
    Label,
    MachineInstr,
    registered_address,
    runtime_address,
    stencil_exits,
)
from tracejit.backend.layout import LAYOUT, METHOD_DESCRIPTOR, method_def, method_entry
from tracejit.ir.ops import Type
from tracejit.ir.trace import Const, Op, Ref, SnapEntry, Snapshot, Trace, Value
from tracejit.ir.translate import NULL, UTF8_CODECS
from tracejit.opt.strings import const_replace

if TYPE_CHECKING:
    from tracejit.runtime.resume import FrameSpec

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

# IR op -> machine op, where the operands map one to one (dst first).
_DIRECT = {
    "int_add": "int_add", "int_sub": "int_sub", "int_mul": "int_mul",
    "int_floordiv": "int_floordiv", "int_mod": "int_mod", "int_and": "int_and",
    "int_or": "int_or", "int_xor": "int_xor", "int_lshift": "int_lshift",
    "int_rshift": "int_rshift", "int_neg": "int_neg",
    "int_lt": "int_lt", "int_le": "int_le", "int_eq": "int_eq", "int_ne": "int_ne",
    "int_gt": "int_gt", "int_ge": "int_ge",
    "float_add": "float_add", "float_sub": "float_sub", "float_mul": "float_mul",
    "float_div": "float_div", "float_pow": "float_pow", "float_neg": "float_neg",
    "float_lt": "float_lt", "float_le": "float_le", "float_eq": "float_eq",
    "float_ne": "float_ne", "float_gt": "float_gt", "float_ge": "float_ge",
    "int_to_float": "int_to_float",
    "unbox_int": "unbox_int", "box_int": "box_int", "unbox_float": "unbox_float",
    "box_float": "box_float", "box_bool": "box_bool", "is_true": "is_true",
    "len": "len", "ob_size": "ob_size", "list_getitem": "list_getitem",
    "tuple_getitem": "tuple_getitem",
    "list_getitem_borrowed": "list_getitem_borrowed",
    "tuple_getitem_borrowed": "tuple_getitem_borrowed",
    "list_setitem": "list_setitem", "list_setitem_float": "list_setitem_float",
    "list_append": "list_append",
    "range_next": "range_iter_next",
    "list_next": "list_iter_next", "tuple_next": "tuple_iter_next", "iter_next": "iter_next",
    "iter_next_or_null": "iter_next_null",
    "setitem": "setitem", "incref": "incref", "decref": "decref",
    "guard_true": "guard_true", "guard_false": "guard_false",
    "guard_dict_str_keys": "guard_dict_str_keys",
}


# Item loads with a variant taking a non-negative constant index as an immediate.
_GETITEM = frozenset({"list_getitem", "tuple_getitem", "list_getitem_borrowed",
                      "tuple_getitem_borrowed"})


# A dict version no dict has (versions are multiples of 1 << 12 plus watcher bits).
_NO_VERSION = (1 << 64) - 1
_M_ML = LAYOUT["PyCFunctionObject.m_ml"]


def _pyapi_address(name: str) -> int:
    return ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value or 0


def const_bits(c: Const) -> int:
    if c.type is Type.INT:
        return int(c.value) & 0xFFFFFFFFFFFFFFFF
    if c.type is Type.FLOAT:
        return int(struct.unpack("<Q", struct.pack("<d", float(c.value)))[0])
    if c.type is Type.BOOL:
        return 1 if c.value else 0
    if c.value is NULL:
        return 0
    return id(c.value)


@dataclass(slots=True)
class ExitInfo:
    index: int
    pc: int  # code units
    # An error exit the dispatcher sees (negative exit code, exception set);
    # an exit inside inlined calls is one when the callee raises.
    error: bool
    op: str
    entry: bool = False  # an entry check (see Snapshot.entry)
    # Inside an inlined call: runs the rest of the callee through a resume
    # object, then leaves after the trace's own CALL (or fails at it).
    inline: bool = False
    # The innermost inlined callee's code (inline exits).
    callee: object = None
    # guard_global's name (its exit going hot makes the global varying).
    global_name: str | None = None


@dataclass(slots=True)
class Lowered:
    code: list[MachineInstr | Label]
    nregs: int
    exits: list[ExitInfo]
    counters: ctypes.Array[ctypes.c_uint64]
    # Loop iterations run natively (counted at the label).
    iterations: ctypes.c_uint64 = field(default_factory=ctypes.c_uint64)
    keepalive: list[object] = field(default_factory=list)
    cells: list[object] = field(default_factory=list)
    # Non-zero once the trace is taken out of use (check_instrumentation exits).
    retired: ctypes.c_uint64 = field(default_factory=ctypes.c_uint64)
    # The inlined calls' code objects, a NULL-terminated array (0: none).
    inlined: int = 0


# tj_exit_write's descriptor (ops.c, "compact exits").
_MASK64 = (1 << 64) - 1
_W_OWNED, _W_BORROWED, _W_INT, _W_FLOAT, _W_BOOL, _W_RAW, _W_IMM = 0, 1, 2, 3, 4, 8, 16


class _SharedDesc:
    """A guard_global descriptor shared by the traces that hold this object
    (and the name object whose address it holds)."""
    __slots__ = ("words", "name", "__weakref__")

    def __init__(self, words: ctypes.Array[ctypes.c_uint64], name: object) -> None:
        self.words = words
        self.name = name


_SHARED_GLOBAL_DESCS: weakref.WeakValueDictionary[tuple[object, ...], _SharedDesc] = \
    weakref.WeakValueDictionary()


# Ops a huge function's traces call out of line (ops.c, "out-of-line forms"):
# they run about once per call, and their code is fetched more than run.
_OUT_OF_LINE = {"decref": "decref_out", "store_local": "store_local_out",
                "list_append": "list_append_out"}


class CodeGen:
    def __init__(self, trace: Trace, nlocalsplus: int, base: int,
                 code: types.CodeType | None = None, out_of_line: bool = False) -> None:
        self.trace = trace
        self.out_of_line = out_of_line
        self.code = code
        self.nlocalsplus = nlocalsplus
        self.base = base  # header stack depth
        self.regs: dict[int, int] = {}
        self.const_regs: dict[tuple[Type, int], int] = {}
        # id(FrameSnap) -> its resume frame spec, when it boxes nothing (the
        # snapshots keep the FrameSnap alive, so the id stays its)
        self.frame_entries: dict[int, FrameSpec] = {}
        # id(Const) -> (the Const, kept alive so the id stays its, its register)
        self.const_objs: dict[int, tuple[Const, int]] = {}
        self.nregs = 0
        self.body: list[MachineInstr | Label] = []
        self.prologue: list[MachineInstr | Label] = []
        self.stubs: list[tuple[Label, Snapshot, bool, Op]] = []
        self.keepalive: list[object] = []
        # Memory the machine code uses (guard_global's caches, resume chain
        # descriptors): held strongly, never weakly like keepalive's objects.
        self.cells: list[object] = []
        # The descriptors of global guards, exits and resume chains: words in
        # chunks held with the trace (see data).
        self.arena: ctypes.Array[ctypes.c_uint64] | None = None
        self.arena_used = 0
        # Set when the trace is taken out of use; checked after call-outs.
        self.retired = ctypes.c_uint64(0)
        self.current_pc: int | None = None
        self.inlined: int | None = None  # see inlined_codes
        # Fusions (see plan_fusions): ops lowered as part of another one.
        self.skip: set[int] = set()  # id(op)
        self.size_guards: dict[int, tuple[Ref, int]] = {}  # id(guard_true) -> (seq, n)
        self.unbox_at: dict[int, Op] = {}  # id(guard_type) -> the unbox_float it does
        # How each call op is lowered, and the argument blocks of those that
        # take one (see plan_arg_blocks): id(op) -> first register, and the
        # block registers holding a constant written by the prologue.
        self.call_forms: dict[int, _CallForm] = {}
        self.blocks: dict[int, int] = {}
        self.placed: set[int] = set()

    def global_desc(self, op: Op, *head: int) -> int:
        """A guard's descriptor: `head` (the name, or the function and the
        name), then the cell {globals version, builtins version, globals,
        builtins, object} (see tj_global_lookup) with versions no dict has,
        so the first check looks up.  Held by the trace; returns its address."""
        words = [*head, _NO_VERSION, _NO_VERSION, 0, 0, self.obj_addr(op.attrs["obj"])]
        if op.name == "guard_global" and self.code is not None:
            # In the running frame's dicts, which may be new at each run (a
            # template's namespace): one descriptor per code, name and object
            # for all traces, so a new dict costs one lookup per name, not one
            # per guard.  What a cell caches is true of those dicts at those
            # versions (unique), whichever trace's guard looked it up.
            name = str(op.attrs["name"])
            key = (id(self.code), name, words[-1])
            shared = _SHARED_GLOBAL_DESCS.get(key)
            if shared is None:
                shared = _SharedDesc((ctypes.c_uint64 * len(words))(*words), op.attrs["name"])
                _SHARED_GLOBAL_DESCS[key] = shared
            self.cells.append(shared)
            return ctypes.addressof(shared.words)
        return self.data(words)

    def new_reg(self) -> int:
        r = self.nregs
        self.nregs += 1
        return r

    def reg(self, ref: Ref) -> int:
        if isinstance(ref, Value):
            r = self.regs.get(ref.id)
            if r is None:
                r = self.regs[ref.id] = self.nregs
                self.nregs += 1
            return r
        known = self.const_objs.get(id(ref))
        if known is not None:
            return known[1]
        bits = const_bits(ref)
        key = (ref.type, bits)
        r = self.const_regs.get(key)
        if r is None:
            r = self.new_reg()
            self.const_regs[key] = r
            if ref.type is Type.OBJ:
                self.keepalive.append(ref.value)
            self.prologue.append(MachineInstr("const", (r, bits)))
        self.const_objs[id(ref)] = (ref, r)
        return r

    def plan_arg_blocks(self) -> None:
        """Decide how each call is lowered (_call_form), and place the
        arguments of one that takes a block of consecutive registers there in
        the first place: a value with no register yet gets its block slot as
        its register, a constant is written to the slot by the prologue.  The
        block's slots are written by nothing else (registers are never
        reused), so the call copies nothing; a value already placed elsewhere
        is copied (arg_block)."""
        for op in self.trace.ops:
            form = _call_form(op) if id(op) not in self.skip else None
            if form is None:
                continue
            self.call_forms[id(op)] = form
            if not form.block:
                continue
            block = self.nregs
            self.nregs += len(form.block)
            self.blocks[id(op)] = block
            for i, ref in enumerate(form.block):
                if isinstance(ref, Value):
                    if ref.id not in self.regs:
                        self.regs[ref.id] = block + i
                else:
                    bits = self.obj_addr(ref.value) if ref.type is Type.OBJ else const_bits(ref)
                    self.prologue.append(MachineInstr("const", (block + i, bits)))
                    self.placed.add(block + i)

    def arg_block(self, op: Op, refs: Sequence[Ref]) -> int:
        """The first register of the block of a call's arguments `refs`,
        copying in those not placed there (plan_arg_blocks)."""
        block = self.blocks[id(op)]
        for i, ref in enumerate(refs):
            r = block + i
            if r not in self.placed and self.reg(ref) != r:
                self.emit("copy", (r, self.reg(ref)))
        return block

    def inlined_codes(self) -> int:
        """Address of the NULL-terminated array of the inlined calls' code
        objects (held weakly with the trace's other objects), or 0."""
        if self.inlined is None:
            codes = self.trace.inlined_codes
            if not codes:
                self.inlined = 0
            else:
                array = (ctypes.c_void_p * (len(codes) + 1))(
                    *[self.obj_addr(c) for c in codes], None)
                self.cells.append(array)
                self.inlined = ctypes.addressof(array)
        return self.inlined

    def obj_addr(self, obj: object) -> int:
        if obj is NULL:
            return 0
        self.keepalive.append(obj)
        return id(obj)

    def exit_label(self, op: Op, error: bool = False) -> Label:
        assert op.snapshot is not None
        label = Label(f"{'error' if error else 'exit'}{len(self.stubs)}")
        self.stubs.append((label, op.snapshot, error, op))
        return label

    def emit(self, name: str, operands: tuple[int, ...] = (), op: Op | None = None,
             guard: bool = False, raises: bool = False, target: Label | None = None) -> None:
        if self.out_of_line:
            name = _OUT_OF_LINE.get(name, name)
        # The stencil decides which exits exist; the IR op's snapshot serves both.
        guard, raises = stencil_exits(name)
        if (guard or raises) and (op is None or op.snapshot is None):
            raise NotImplementedError(f"machine op {name} can exit but has no snapshot")
        self.body.append(MachineInstr(
            name, operands, target=target,
            exit=self.exit_label(op) if guard and op is not None else None,
            error=self.exit_label(op, True) if raises and op is not None else None,
        ))

    # ------------------------------------------------------------------ ops

    def plan_fusions(self) -> None:
        """Machine ops that do the work of several IR ops:
        - ``n = ob_size s; f = int_eq n, K; guard_true f`` (n and f used only
          there) is ``guard_size s, K`` at the guard;
        - ``guard_type v float`` followed, before the next label, by
          ``u = unbox_float v`` is ``guard_unbox_float u, v`` at the guard (the
          unboxing moves up: v is an exact float from the guard on, and u's
          register is written by nothing else)."""
        ops = self.trace.ops
        uses: dict[int, int] = {}
        defs: dict[int, Op] = {}
        for op in ops:
            refs = list(op.args) + (op.snapshot.refs() if op.snapshot is not None else [])
            for r in refs:
                if isinstance(r, Value):
                    uses[r.id] = uses.get(r.id, 0) + 1
            if op.result is not None:
                defs[op.result.id] = op
        for op in ops:
            if op.name != "guard_true" or not isinstance(op.args[0], Value):
                continue
            eq = defs.get(op.args[0].id)
            if eq is None or eq.name != "int_eq" or uses.get(op.args[0].id) != 1:
                continue
            n, k = eq.args
            if not isinstance(n, Value):
                n, k = k, n
            if not isinstance(n, Value) or not isinstance(k, Const) or uses.get(n.id) != 1:
                continue
            size = defs.get(n.id)
            if size is None or size.name != "ob_size":
                continue
            self.skip.add(id(eq))
            self.skip.add(id(size))
            self.size_guards[id(op)] = (size.args[0], int(k.value))
        for i, op in enumerate(ops):
            if op.name != "guard_type" or op.attrs["type"] is not float \
                    or not isinstance(op.args[0], Value):
                continue
            vid = op.args[0].id
            for later in ops[i + 1:]:
                if later.name in ("label", "jump", "exit"):
                    break
                if later.name == "unbox_float" and isinstance(later.args[0], Value) \
                        and later.args[0].id == vid and id(later) not in self.skip:
                    self.skip.add(id(later))
                    self.unbox_at[id(op)] = later
                    break

    def lower_op(self, op: Op) -> None:
        if id(op) in self.skip:
            return
        info = op.info
        if info.escapes and op.snapshot is not None \
                and op.snapshot.pc != self.current_pc:
            # The interpreter's instr_ptr during this instruction, for anything
            # the op runs that looks at the frame (warnings, tracebacks).
            self.current_pc = op.snapshot.pc
            self.body.append(MachineInstr("set_ip", (op.snapshot.pc,)))
        dst = (self.reg(op.result),) if op.result is not None else ()
        args = tuple(self.reg(a) for a in op.args) if op.name not in ("call", "call_kw",
                                                                       "call_nocode",
                                                                       "label", "jump") else ()
        name = op.name
        if name in _GETITEM and isinstance(op.args[1], Const) and int(op.args[1].value) >= 0:
            self.emit(name + "_c", dst + (args[0], int(op.args[1].value)), op)
        elif name == "list_setitem_float" and isinstance(op.args[1], Const) \
                and int(op.args[1].value) >= 0:
            self.emit("list_setitem_float_c", (args[0], int(op.args[1].value), args[2]), op)
        elif id(op) in self.size_guards:
            seq, n = self.size_guards[id(op)]
            self.emit("guard_size", (self.reg(seq), n & 0xFFFFFFFFFFFFFFFF), op)
        elif id(op) in self.unbox_at:
            unbox = self.unbox_at[id(op)]
            assert unbox.result is not None
            self.emit("guard_unbox_float", (self.reg(unbox.result),) + args
                      + (self.obj_addr(op.attrs["type"]),), op)
        elif name in _DIRECT:
            self.emit(_DIRECT[name], dst + args, op, info.guard, info.raises)
        elif name == "bool_not":
            self.emit("int_eq", dst + args + (self.reg(Const(0, Type.INT)),))
        elif name == "obj_is":  # the two addresses
            self.emit("int_eq", dst + args)
        elif name == "str_replace_chain":
            pairs = op.attrs["pairs"]
            assert isinstance(pairs, tuple)
            data = self.data([len(pairs)] + [self.obj_addr(s) for pair in pairs for s in pair])
            self.emit("str_replace_chain", dst + args + (data,), op)
        elif name == "load_local":
            self.emit("load_slot", dst + (int(op.attrs["slot"]),))
        elif name == "store_local":
            self.emit("store_local", args + (int(op.attrs["slot"]),))
        elif name == "guard_type":
            self.emit("guard_type", args + (self.obj_addr(op.attrs["type"]),), op, guard=True)
        elif name in ("guard_is", "guard_is_not"):
            self.emit(name, args + (self.obj_addr(op.attrs["obj"]),), op, guard=True)
        elif name == "check_eval_breaker":
            self.emit(name, (), op, guard=True)
        elif name == "guard_pure_call":
            impure = registered_address("tj_state.impure")
            if impure is None:
                raise NotImplementedError("guard_pure_call needs the dispatcher")
            self.emit(name, (impure,), op, guard=True)
        elif name == "check_instrumentation":
            self.emit(name, (ctypes.addressof(self.retired), runtime_address("tj_watched"),
                             self.inlined_codes()), op, guard=True)
        elif name == "call_unary" or name == "call_binary":
            fn = _pyapi_address(str(op.attrs["fn"]))
            self.emit(name, dst + args + (fn,), op, raises=True)
        elif name == "richcompare":
            self.emit("richcompare", dst + args + (int(op.attrs["op"]),), op,
                      raises=True)
        elif name == "list_extend":
            self.emit("list_extend", args, op, raises=True)
        elif name == "get_slice":
            self.emit("get_slice", dst + args, op, raises=True)
        elif name == "contains":
            self.emit("contains", dst + args + (int(bool(op.attrs["invert"])),), op,
                      raises=True)
        elif name == "getattr":
            self.emit("getattr", dst + args + (self.obj_addr(op.attrs["name"]),), op,
                      raises=True)
        elif name == "setattr":
            obj, value = args
            self.emit("setattr", (obj, self.obj_addr(op.attrs["name"]), value), op,
                      raises=True)
        elif id(op) in self.call_forms:
            self.lower_call(op, self.call_forms[id(op)], dst)
        elif name == "guard_global_in":
            # in the inlined function's own dicts (read from the function, held
            # weakly: no reference to a module's dict)
            desc = self.global_desc(op, self.obj_addr(op.attrs["func"]),
                                    self.obj_addr(op.attrs["name"]))
            self.emit("guard_global", (desc, runtime_address("tj_guard_global_in")), op)
        elif name == "guard_module_attr":
            # in the module's dict (the module held weakly, read on a slow path)
            desc = self.global_desc(op, self.obj_addr(op.attrs["module"]),
                                    self.obj_addr(op.attrs["name"]))
            self.emit("guard_global", (desc, runtime_address("tj_guard_module_attr")), op)
        elif name == "guard_global":
            desc = self.global_desc(op, self.obj_addr(op.attrs["name"]))
            self.emit("guard_global", (desc, runtime_address("tj_guard_global")), op)
        elif name == "load_global":
            self.emit("load_global", dst + (self.obj_addr(op.attrs["name"]),), op)
        elif name == "exit":
            self.emit("jump", (), target=self.exit_label(op))
        elif name == "load_field":
            self.emit("load_field", dst + args + (int(op.attrs["offset"]),))
        elif name == "store_cell":
            self.emit("store_cell", args)
        elif name == "make_function":
            self.emit("make_function", dst + args, op)
        elif name == "set_function_attribute":
            self.emit("set_function_attribute", args + (int(op.attrs["flag"]),))
        elif name == "guard_type_version":
            self.emit("guard_type_version", (self.obj_addr(op.attrs["type"]),
                                             int(op.attrs["version"])), op, guard=True)
        elif name == "guard_cfunc":
            # type(v) is builtin_function_or_method and v.m_ml is method's PyMethodDef
            self.emit("guard_type", args + (self.obj_addr(types.BuiltinMethodType),), op,
                      guard=True)
            self.obj_addr(op.attrs["method"])  # kept alive with the trace
            self.emit("guard_field_is", args + (_M_ML, method_def(op.attrs["method"])), op,
                      guard=True)
        elif name == "guard_field_is":
            self.emit("guard_field_is", args + (int(op.attrs["offset"]),
                                                self.obj_addr(op.attrs["obj"])), op, guard=True)
        else:
            raise NotImplementedError(f"no lowering for IR op {name}")

    def lower_call(self, op: Op, form: _CallForm, dst: tuple[int, ...]) -> None:
        machine, meth = form.machine, form.meth
        if form.consts:
            # self, then {nargs, arguments...} in the trace's data
            args = self.data([len(form.consts)] + [self.obj_addr(c.value) for c in form.consts])
            operands: tuple[int, ...] = (self.reg(op.args[1]), args, meth)
        elif machine == "call_vector_kw":
            kwnames = op.attrs["kwnames"]
            assert isinstance(kwnames, tuple)
            operands = (self.arg_block(op, form.block), len(op.args) - 1 - len(kwnames),
                        self.obj_addr(kwnames))
        elif machine == "call_vector":
            operands = (self.arg_block(op, form.block), len(op.args) - 1)
        elif machine == "call_py":
            operands = (self.arg_block(op, form.block), len(op.args) - 1, meth)
        elif machine == "build_tuple" or machine == "build_list":
            operands = (self.arg_block(op, form.block), len(op.args))
        elif machine == "build_string":
            operands = (self.arg_block(op, form.block), len(op.args), self.obj_addr(""))
        elif machine == "build_const_key_map":
            operands = (self.arg_block(op, form.block), len(op.args),
                        self.obj_addr(op.attrs["keys"]))
        elif form.block:  # call_meth_fast(kw): self, then the arguments
            operands = (self.arg_block(op, form.block), len(op.args) - 2, meth)
        elif machine == "call_meth_o":
            operands = (self.reg(op.args[1]), self.reg(op.args[2]), meth)
        elif machine == "bytes_decode_utf8":
            operands = (self.reg(op.args[1]),)
        else:  # call_meth_noargs, or call_unary of the utf-8 encoder
            operands = (self.reg(op.args[1]), meth)
        self.emit(machine, dst + operands, op, raises=True)

    def parallel_copy(self, dsts: list[int], srcs: list[int]) -> None:
        """Copy srcs to dsts as if at once: copy to a destination nobody still
        reads first; break a cycle with one temporary."""
        pending = [(d, s) for d, s in zip(dsts, srcs, strict=True) if d != s]
        while pending:
            for i, (d, s) in enumerate(pending):
                if all(d != s2 for _, s2 in pending):
                    self.body.append(MachineInstr("copy", (d, s)))
                    del pending[i]
                    break
            else:
                d, s = pending[0]
                t = self.new_reg()
                self.body.append(MachineInstr("copy", (t, s)))
                pending = [(d2, t if s2 == s else s2) for d2, s2 in pending]

    def coalesce_carried(self) -> None:
        """Give a loop-carried value the register of its label parameter when the
        parameter is dead by the time the new value is computed, so the back-edge
        copies nothing.  Arithmetic stencils write their result only on the
        continue path, after reading their inputs, so the defining op may still
        read the parameter (also in its snapshot)."""
        ops = self.trace.ops
        label = next((op for op in ops if op.name == "label"), None)
        jump = ops[-1] if ops and ops[-1].name == "jump" else None
        if label is None or jump is None:
            return
        last_use: dict[int, int] = {}
        define: dict[int, int] = {}
        for i, op in enumerate(ops):
            refs = list(op.args) + (op.snapshot.refs() if op.snapshot is not None else [])
            if op.name == "jump":
                # A parameter passed on in another position stays live to the jump.
                refs = [a for p, a in zip(label.params, op.args, strict=True) if a is not p]
            for r in refs:
                if isinstance(r, Value):
                    last_use[r.id] = i
            if op.result is not None:
                define[op.result.id] = i
        taken: set[int] = set()
        for p, a in zip(label.params, jump.args, strict=True):
            if not isinstance(a, Value) or a.id not in define or a.id in taken:
                continue
            d = define[a.id]
            if ops[d].name.split("_")[0] not in ("int", "float", "bool"):
                continue
            if last_use.get(p.id, -1) <= d and a.id not in self.regs:
                self.regs[a.id] = self.reg(p)
                taken.add(a.id)

    # ---------------------------------------------------------------- stubs

    def materialize(self, entry: SnapEntry, out: list[MachineInstr | Label],
                    boxed: dict[int, int], oom: Label) -> int:
        ref = entry.ref
        if isinstance(ref, Value) and ref.id in boxed:
            r = boxed[ref.id]
            out.append(MachineInstr("incref", (r,)))
            return r
        if ref.type is Type.OBJ:
            r = self.reg(ref)
            if isinstance(ref, Const):
                # owned: the trace took a reference to it (across a call-out)
                if ref.value is not NULL and not entry.owned:
                    out.append(MachineInstr("incref", (r,)))
            elif not entry.owned:
                out.append(MachineInstr("incref", (r,)))
            return r
        box = {Type.INT: "box_int", Type.FLOAT: "box_float", Type.BOOL: "box_bool"}[ref.type]
        r = self.new_reg()
        out.append(MachineInstr(box, (r, self.reg(ref)),
                                error=oom if box != "box_bool" else None))
        if isinstance(ref, Value):
            boxed[ref.id] = r
        return r

    def frame_write(self, entry: SnapEntry, slot: int, raw: bool, uses: dict[int, int],
                    out: list[MachineInstr | Label], boxed: dict[int, int],
                    oom: Label) -> list[int]:
        """One write of an exit descriptor (see tj_exit_write in ops.c): one
        word, or two for an object constant (no register, no prologue op)."""
        ref = entry.ref
        flags = (_W_RAW if raw else 0) | (slot << 8)
        if boxed and isinstance(ref, Value) and ref.id in boxed:
            kind, r = _W_BORROWED, boxed[ref.id]  # boxed once: the same object
        elif isinstance(ref, Const) and ref.type in (Type.OBJ, Type.BOOL):
            if ref.type is Type.BOOL:
                obj: object = bool(ref.value)
                owned = False
            else:
                obj = ref.value
                owned = entry.owned or obj is NULL
            return [(_W_OWNED if owned else _W_BORROWED) | _W_IMM | flags, self.obj_addr(obj)]
        elif ref.type is Type.OBJ:
            assert isinstance(ref, Value)  # (registers of the stubs' values are made first)
            kind, r = (_W_OWNED if entry.owned else _W_BORROWED), self.regs[ref.id]
        elif ref.type is Type.BOOL:
            kind, r = _W_BOOL, self.reg(ref)
        elif isinstance(ref, Value) and uses[ref.id] > 1:
            # boxed once by a stencil, then shared (identity is kept)
            kind, r = _W_OWNED, self.materialize(entry, out, boxed, oom)
        else:
            # boxed by the write itself; a store reuses an int or float only
            # the frame holds
            kind, r = (_W_FLOAT if ref.type is Type.FLOAT else _W_INT), self.reg(ref)
        return [kind | flags | (r << 32)]

    def data(self, words: list[int]) -> int:
        """Copy 64-bit words into the trace's descriptor memory; their address.
        One ctypes array per descriptor cost more than the rest of an exit's
        lowering.  The body is lowered before the stubs, so the global guards'
        descriptors lie in trace order: a template's code runs once per
        render, and scattered descriptors were each a cache miss."""
        n = len(words)
        arena = self.arena
        if arena is None or self.arena_used + n > len(arena):
            size = max(n, 2 * len(arena) if arena is not None else 1024)
            arena = self.arena = (ctypes.c_uint64 * size)()
            self.cells.append(arena)
            self.arena_used = 0
        at = self.arena_used
        arena[at:at + n] = words  # type: ignore[assignment]  # ctypes takes ints
        self.arena_used = at + n
        return ctypes.addressof(arena) + 8 * at

    def exit_desc(self, counter: int, pc: int, stacktop: int, code: int, oom_stacktop: int,
                  oom_code: int, writes: list[int], more: Sequence[int] = ()) -> int:
        return self.data([counter, pc, stacktop, code & _MASK64, oom_stacktop,
                          oom_code & _MASK64, len(writes), *writes, *more])

    def lower_stub(self, index: int, label: Label, snap: Snapshot, error: bool,
                   counters: ctypes.Array[ctypes.c_uint64]) -> list[MachineInstr | Label]:
        out: list[MachineInstr | Label] = [label]
        boxed: dict[int, int] = {}
        oom = Label(f"oom{index}")
        # Inside inlined calls: the resume objects first (innermost first); an
        # exception raised in the callee is taken over by the innermost one.
        resume = None  # the resume objects' tj_chain_desc
        if snap.frames:
            resume = self.lower_resume(snap, error, out, boxed, oom)
            error = False
        # How often each unboxed value is written (boxed once if more than once).
        uses: dict[int, int] = {}
        for e in (*snap.locals.values(), *snap.stack):
            ref = e.ref
            if (ref.type is Type.INT or ref.type is Type.FLOAT) and isinstance(ref, Value):
                uses[ref.id] = uses.get(ref.id, 0) + 1
        first = self.nlocalsplus + self.base
        # The frame writes, as data for one runtime call (tj_exit_write).
        writes: list[int] = []
        for slot, entry in sorted(snap.locals.items()):
            writes += self.frame_write(entry, slot, False, uses, out, boxed, oom)
        for i, entry in enumerate(snap.stack):
            writes += self.frame_write(entry, first + i, True, uses, out, boxed, oom)
        counter = ctypes.addressof(counters) + 8 * index
        depth = first + len(snap.stack)
        if resume is None:
            code = -(index + 1) if error else index
            desc = self.exit_desc(counter, snap.pc, depth, code, first, -(index + 1), writes)
            out.append(MachineInstr("exit_write", (desc, runtime_address("tj_exit_write"))))
            return self.oom_path(out, oom, snap.pc, first, index)
        # The callee runs to its end now, the caller's frame as during its
        # CALL; then the trace leaves after the CALL with the result, or at
        # the CALL with the callee's exception (see tracejit/runtime/resume.py).
        from tracejit.runtime.resume import call_site, chain_function

        if self.code is None:
            raise NotImplementedError("an exit inside inlined calls needs the code")
        call_at, next_at = call_site(self.code, snap.pc)
        desc = self.exit_desc(counter, snap.pc, depth + 1, index, first, -(index + 1), writes,
                              [chain_function(), resume, call_at, next_at, depth])
        out.append(MachineInstr("exit_write", (desc, runtime_address("tj_exit_resume"))))
        return self.oom_path(out, oom, snap.pc, first, index)

    def oom_path(self, out: list[MachineInstr | Label], oom: Label, pc: int, first: int,
                 index: int) -> list[MachineInstr | Label]:
        """Boxing by a stencil failed (out of memory): resume at the exit's pc with
        the error set; references not yet written to the frame are lost."""
        if any(type(i) is MachineInstr and i.error is oom for i in out):
            out.append(oom)
            out.append(MachineInstr("exit_finish", (pc, first, -(index + 1))))
        return out

    def lower_resume(self, snap: Snapshot, error: bool, out: list[MachineInstr | Label],
                     boxed: dict[int, int], oom: Label) -> int:
        """Describe the resume objects of an exit inside inlined calls (built by
        one runtime call, tj_resume_chain); return the tj_chain_desc address."""
        from tracejit.recorder.record import code_info
        from tracejit.runtime import resume

        exc = -1
        if error:
            exc = self.new_reg()
            out.append(MachineInstr("fetch_exc", (exc,)))
        specs: list[resume.FrameSpec] = []
        for f in snap.frames:
            known = self.frame_entries.get(id(f))
            if known is not None:
                # An inlined frame shared by several exits' snapshots, boxing nothing.
                specs.append(known)
                continue
            entries: list[int] = []
            values = [f.locals.get(slot) for slot in range(code_info(f.code).nlocalsplus)]
            values.extend(f.stack)
            boxes = len(out)
            for entry in values:
                if entry is None or (isinstance(entry.ref, Const) and entry.ref.value is NULL):
                    entries.append(resume.NULL_ENTRY)
                    continue
                ref = entry.ref
                if ref.type is not Type.OBJ:
                    # Boxed once per exit (materialize), then shared.
                    r = self.materialize(entry, out, boxed, oom)
                    entries.append((r << 2) | resume.OWNED)
                elif isinstance(ref, Const):
                    entries.append(self.obj_addr(ref.value) | resume.CONST)
                elif not entry.owned:
                    entries.append((self.reg(ref) << 2) | resume.BORROWED)
                else:
                    entries.append((self.reg(ref) << 2) | resume.OWNED)
            func = f.func.value if isinstance(f.func, Const) else None
            if func is None:
                raise NotImplementedError("inlined frame without a constant function")
            self.obj_addr(func)  # held weakly with the trace's other objects
            self.obj_addr(f.code)
            spec = resume.FrameSpec(func, f.code, f.pc, f.argc, entries,
                                    self.data(entries) if entries else 0)
            if len(out) == boxes:
                self.frame_entries[id(f)] = spec
            specs.append(spec)
        return resume.make_chain(specs, exc, self.data)

    def lower(self) -> Lowered:
        label_op: Op | None = None
        loop_label = Label("loop")
        self.coalesce_carried()
        self.plan_fusions()
        self.plan_arg_blocks()
        iterations = ctypes.c_uint64()
        for op in self.trace.ops:
            if op.name == "label":
                label_op = op
                params = [self.reg(p) for p in op.params]
                self.parallel_copy(params, [self.reg(a) for a in op.args])
                self.body.append(loop_label)
                self.current_pc = None
                self.body.append(MachineInstr("exit_count", (ctypes.addressof(iterations),)))
            elif op.name == "jump":
                assert label_op is not None
                self.parallel_copy([self.reg(p) for p in label_op.params],
                                   [self.reg(a) for a in op.args])
                self.body.append(MachineInstr("jump", (), target=loop_label))
            else:
                self.lower_op(op)
        counters = (ctypes.c_uint64 * max(1, len(self.stubs)))()
        exits: list[ExitInfo] = []
        stub_code: list[MachineInstr | Label] = []
        # Exit stubs never run together: they share scratch registers above
        # the body's (values and int or float constants they use are
        # allocated first; object constants are written from the descriptor).
        regs, reg, const_objs = self.regs, self.reg, self.const_objs
        seen: set[int] = set()  # snapshots and inlined frames are shared
        for _label, snap, _error, _opname in self.stubs:
            if id(snap) in seen:
                continue
            seen.add(id(snap))
            refs = [e.ref for e in snap.stack]
            refs += [e.ref for e in snap.locals.values()]
            for f in snap.frames:
                if id(f) not in seen:
                    seen.add(id(f))
                    refs += f.refs()
            for ref in refs:
                if isinstance(ref, Value):
                    if ref.id not in regs:
                        reg(ref)
                elif id(ref) not in const_objs and (ref.type is Type.INT
                                                    or ref.type is Type.FLOAT):
                    reg(ref)
        scratch = self.nregs
        top = scratch
        for index, (label, snap, error, _opname) in enumerate(self.stubs):
            self.nregs = scratch
            stub_code.extend(self.lower_stub(index, label, snap, error, counters))
            top = max(top, self.nregs)
        self.nregs = top
        for index, (_label, snap, error, op) in enumerate(self.stubs):
            inline = bool(snap.frames)
            # An exit inside inlined calls fails at the trace's CALL when the
            # callee raises.
            name = str(op.attrs["name"]) if op.name == "guard_global" and not error else None
            exits.append(ExitInfo(index, snap.pc, error or inline, op.name, snap.entry,
                                  inline, snap.frames[-1].code if inline else None, name))
        code = self.prologue + self.body + stub_code
        return Lowered(code, max(self.nregs, 1), exits, counters, iterations, self.keepalive,
                       self.cells, self.retired, self.inlined_codes())


def lower_trace(trace: Trace, nlocalsplus: int, base: int,
                code: types.CodeType | None = None, out_of_line: bool = False) -> Lowered:
    """`code`: the trace's own code object (needed when calls were inlined);
    `out_of_line`: a huge function's trace (see _OUT_OF_LINE)."""
    return CodeGen(trace, nlocalsplus, base, code, out_of_line).lower()


def _utf8_codec_call(op: Op) -> object | None:
    """str.encode or bytes.decode for a call_nocode of one with a constant
    utf-8 codec name as its only argument, else None."""
    fn = op.args[0].value if isinstance(op.args[0], Const) else None
    if (fn is str.encode or fn is bytes.decode) and len(op.args) == 3:
        arg = op.args[2]
        if isinstance(arg, Const) and type(arg.value) is str and arg.value in UTF8_CODECS:
            return fn
    return None


def _constant_args(op: Op) -> tuple[Const, ...]:
    """A call_nocode's arguments after self when they are all object
    constants (passed from the trace's data by the _c call ops), else ()."""
    consts = tuple(a for a in op.args[2:] if isinstance(a, Const) and a.type is Type.OBJ
                   and a.value is not NULL)
    return consts if len(consts) == len(op.args) - 2 else ()


@dataclass(frozen=True, slots=True)
class _CallForm:
    """How a call op is lowered: the machine op, its C function (0 if none),
    and where its arguments come from besides plain registers: a block of
    consecutive registers (`block`: the callable or self first) or the
    trace's data (`consts`, the arguments after self)."""
    machine: str
    meth: int = 0
    block: Sequence[Ref] = ()
    consts: tuple[Const, ...] = ()


def _call_form(op: Op) -> _CallForm | None:
    """How IR call op `op` (or an op building a tuple, list, str or dict
    from a block of items) is lowered, or None if it is neither."""
    if op.name == "call_kw":
        return _CallForm("call_vector_kw", block=op.args)  # the callable, then the arguments
    if op.name in ("build_tuple", "build_list", "build_string", "build_const_key_map"):
        return _CallForm(op.name, block=op.args)  # the items
    if op.name != "call" and op.name != "call_nocode":
        return None
    if op.name == "call_nocode":
        # str.encode / bytes.decode with the utf-8 codec (exact self, see
        # call_nocode): the C function that codec's fast path calls
        codec = _utf8_codec_call(op)
        if codec is str.encode:
            return _CallForm("call_unary", _pyapi_address("PyUnicode_AsUTF8String"))
        if codec is not None:
            return _CallForm("bytes_decode_utf8")
        if const_replace(op) is not None:
            return _CallForm("call_meth_fastkw_c", runtime_address("tj_str_replace"),
                             consts=_constant_args(op))
        # self is proven an exact instance of the descriptor's class
        # (call_nocode's contract): call its C function as CPython's
        # specialized CALL_METHOD_DESCRIPTOR_* do.
        direct = _direct_method(op)
        if direct is not None:
            machine, meth = direct
            if machine == "call_meth_o" or machine == "call_meth_noargs":
                return _CallForm(machine, meth)
            consts = _constant_args(op)
            if consts:
                return _CallForm(machine + "_c", meth, consts=consts)
            return _CallForm(machine, meth, block=op.args[1:])  # self, then the arguments
    fn = op.args[0].value if isinstance(op.args[0], Const) else None
    call_py = registered_address("tj_call_py")
    if type(fn) is types.FunctionType and call_py is not None:
        # a Python function: its compiled function trace runs directly
        return _CallForm("call_py", call_py, block=op.args)
    return _CallForm("call_vector", block=op.args)  # the callable, then the arguments


# Calling conventions of method descriptors called directly (ml_flags values;
# METH_METHOD, METH_VARARGS and the rest go through vectorcall).
_METH_O, _METH_NOARGS, _METH_FASTCALL, _METH_FASTCALL_KEYWORDS = 0x0008, 0x0004, 0x0080, 0x0082


def _direct_method(op: Op) -> tuple[str, int] | None:
    """The machine op and C function for a call_nocode of a method
    descriptor with a calling convention called directly, else None."""
    fn = op.args[0].value if isinstance(op.args[0], Const) else None
    if type(fn) is not METHOD_DESCRIPTOR or len(op.args) < 2:
        return None
    meth, flags = method_entry(fn)
    flags &= ~0x0040  # METH_COEXIST only decides which slot wins at class creation
    nargs = len(op.args) - 2
    if flags == _METH_O and nargs == 1:
        return "call_meth_o", meth
    if flags == _METH_NOARGS and nargs == 0:
        return "call_meth_noargs", meth
    if flags == _METH_FASTCALL:
        return "call_meth_fast", meth
    if flags == _METH_FASTCALL_KEYWORDS:
        return "call_meth_fastkw", meth
    return None
