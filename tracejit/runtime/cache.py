"""The code cache: compiled traces and the graph they form.

A *root* trace starts where the dispatcher enters native code: a loop header
(a back-edge's target) or a function's RESUME (PY_START).  A *bridge* starts
at one exit of another trace and is reached only through that exit's link.
An exit that ends a trace at a back-edge or at another root's start links to
that root (now, or as soon as it is compiled: pending links).  Everything is
keyed by ``id(code)``: hashing a code object walks its bytecode and constants,
far too slow for every back-edge of a huge function.  Code objects are held
weakly (a trace must not keep a dead function's code alive); the runtime
drops everything keyed by a code's id from the code's weakref callback, which
runs before the id can be reused.
"""

from __future__ import annotations

import dis
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.assembler import CompiledCode
from tracejit.backend.codegen import Lowered
from tracejit.ir.trace import Trace
from tracejit.recorder.percode import PerCode
from tracejit.recorder.record import End, EntryTypes
from tracejit.runtime.dispatch import NEVER, NativeTrace

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


@dataclass(slots=True, eq=False)
class CompiledTrace:
    kind: str  # "loop", "function" (roots) or "bridge"
    code_ref: weakref.ReferenceType[types.CodeType]
    code_id: int
    key: int  # bytes: the dispatcher's offset for roots, the start pc for bridges
    start: int  # bytes: first instruction
    trace: Trace
    lowered: Lowered
    compiled: CompiledCode
    native: NativeTrace
    end: End | None
    parent: tuple[CompiledTrace, int] | None = None
    # Roots: the types the entry guards want in the frame's slots.
    entry_types: EntryTypes = ()
    # Instructions recorded (inlined callees' included).
    records: int = 0
    # Trace.pure of a function trace.
    pure: bool = False
    # Some root the dispatcher may enter a chain reaching this trace at lies
    # in a try block's range (see unwinds_exactly).
    root_in_handler: bool = False
    # Whether every error exit has a handler in the function (computed once).
    errors_handled: bool | None = None
    # Traces this one's exits lead to (bridges and links).
    successors: list[CompiledTrace] = field(default_factory=list)
    bridges: int = 0
    failed_bridges: dict[int, int] = field(default_factory=dict)
    # Eviction (roots): entries of the tree at the last sweep, and that sweep.
    seen_entries: int = -1
    last_used: int = 0
    # Weak references to the objects the machine code refers to (see hooks).
    weak: list[weakref.ReferenceType[Any]] = field(default_factory=list)

    @property
    def code(self) -> types.CodeType:
        code = self.code_ref()
        if code is None:
            raise RuntimeError(f"the code of trace {self.trace.name} is gone")
        return code

    @property
    def root(self) -> CompiledTrace:
        t = self
        while t.parent is not None:
            t = t.parent[0]
        return t

    @property
    def size(self) -> int:
        return self.compiled.size

    @property
    def entries(self) -> int:
        return self.native.entries

    def end_exit(self) -> int | None:
        """Index of the exit the trace ends with (an `exit` op), if any."""
        for info in reversed(self.lowered.exits):
            if info.op == "exit":
                return info.index
        return None

    def free(self) -> None:
        self.compiled.free()

    def drop_ir(self) -> None:
        """Forget the IR and machine-op list once the code is mapped: a huge
        function grows hundreds of traces, and thousands of live IR objects
        each make every full garbage collection of the program slower."""
        self.trace = Trace(self.trace.name)  # constants live in lowered.keepalive
        self.lowered.code = []


# Exception-table entries: (start, end, target, depth, lasti), bytes.
Handler = tuple[int, int, int, int, bool]


def _handlers(code: types.CodeType) -> list[Handler]:
    return [(e.start, e.end, e.target, e.depth, e.lasti)
            for e in dis._parse_exception_table(code)]  # type: ignore[attr-defined]


_HANDLERS = PerCode(_handlers)


_HANDLER_AT: PerCode[dict[int, Handler | None]] = PerCode(lambda code: {})


