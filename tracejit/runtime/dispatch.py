"""The native dispatcher's data: ctypes mirrors of ``tj_state``, ``tj_trace``
and ``tj_slot`` (tracejit/backend/stencils/ops.c), the entry table, and the
builtin function object registered as the monitoring callback.

The dispatcher (``tj_dispatch``) looks up ``(code, offset)`` in an
open-addressing table; a hit runs the trace on the calling frame and follows
exit links from trace to trace without returning to the interpreter.  The
table is rebuilt from Python whenever a root trace is added or removed (rare);
``tj_trace`` structs are never freed while the JIT is on, because a trace may
be on the C stack when another is added.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.assembler import RuntimeFunction, load_function

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_u64 = ctypes.c_uint64
_ptr = ctypes.c_void_p


class TJTrace(ctypes.Structure):
    _fields_ = [
        ("entry", _ptr),
        ("counters", _ptr),
        ("links", _ptr),
        ("hot_at", _ptr),
        ("unwind", _ptr),
        ("handle", _ptr),
        ("entries", _u64),
    ]


class TJSlot(ctypes.Structure):
    _fields_ = [("code", _ptr), ("offset", ctypes.c_int64), ("trace", _ptr),
                ("countdown", ctypes.c_int64)]


class TJState(ctypes.Structure):
    _fields_ = [
        ("table", _ptr),
        ("mask", _u64),
        ("fallback", _ptr),
        ("on_exit", _ptr),
        ("busy", _u64),
        ("native_entries", _u64),
        ("transfers", _u64),
    ]


NEVER = (1 << 64) - 1  # hot_at value of an exit that never calls back


class NativeTrace:
    """The dispatcher's view of one compiled trace: its struct and per-exit arrays."""

    def __init__(self, entry: int, counters: ctypes.Array[ctypes.c_uint64], nexits: int,
                 handle: object) -> None:
        n = max(nexits, 1)
        self.counters = counters
        self.links = (_ptr * n)()
        self.hot_at = (_u64 * n)(*([NEVER] * n))
        self.unwind = (_u64 * n)()
        self.handle = handle  # kept alive: the struct holds its address
        self.struct = TJTrace(
            entry=entry,
            counters=ctypes.addressof(counters),
            links=ctypes.addressof(self.links),
            hot_at=ctypes.addressof(self.hot_at),
            unwind=ctypes.addressof(self.unwind),
            handle=id(handle),
            entries=0,
        )

    @property
    def address(self) -> int:
        return ctypes.addressof(self.struct)

    @property
    def entries(self) -> int:
        return int(self.struct.entries)

    def set_handler(self, exit_index: int, target: int, depth: int, lasti: bool) -> None:
        """Error exit `exit_index` unwinds to this exception-table entry."""
        self.unwind[exit_index] = (target | (depth << 32) | (int(lasti) << 48) | (1 << 63))

    def link(self, exit_index: int, target: NativeTrace | None) -> None:
        self.links[exit_index] = target.address if target is not None else None


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", _ptr), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


_METH_FASTCALL = 0x0080
_new_cfunction = ctypes.pythonapi.PyCFunction_NewEx
_new_cfunction.restype = ctypes.py_object
_new_cfunction.argtypes = [_ptr, _ptr, _ptr]


class Dispatcher:
    """One per process: the state struct, the table and the callback object."""

    def __init__(self, fallback: Callable[..., Any], on_exit: Callable[..., Any]) -> None:
        self.state = TJState()
        self.fallback = fallback
        self.on_exit = on_exit
        self.state.fallback = id(fallback)
        self.state.on_exit = id(on_exit)
        # (id(code), offset) -> (code, root trace or None while counting, slot index)
        self.entries: dict[tuple[int, int], tuple[object, NativeTrace | None, int]] = {}
        self._table: ctypes.Array[TJSlot] = (TJSlot * 8)()
        self.state.table = ctypes.addressof(self._table)
        self.state.mask = 7
        self.function: RuntimeFunction = load_function(
            "tj_dispatch", (ctypes.addressof(self.state),))
        self._def = _MethodDef(b"tracejit_dispatch", self.function.address, _METH_FASTCALL,
                               b"tracejit's native dispatcher")
        self.callback: Any = _new_cfunction(ctypes.addressof(self._def), None, None)

    @property
    def busy(self) -> bool:
        return bool(self.state.busy)

    @busy.setter
    def busy(self, value: bool) -> None:
        self.state.busy = 1 if value else 0

    def add(self, code: object, offset: int, trace: NativeTrace) -> None:
        """Run `trace` at this location from now on."""
        i = self._slot(code, offset)
        self._table[i].trace = trace.address
        self._table[i].countdown = 0
        self.entries[(id(code), offset)] = (code, trace, i)

    def remove(self, code: object, offset: int) -> None:
        """Stop running a trace at this location (the slot counts again)."""
        hit = self.entries.get((id(code), offset))
        if hit is None:
            return
        self._table[hit[2]].trace = None
        self._table[hit[2]].countdown = 0
        self.entries[(id(code), offset)] = (code, None, hit[2])

    def count_down(self, code: object, offset: int, events: int) -> None:
        """Let native code absorb the next `events - 1` events at this location
        (counting towards hotness) and pass on the one after."""
        i = self._slot(code, offset)
        self._table[i].countdown = events

    def clear(self) -> None:
        self.entries.clear()
        self._rebuild(8)

    def _slot(self, code: object, offset: int) -> int:
        hit = self.entries.get((id(code), offset))
        if hit is not None:
            return hit[2]
        if 2 * (len(self.entries) + 1) > len(self._table):
            self._rebuild(2 * len(self._table))
        i = self._insert(self._table, id(code), offset)
        self.entries[(id(code), offset)] = (code, None, i)
        return i

    @staticmethod
    def _insert(table: ctypes.Array[TJSlot], code_id: int, offset: int) -> int:
        mask = len(table) - 1
        i = _hash(code_id, offset) & mask
        while table[i].code:
            i = (i + 1) & mask
        table[i].code = code_id
        table[i].offset = offset
        return i

    def _rebuild(self, size: int) -> None:
        table = (TJSlot * size)()
        old = self._table
        for key, (code, trace, i) in list(self.entries.items()):
            j = self._insert(table, key[0], key[1])
            table[j].trace = old[i].trace
            table[j].countdown = old[i].countdown
            self.entries[key] = (code, trace, j)
        # Swap in the new table before the old one can be freed; the GIL is held.
        self._table = table
        self.state.table = ctypes.addressof(table)
        self.state.mask = size - 1
        del old


def _hash(code_id: int, offset: int) -> int:
    return ((code_id >> 4) ^ ((offset * 0x9E3779B97F4A7C15) & NEVER)) & NEVER
