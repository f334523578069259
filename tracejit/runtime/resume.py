"""Resume objects: how an exit inside an inlined callee rebuilds its frame.

An inlined callee has no interpreter frame while native code runs.  When the
trace leaves inside it, the exit stub makes a *resume object* (stencil
``resume_new``) holding the callee's function, code, locals and value stack
and where it continues, writes the caller's frame back as if its CALL were
about to run with the resume object as the callable, and returns to the
interpreter at that CALL.  Calling the resume object (``tj_resume_call`` in
ops.c) pushes the callee's frame, fills it and runs it with
``_PyEval_EvalFrameDefault``; the CALL then sees the callee's return value or
exception, so tracebacks, ``sys._getframe()`` and handlers are CPython's own.
An exception raised by native code inside the callee is carried by the resume
object and raised at the failing instruction (traceback entry, the callee's
own handler if it has one).

The type is created once per process from the runtime functions of the
stencil table (``PyType_FromSpec`` through ctypes); this module also builds
the per-exit descriptors (``tj_resume_desc``) the stencil reads.
"""

from __future__ import annotations

import ctypes
import types
from collections.abc import Callable
from dataclasses import dataclass

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.runtime.dispatch import unwind_word as unwind_word_of

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_Py_tp_call = 50
_Py_tp_dealloc = 52
_Py_TPFLAGS_DEFAULT = 1 << 18
_Py_TPFLAGS_DISALLOW_INSTANTIATION = 1 << 7


class _Slot(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]


class _Spec(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("basicsize", ctypes.c_int),
                ("itemsize", ctypes.c_int), ("flags", ctypes.c_uint),
                ("slots", ctypes.POINTER(_Slot))]


# Entry kinds of tj_frame_desc: (register << 2) | kind, or a constant's
# address | CONST (objects are aligned).
NULL_ENTRY = 0
BORROWED = 1
OWNED = 2
CONST = 3


# The message of the RecursionError a resumed frame waiting for an inner one
# raises (as CPython's _Py_CheckRecursiveCallPy): alive as long as the module.
_RECURSION_MSG = "maximum recursion depth exceeded"
_TYPE: type | None = None
_KEEP: list[object] = []


def resume_type() -> type:
    """The resume type (created on first use)."""
    global _TYPE
    if _TYPE is not None:
        return _TYPE
    from tracejit.backend.assembler import load_function

    call = load_function("tj_resume_call", ())
    dealloc = load_function("tj_resume_dealloc", ())
    sizer = load_function("tj_resume_basicsize", ())
    basicsize = ctypes.CFUNCTYPE(ctypes.c_int64)(sizer.address)()
    slots = (_Slot * 3)(_Slot(_Py_tp_call, call.address),
                        _Slot(_Py_tp_dealloc, dealloc.address), _Slot(0, None))
    name = b"tracejit.resume"
    spec = _Spec(name, basicsize, ctypes.sizeof(ctypes.c_void_p),
                 _Py_TPFLAGS_DEFAULT | _Py_TPFLAGS_DISALLOW_INSTANTIATION, slots)
    from_spec = ctypes.pythonapi.PyType_FromSpec
    from_spec.restype = ctypes.py_object
    from_spec.argtypes = [ctypes.c_void_p]
    tp = from_spec(ctypes.addressof(spec))
    assert isinstance(tp, type)
    _KEEP.extend([call, dealloc, sizer, slots, name, spec])
    _TYPE = tp
    return tp


def unwind_word(code: types.CodeType, pc: int) -> int:
    """The packed exception-table entry (TJ_UNWIND_*) covering code unit `pc`
    of `code`, or 0 when the exception leaves the function."""
    from tracejit.runtime.cache import handler_at

    handler = handler_at(code, pc * 2)
    if handler is None:
        return 0
    _, _, target, depth, lasti = handler
    return unwind_word_of(target, depth, lasti, -1)  # RAISE: the descriptor's raise_at


def call_site(code: types.CodeType, pc: int) -> tuple[int, int]:
    """The CALL instruction that starts at code unit `pc` (after any
    EXTENDED_ARG prefix) and the instruction after it, in code units."""
    from tracejit.recorder.record import code_info

    instrs = code_info(code).instrs
    ins = instrs[pc * 2]
    while ins.opname == "EXTENDED_ARG":
        ins = instrs[ins.next_offset]
    return ins.offset // 2, ins.next_offset // 2


def last_unit(code: types.CodeType, pc: int) -> int:
    """The last code unit (inline caches included) of the instruction at `pc`:
    where a RAISE event reports an exception raised there in place."""
    from tracejit.recorder.record import code_info

    instrs = code_info(code).instrs
    ins = instrs.get(pc * 2)
    while ins is not None and ins.opname == "EXTENDED_ARG":
        ins = instrs.get(ins.next_offset)
    return pc if ins is None else ins.next_offset // 2 - 1


@dataclass(slots=True)
class FrameSpec:
    """One inlined frame of an exit, for make_chain."""

    func: object
    code: types.CodeType
    pc: int
    argc: int
    entries: list[int]  # (register << 2) | kind
    entries_at: int  # where they are (in the trace's descriptor memory), 0 if none


def make_chain(frames: list[FrameSpec], exc_reg: int, alloc: Callable[[list[int]], int]) -> int:
    """A ``tj_chain_desc`` for the frames (outermost first), its words placed
    by `alloc` (which returns where, and keeps them alive with the trace);
    `exc_reg` holds the exception raised in the innermost one (error exit) or
    is -1.  Returns its address.  The functions and code objects are not
    kept: the trace holds them weakly (as every object its machine code refers
    to) and is taken out of use when one dies.  The words follow
    ``tj_chain_desc`` (type, exc_reg, recursion_msg, nframes) and, per frame,
    ``tj_frame_desc`` (func, code, pc, unwind, argc, n, entries, raise_at,
    next_pc), all 64-bit."""
    n = len(frames)
    words = [id(resume_type()), exc_reg & _MASK64, id(_RECURSION_MSG), n]
    for i, f in enumerate(frames):
        entries = f.entries_at
        if i < n - 1:
            # Waits at its CALL for the inner frame; a Python callee's exception
            # is reported one unit before the CALL, handled at the CALL.
            pc, next_pc = call_site(f.code, f.pc)
            words += [id(f.func), id(f.code), pc, unwind_word(f.code, pc), f.argc,
                      len(f.entries), entries, (pc - 1) & _MASK64, next_pc]
            continue
        error = exc_reg >= 0
        words += [id(f.func), id(f.code), f.pc, unwind_word(f.code, f.pc) if error else 0,
                  f.argc, len(f.entries), entries, last_unit(f.code, f.pc), 0]
    return alloc(words)


_MASK64 = (1 << 64) - 1


def chain_function() -> int:
    """Address of the runtime function tj_resume_chain."""
    from tracejit.backend.assembler import runtime_address

    return runtime_address("tj_resume_chain")


_VERSION_FN: list[Callable[[type], int]] = []


def type_version(tp: type) -> int:
    """`tp`'s version tag (assigned now if needed; 0 if it cannot have one)."""
    if not _VERSION_FN:
        from tracejit.backend.assembler import runtime_address

        _VERSION_FN.append(ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.py_object)(
            runtime_address("tj_type_version")))
    return int(_VERSION_FN[0](tp))