def handler_at(code: types.CodeType, offset: int) -> Handler | None:
    """The exception-table entry covering the instruction at `offset` (bytes);
    remembered per offset (a generated template has thousands of entries)."""
    memo = _HANDLER_AT.get(code)
    if offset in memo:
        return memo[offset]
    found = None
    for entry in _HANDLERS.get(code):
        if entry[0] <= offset < entry[1]:
            found = entry
            break
    memo[offset] = found
    return found


class CodeCache:
    def __init__(self) -> None:
        self.roots: dict[tuple[int, int], CompiledTrace] = {}
        self.by_handle: dict[int, CompiledTrace] = {}
        self.by_code: dict[int, list[CompiledTrace]] = {}
        # (id(code), header) -> exits waiting for a root trace there.
        self.pending: dict[tuple[int, int], list[tuple[CompiledTrace, int]]] = {}
        self.bytes = 0
        self._next_handle = 0

    def new_handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def get(self, code: types.CodeType, offset: int) -> CompiledTrace | None:
        return self.roots.get((id(code), offset))

    def add(self, t: CompiledTrace, handle: int) -> None:
        self.by_handle[handle] = t
        self.by_code.setdefault(t.code_id, []).append(t)
        self.bytes += t.size
        if t.kind != "bridge":
            self.roots[(t.code_id, t.key)] = t

    def all(self) -> list[CompiledTrace]:
        return list(self.by_handle.values())

    def remove(self, traces: list[CompiledTrace]) -> None:
        """Forget these traces (all of one code object): entries, roots, their
        pending links.  Links to them from other traces are the caller's."""
        if not traces:
            return
        gone = {id(t) for t in traces}
        code_id = traces[0].code_id
        for t in traces:
            self.by_handle.pop(t.native.handle, None)
            if t.kind != "bridge" and self.roots.get((code_id, t.key)) is t:
                del self.roots[(code_id, t.key)]
            self.bytes -= t.size
        left = [t for t in self.by_code.get(code_id, []) if id(t) not in gone]
        if left:
            self.by_code[code_id] = left
        else:
            self.by_code.pop(code_id, None)
        for key in [k for k in self.pending if k[0] == code_id]:
            waiting = [(s, k) for s, k in self.pending[key] if id(s) not in gone]
            if waiting:
                self.pending[key] = waiting
            else:
                del self.pending[key]

    def remove_code(self, code_id: int) -> list[CompiledTrace]:
        """Forget every trace of a code object that died; returns them."""
        traces = list(self.by_code.get(code_id, []))
        self.remove(traces)
        for key in [k for k in self.pending if k[0] == code_id]:
            del self.pending[key]
        return traces

    def clear(self) -> list[CompiledTrace]:
        """Forget every trace; returns them (their code may still be running)."""
        out = self.all()
        self.roots.clear()
        self.by_handle.clear()
        self.by_code.clear()
        self.pending.clear()
        self.bytes = 0
        return out


def closure(t: CompiledTrace) -> list[CompiledTrace]:
    """t and every trace reachable from it through bridges and links."""
    seen = {id(t)}
    out = [t]
    i = 0
    while i < len(out):
        for s in out[i].successors:
            if id(s) not in seen:
                seen.add(id(s))
                out.append(s)
        i += 1
    return out


def unwinds_exactly(t: CompiledTrace, root_in_handler: bool) -> bool:
    """Whether every error exit of t can be handled exactly when the chain was
    entered at a root inside a try block's range (`root_in_handler`) or not.
    The interpreter unwinds a dispatcher error at the root's offset; the
    runtime unwinds itself when the failing instruction has a handler, but
    cannot make an exception leave the function past a handler that covers
    the root (see docs/design.md)."""
    if not root_in_handler:
        return True
    if t.errors_handled is None:
        t.errors_handled = all(handler_at(t.code, e.pc * 2) is not None
                               for e in t.lowered.exits if e.error)
    return t.errors_handled


def hot_threshold(eagerness: int) -> int:
    return eagerness if eagerness > 0 else NEVER
