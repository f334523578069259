"""Helpers for the backend tests: frame inspection and small trace builders."""

from __future__ import annotations

import ctypes
import types
from collections.abc import Callable, Sequence

import pytest

from tracejit.backend import AVAILABLE, UNAVAILABLE_REASON

requires_backend = pytest.mark.skipif(not AVAILABLE, reason=UNAVAILABLE_REASON)

if AVAILABLE:
    from tracejit.backend.assembler import CompiledCode, Label, MachineInstr, assemble
    from tracejit.backend.symbols import address_of
else:  # pragma: no cover
    pass

# CPython 3.13 layout, only to *observe* frames from tests (the stencils use
# the real headers). Each is cross-checked in frame_of() below.
_F_FRAME = 24  # PyFrameObject.f_frame
_F_EXECUTABLE = 0  # _PyInterpreterFrame.f_executable
_INSTR_PTR = 56
_STACKTOP = 64
_LOCALSPLUS = 72


def interp_frame(frame: types.FrameType) -> int:
    """Address of the _PyInterpreterFrame of a frame object (layout checked)."""
    addr = ctypes.c_void_p.from_address(id(frame) + _F_FRAME).value
    assert addr is not None
    executable = ctypes.c_void_p.from_address(addr + _F_EXECUTABLE).value
    assert executable == id(frame.f_code), "PyFrameObject/_PyInterpreterFrame layout changed"
    return addr


def stacktop(frame: types.FrameType) -> int:
    return ctypes.c_int.from_address(interp_frame(frame) + _STACKTOP).value


def set_stacktop(frame: types.FrameType, value: int) -> None:
    ctypes.c_int.from_address(interp_frame(frame) + _STACKTOP).value = value


def local_address(frame: types.FrameType, slot: int) -> int:
    return ctypes.c_void_p.from_address(interp_frame(frame) + _LOCALSPLUS + 8 * slot).value or 0


def slot(fn: Callable[..., object] | types.CodeType, name: str) -> int:
    """localsplus index of a plain local (no cells) of a function."""
    code = fn if isinstance(fn, types.CodeType) else fn.__code__
    assert isinstance(code, types.CodeType)
    assert not code.co_cellvars and not code.co_freevars
    return code.co_varnames.index(name)


def finish(code: int) -> MachineInstr:
    """Placeholder exit_finish that ``run`` completes to "leave the frame as is".

    The trace runs while its frame executes the CALL of ``run``: instr_ptr
    points at that CALL, so ``run`` fills in ``f_lasti // 2`` (code units) and
    the frame's current raw stacktop, and the interpreter continues cleanly.
    """
    return MachineInstr("exit_finish", (-1, -1, code))


def complete(
    frame: types.FrameType, code: Sequence[MachineInstr | Label]
) -> list[MachineInstr | Label]:
    here = (frame.f_lasti // 2, stacktop(frame))
    out: list[MachineInstr | Label] = []
    for item in code:
        if (
            isinstance(item, MachineInstr)
            and item.op == "exit_finish"
            and item.operands[:2]
            == (
                -1,
                -1,
            )
        ):
            item = MachineInstr("exit_finish", (*here, item.operands[2]))
        out.append(item)
    return out


def run(frame: types.FrameType, code: Sequence[MachineInstr | Label], nregs: int = 32) -> int:
    """Assemble, run on ``frame`` (the caller's frame), free; returns the trace's int."""
    before = stacktop(frame)
    compiled: CompiledCode = assemble(complete(frame, code), nregs)
    try:
        return compiled.entry(frame)
    finally:
        compiled.free()
        assert stacktop(frame) == before


def fn_address(name: str) -> int:
    return address_of(name)
