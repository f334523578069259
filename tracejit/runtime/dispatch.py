"""The native dispatcher's data: ctypes mirrors of ``tj_state``, ``tj_trace``
and ``tj_slot`` (tracejit/backend/stencils/ops.c), the entry table, and the
builtin function object registered as the monitoring callback.

The dispatcher (``tj_dispatch``) looks up ``(code, offset)`` in an
open-addressing table; a hit runs the trace on the calling frame and follows
exit links from trace to trace without returning to the interpreter.  The
table is rebuilt from Python when it grows or a code object dies (its slots
hold bare code pointers, so they must go before the address can be reused).
``tj_state.depth`` counts traces running now: machine code and ``tj_trace``
structs taken out of use are freed only when it is zero.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.assembler import RuntimeFunction, load_function, register_address

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
        ("inlined", _ptr),
        ("pure", _u64),
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
        ("depth", _u64),
        ("direct_calls", _u64),
        ("impure", _u64),
    ]


NEVER = (1 << 64) - 1  # hot_at value of an exit that never calls back
HELD_BIT = 2  # tj_state.busy: the JIT's lock is held (Dispatcher.held)


def unwind_word(target: int, depth: int, lasti: bool, raise_delta: int) -> int:
    """An exception-table entry packed as tj_unwind reads it (TJ_UNWIND_*).
    ``raise_delta``: the code unit a RAISE event reports, relative to the
    failing instruction's start (-1 .. 8190)."""
    assert -1 <= raise_delta < (1 << 13) - 1
    return (target | (depth << 32) | (int(lasti) << 48) | ((raise_delta + 1) << 49)
            | (1 << 63))


