"""Reading a running frame's value stack from Python (used while recording).

CPython 3.13 keeps a frame's locals and value stack in ``localsplus`` of its
``_PyInterpreterFrame``; a frame object points at it.  The offsets come from
the stencil build (``offsetof`` on the real headers), so they follow the
headers the stencils were compiled against.
"""

from __future__ import annotations

import ctypes
import types

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.layout import LAYOUT

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_F_FRAME = LAYOUT["PyFrameObject.f_frame"]
_STACKTOP = LAYOUT["_PyInterpreterFrame.stacktop"]
_LOCALSPLUS = LAYOUT["_PyInterpreterFrame.localsplus"]
_INSTR_PTR = LAYOUT["_PyInterpreterFrame.instr_ptr"]
_OWNER = LAYOUT["_PyInterpreterFrame.owner"]

_ptr = ctypes.c_void_p
_int = ctypes.c_int
_obj = ctypes.py_object


def interpreter_frame(frame: types.FrameType) -> int:
    """Address of the frame object's ``_PyInterpreterFrame``."""
    addr = _ptr.from_address(id(frame) + _F_FRAME).value
    assert addr
    return addr


def running(frame: types.FrameType) -> bool:
    """Whether the frame still runs on its thread's stack (once it returned or
    unwound, its frame object owns a copy of it)."""
    return ctypes.c_uint8.from_address(interpreter_frame(frame) + _OWNER).value == 0


def stack_depth(frame: types.FrameType, nlocalsplus: int) -> int:
    """Number of items on the value stack (valid inside a monitoring callback)."""
    iframe = interpreter_frame(frame)
    return _int.from_address(iframe + _STACKTOP).value - nlocalsplus


_MISSING = object()


def slot_object(frame: types.FrameType, slot: int) -> object:
    """The object in localsplus[slot] (a new reference), or _MISSING for NULL."""
    return _read(interpreter_frame(frame) + _LOCALSPLUS + 8 * slot)


def _read(address: int) -> object:
    """The object a PyObject * at `address` points to, or _MISSING for NULL
    (one ctypes read: py_object refuses NULL; ctypes.cast costs 8x more)."""
    try:
        return _obj.from_address(address).value
    except ValueError:
        return _MISSING


def stack_items(frame: types.FrameType, nlocalsplus: int, count: int,
                depth: int | None = None) -> list[object]:
    """The top `count` stack items, bottom first; _MISSING marks NULL entries.

    ``stacktop`` is only saved for some events (JUMP, not INSTRUCTION in
    3.13.0), so callers that know the depth pass it."""
    iframe = interpreter_frame(frame)
    if depth is None:
        top = _int.from_address(iframe + _STACKTOP).value
    else:
        top = nlocalsplus + depth
    base = iframe + _LOCALSPLUS
    return [_read(base + 8 * slot) for slot in range(top - count, top)]


MISSING = _MISSING

