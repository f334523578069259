"""Offsets of CPython 3.13 frame fields that the Python side reads.

The stencils see the real structs through the headers; Python code that
reads a frame (the recorder) uses these offsets, and `check_layout` proves
them on a live frame at start-up, so a mismatched interpreter disables the
JIT instead of reading garbage.
"""

from __future__ import annotations

import ctypes
import sys
import types
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

# Offsets read from CPython 3.13.0's Include/internal/pycore_frame.h.
LAYOUT: dict[str, int] = {
    "PyFrameObject.f_frame": 24,
    "_PyInterpreterFrame.f_executable": 0,
    "_PyInterpreterFrame.instr_ptr": 56,
    "_PyInterpreterFrame.stacktop": 64,
    "_PyInterpreterFrame.owner": 70,  # FRAME_OWNED_BY_THREAD (0) while it runs
    "_PyInterpreterFrame.localsplus": 72,
    # Include/cpython/funcobject.h and classobject.h (inlined calls).
    "PyFunctionObject.func_code": 48,
    "PyFunctionObject.func_defaults": 56,
    "PyMethodObject.im_func": 16,
    "PyMethodObject.im_self": 24,
    # Include/cpython/cellobject.h (closure variables).
    "PyCellObject.ob_ref": 16,
    # Include/cpython/methodobject.h and descrobject.h (bound builtin methods).
    "PyCFunctionObject.m_ml": 16,
    "PyCFunctionObject.m_self": 24,
    "PyMethodDescrObject.d_method": 40,
    # Include/methodobject.h (direct calls of method descriptors).
    "PyMethodDef.ml_meth": 8,
    "PyMethodDef.ml_flags": 16,
    # Include/cpython/dictobject.h and internal/pycore_dict.h (a dict's key kind).
    "PyDictObject.ma_keys": 32,
    "PyDictKeysObject.dk_kind": 10,
}

DICT_KEYS_GENERAL = 0  # pycore_dict.h: keys of any type (lookups may call __eq__)


METHOD_DESCRIPTOR: type = type(str.replace)  # str.replace, list.append, ...
TPFLAGS_HEAPTYPE = 1 << 9  # Include/object.h: a class made at run time


def _field(obj: object, name: str) -> int:
    return ctypes.c_void_p.from_address(id(obj) + LAYOUT[name]).value or 0


def method_def(descr: object) -> int:
    """The PyMethodDef address of a method descriptor (list.append): the same
    one every bound method made from it points to (m_ml)."""
    return _field(descr, "PyMethodDescrObject.d_method")


def method_entry(descr: object) -> tuple[int, int]:
    """A method descriptor's C function and calling-convention flags (the
    descriptor keeps its PyMethodDef alive: it is static in the type)."""
    mdef = method_def(descr)
    meth = ctypes.c_void_p.from_address(mdef + LAYOUT["PyMethodDef.ml_meth"]).value or 0
    flags = ctypes.c_int.from_address(mdef + LAYOUT["PyMethodDef.ml_flags"]).value
    return meth, flags


def bound_method_def(method: object) -> int:
    """The PyMethodDef address of a builtin method object ([].append)."""
    return _field(method, "PyCFunctionObject.m_ml")


def dict_has_str_keys(d: dict[Any, Any]) -> bool:
    """Whether an exact dict's key table is of a str-only kind (unicode or
    split): a lookup by an int, float or str key then compares it with str keys
    only, never calling Python code (a general table may hold a key whose
    __eq__ is Python code)."""
    keys = _field(d, "PyDictObject.ma_keys")
    return ctypes.c_uint8.from_address(keys + LAYOUT["PyDictKeysObject.dk_kind"]).value \
        != DICT_KEYS_GENERAL


def _probe_objects() -> bool:
    def f(a: object = None) -> object:
        return a

    class C:
        def m(self) -> None:
            pass

    c = C()
    m: Any = c.m
    items: list[object] = []
    bm: Any = items.append
    return (_field(bm, "PyCFunctionObject.m_self") == id(items)
            and _field(bm, "PyCFunctionObject.m_ml")
            == _field(list.append, "PyMethodDescrObject.d_method") != 0
            and method_entry(list.append)[1] == 0x0008  # METH_O
            and method_entry(str.replace)[1] == 0x0082  # METH_FASTCALL | METH_KEYWORDS
            and method_entry(list.append)[0] != 0
            and _field(f, "PyFunctionObject.func_code") == id(f.__code__)
            and _field(f, "PyFunctionObject.func_defaults") == id(f.__defaults__)
            and _field(m, "PyMethodObject.im_func") == id(m.__func__)
            and _field(m, "PyMethodObject.im_self") == id(c)
            and _field(types.CellType(c), "PyCellObject.ob_ref") == id(c)
            and dict_has_str_keys({"a": 1}) and dict_has_str_keys(c.__dict__)
            and not dict_has_str_keys({1: 1}) and not dict_has_str_keys({"a": 1, 2: 2}))


def _probe(a: object, b: object) -> tuple[int, int, int]:
    frame = sys._getframe()
    iframe = ctypes.c_void_p.from_address(id(frame) + LAYOUT["PyFrameObject.f_frame"]).value
    assert iframe is not None
    code = ctypes.c_void_p.from_address(iframe + LAYOUT["_PyInterpreterFrame.f_executable"])
    first = ctypes.c_void_p.from_address(iframe + LAYOUT["_PyInterpreterFrame.localsplus"])
    second = ctypes.c_void_p.from_address(iframe + LAYOUT["_PyInterpreterFrame.localsplus"] + 8)
    return (code.value or 0), (first.value or 0), (second.value or 0)


def _frame_owner(frame: types.FrameType) -> int:
    iframe = ctypes.c_void_p.from_address(id(frame) + LAYOUT["PyFrameObject.f_frame"]).value
    assert iframe is not None
    return ctypes.c_uint8.from_address(iframe + LAYOUT["_PyInterpreterFrame.owner"]).value


def _probe_owner() -> tuple[int, int]:
    """A frame's owner while it runs and after it returned (then its frame
    object owns a copy: FRAME_OWNED_BY_FRAME_OBJECT, 2)."""
    def running() -> tuple[types.FrameType, int]:
        frame = sys._getframe()
        return frame, _frame_owner(frame)

    frame, during = running()
    return during, _frame_owner(frame)


def check_layout() -> str:
    """'' when the offsets match this interpreter, else what is wrong."""
    a, b = object(), object()
    try:
        code, first, second = _probe(a, b)
    except Exception as exc:  # pragma: no cover - only on a foreign interpreter
        return f"frame layout probe failed: {exc}"
    if code != id(_probe.__code__) or first != id(a) or second != id(b):
        return "this interpreter's frame layout differs from CPython 3.13's"
    if _probe_owner() != (0, 2):
        return "this interpreter's frame ownership differs from CPython 3.13's"
    if not _probe_objects():
        return "this interpreter's function or method layout differs from CPython 3.13's"
    return ""