class NativeTrace:
    """The dispatcher's view of one compiled trace: its struct and per-exit arrays."""

    def __init__(self, entry: int, counters: ctypes.Array[ctypes.c_uint64], nexits: int,
                 handle: int, inlined: int = 0, pure: bool = False) -> None:
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
            inlined=inlined or None,  # the inlined calls' codes (NULL-terminated)
            pure=int(pure),
        )

    @property
    def address(self) -> int:
        return ctypes.addressof(self.struct)

    @property
    def entries(self) -> int:
        return int(self.struct.entries)

    def set_handler(self, exit_index: int, target: int, depth: int, lasti: bool,
                    raise_delta: int = 0) -> None:
        """Error exit `exit_index` unwinds to this exception-table entry."""
        self.unwind[exit_index] = unwind_word(target, depth, lasti, raise_delta)

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

    def __init__(self, fallback: Callable[..., Any], on_exit: Callable[..., Any],
                 on_instruction: Callable[..., Any]) -> None:
        self.state = TJState()
        self.fallback = fallback
        self.on_exit = on_exit
        self.on_instruction = on_instruction
        self.state.fallback = id(fallback)
        self.state.on_exit = id(on_exit)
        # (id(code), offset) -> (root trace or None while counting, slot index).
        # The runtime calls forget_code() when a code object dies.
        self.entries: dict[tuple[int, int], tuple[NativeTrace | None, int]] = {}
        self._offsets: dict[int, set[int]] = {}  # id(code) -> offsets in entries
        self._table: ctypes.Array[TJSlot] = (TJSlot * 8)()
        self.state.table = ctypes.addressof(self._table)
        self.state.mask = 7
        self.function: RuntimeFunction = load_function(
            "tj_dispatch", (ctypes.addressof(self.state),))
        # How traces call Python functions (machine op call_py): it looks the
        # callee's function trace up in this table.
        self.call_py: RuntimeFunction = load_function(
            "tj_call_py", (ctypes.addressof(self.state),))
        register_address("tj_call_py", self.call_py.address)
        register_address("tj_state.impure",
                         ctypes.addressof(self.state) + TJState.impure.offset)
        self._def = _MethodDef(b"tracejit_dispatch", self.function.address, _METH_FASTCALL,
                               b"tracejit's native dispatcher")
        self.callback: Any = _new_cfunction(ctypes.addressof(self._def), None, None)
        # INSTRUCTION events reach on_instruction through C that skips them near
        # the program's recursion limit (a Python callback cannot catch the
        # RecursionError of its own call).
        self.instruction_function: RuntimeFunction = load_function(
            "tj_instruction", (id(on_instruction),))
        self._instruction_def = _MethodDef(
            b"tracejit_instruction", self.instruction_function.address, _METH_FASTCALL,
            b"tracejit's recording callback")
        self.instruction_callback: Any = _new_cfunction(
            ctypes.addressof(self._instruction_def), None, None)
        # The interpreter may call the callback until it finalizes, after the
        # runtime's modules are torn down: the state, table, method definition
        # and code it reads must never be freed.  One per process.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self))

    # tj_state.busy sends every event to the fallback: bit 0 while a recording
    # runs, bit 1 while some thread runs the JIT's Python code (hooks.JitLock).
    @property
    def busy(self) -> bool:
        return self._bit(1)

    @busy.setter
    def busy(self, value: bool) -> None:
        self._set_bit(1, value)

    @property
    def held(self) -> bool:
        return self._bit(HELD_BIT)

    @held.setter
    def held(self, value: bool) -> None:
        self._set_bit(HELD_BIT, value)

    def _bit(self, bit: int) -> bool:
        return bool(self.state.busy & bit)

    def _set_bit(self, bit: int, value: bool) -> None:
        self.state.busy = (self.state.busy & ~bit) | (bit if value else 0)

    def add(self, code: object, offset: int, trace: NativeTrace) -> None:
        """Run `trace` at this location from now on."""
        i = self._slot(code, offset)
        self._table[i].trace = trace.address
        self._table[i].countdown = 0
        self.entries[(id(code), offset)] = (trace, i)

    def drop(self, code_id: int, offset: int) -> None:
        """Stop running the root trace at this location (it counts again)."""
        hit = self.entries.get((code_id, offset))
        if hit is not None:
            self._table[hit[1]].trace = None
            self._table[hit[1]].countdown = 0
            self.entries[(code_id, offset)] = (None, hit[1])

    def forget_code(self, code_id: int) -> None:
        """Remove every slot of a code object that is being deallocated."""
        for offset in self._offsets.pop(code_id, ()):
            _, i = self.entries.pop((code_id, offset))
            self._delete(i)
        size = len(self._table)
        if size > 64 and 8 * (len(self.entries) + 1) <= size:
            self._rebuild(size // 4)

    def _delete(self, i: int) -> None:
        """Empty slot i, moving later slots of its probe run back (backward-shift
        deletion: linear probing needs no tombstones)."""
        table = self._table
        mask = len(table) - 1
        j = i
        while True:
            table[i].code = None
            table[i].trace = None
            table[i].countdown = 0
            while True:
                j = (j + 1) & mask
                code_j = table[j].code
                if not code_j:
                    return
                k = _hash(code_j, table[j].offset) & mask
                # Slot j moves to i when its home k lies cyclically outside (i, j].
                if (k <= i or k > j) if i < j else (j < k <= i):
                    break
            offset_j = table[j].offset
            table[i].code = code_j
            table[i].offset = offset_j
            table[i].trace = table[j].trace
            table[i].countdown = table[j].countdown
            trace, _ = self.entries[(code_j, offset_j)]
            self.entries[(code_j, offset_j)] = (trace, i)
            i = j

    @property
    def running(self) -> bool:
        """Whether machine code may be on a C stack (some thread runs a trace)."""
        return bool(self.state.depth)

    def count_down(self, code: object, offset: int, events: int) -> None:
        """Let native code absorb the next `events - 1` events at this location
        (counting towards hotness) and pass on the one after."""
        i = self._slot(code, offset)
        self._table[i].countdown = events

    def want(self, code: object, offset: int, calls: int) -> None:
        """Let tj_call_py record a function trace of `code` at its `calls`-th
        direct call (a negative countdown: its PY_START event is disabled)."""
        i = self._slot(code, offset)
        if self._table[i].trace is None and self._table[i].countdown >= 0:
            self._table[i].countdown = -calls

    def clear(self) -> None:
        self.entries.clear()
        self._offsets.clear()
        self._rebuild(8)

    def _slot(self, code: object, offset: int) -> int:
        hit = self.entries.get((id(code), offset))
        if hit is not None:
            return hit[1]
        if 2 * (len(self.entries) + 1) > len(self._table):
            self._rebuild(2 * len(self._table))
        i = self._insert(self._table, id(code), offset)
        self.entries[(id(code), offset)] = (None, i)
        self._offsets.setdefault(id(code), set()).add(offset)
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
        for key, (trace, i) in list(self.entries.items()):
            j = self._insert(table, key[0], key[1])
            table[j].trace = old[i].trace
            table[j].countdown = old[i].countdown
            self.entries[key] = (trace, j)
        # Swap in the new table before the old one can be freed; the GIL is held.
        self._table = table
        self.state.table = ctypes.addressof(table)
        self.state.mask = size - 1
        del old


def _hash(code_id: int, offset: int) -> int:
    return ((code_id >> 4) ^ ((offset * 0x9E3779B97F4A7C15) & NEVER)) & NEVER
