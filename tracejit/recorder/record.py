"""Recording one loop iteration as it really runs.

The runtime turns on INSTRUCTION events for the loop's code object and feeds
every event of the recorded frame to ``Recording.step``.  Each step notes the
instruction, the live objects it is about to read from the value stack, and
(at the next step) where control went.  Recording changes nothing in the
program: it only reads the frame.
"""

from __future__ import annotations

import dis
import enum
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.recorder.bytecodes import BYTECODES
from tracejit.runtime import frames

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

# Generator, coroutine, iterable coroutine, async generator.
CO_GENERATOR_LIKE = 0x20 | 0x80 | 0x100 | 0x200


class AbortReason(enum.Enum):
    """Why a recording was abandoned (one enum, counted per reason)."""

    UNSUPPORTED_OPCODE = "unsupported opcode"
    UNSUPPORTED_OPERAND = "unsupported operand"
    EXCEPTION = "exception while recording"
    LEFT_LOOP = "left the loop while recording"
    INNER_LOOP = "inner loop"
    TRACE_TOO_LONG = "trace too long"
    GENERATOR = "generator or coroutine"
    CLOSURE = "closure variables"
    STACK_SHAPE = "loop changes its header stack"
    TYPE_UNSTABLE = "loop-carried types unstable"
    FRAME_GONE = "frame finished while recording"
    TOOL_ACTIVE = "another tool is tracing"
    BACKEND = "backend refused the trace"
    UNPROFITABLE = "trace leaves too early to pay off"
    SEGMENTING = "segmenting trace"
    # Not a recording that failed: one not started (Params.jit_time_percent).
    OVER_TIME_BUDGET = "JIT time budget spent"


# Reasons that will recur on every attempt: the location is blacklisted at once.
PERMANENT_REASONS = frozenset({"generator or coroutine", "closure variables",
                               "trace leaves too early to pay off"})


class RecordingAborted(Exception):
    def __init__(self, reason: AbortReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Instr:
    offset: int  # bytes
    opname: str
    arg: int
    argval: object
    next_offset: int  # fall-through, after inline caches
    jump_target: int | None
    # Where execution of this instruction really starts: its first EXTENDED_ARG
    # prefix, if any.  Exits must resume there or the prefix's bits are lost.
    start: int


@dataclass(slots=True)
class CodeInfo:
    code_ref: weakref.ReferenceType[types.CodeType]
    nlocalsplus: int
    instrs: dict[int, Instr]

    @property
    def code(self) -> types.CodeType:
        code = self.code_ref()
        if code is None:
            raise RuntimeError("code object gone")
        return code


# Keyed by id(code) (hashing a code object is slow); entries go when the code dies.
_CODE_INFO: dict[int, CodeInfo] = {}


def _forget_info(key: int) -> Callable[[object], None]:
    def forget(_: object) -> None:
        try:
            _CODE_INFO.pop(key, None)
        except Exception:
            pass  # at exit, with this module torn down
    return forget


def code_info(code: types.CodeType) -> CodeInfo:
    key = id(code)
    info = _CODE_INFO.get(key)
    if info is None or info.code_ref() is not code:
        cells = [c for c in code.co_cellvars if c not in code.co_varnames]
        nlocalsplus = len(code.co_varnames) + len(cells) + len(code.co_freevars)
        ref = weakref.ref(code, _forget_info(key))
        info = CodeInfo(ref, nlocalsplus, _decode(code))
        _CODE_INFO[key] = info
    return info


_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]
_LOAD_CONST = dis.opmap["LOAD_CONST"]
_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
_HASJUMP = frozenset(dis.hasjump)
_BACKWARD = frozenset({dis.opmap["JUMP_BACKWARD"], dis.opmap["JUMP_BACKWARD_NO_INTERRUPT"]})
_CACHES = [dis._inline_cache_entries.get(name, 0) if isinstance(  # type: ignore[attr-defined]
    dis._inline_cache_entries, dict) else dis._inline_cache_entries[op]  # type: ignore[attr-defined]
           for op, name in enumerate(dis.opname)]


def _decode(code: types.CodeType) -> dict[int, Instr]:
    """The instructions of `code` by offset.  A lean decoder: dis.get_instructions
    formats every argument and position, far too slow for huge generated code."""
    raw = code.co_code
    instrs: dict[int, Instr] = {}
    ext = 0
    start = -1
    i = 0
    n = len(raw)
    while i < n:
        op = raw[i]
        arg = raw[i + 1] | ext
        nxt = i + 2 + 2 * _CACHES[op]
        target: int | None = None
        if op in _HASJUMP:
            target = nxt - 2 * arg if op in _BACKWARD else nxt + 2 * arg
        argval: object = None
        if op == _LOAD_CONST:
            argval = code.co_consts[arg]
        elif op == _LOAD_GLOBAL:
            argval = code.co_names[arg >> 1]
        if start < 0:
            start = i
        instrs[i] = Instr(i, dis.opname[op], arg, argval, nxt, target, start)
        if op == _EXTENDED_ARG:
            ext = arg << 8
        else:
            ext = 0
            start = -1
        i = nxt
    return instrs


class NullType:
    """Stands for the type of a NULL stack entry."""


def _type_of(obj: object) -> type:
    return NullType if obj is frames.MISSING else type(obj)


@dataclass(slots=True)
class Record:
    instr: Instr
    # Types of the values the instruction reads from the stack, bottom first
    # (NullType for a NULL entry).
    inputs: list[type]
    # Extra observations (LOAD_GLOBAL's value, ...).
    seen: object = None
    # Where control went next (bytes); set by the following step.
    next_offset: int = -1


@dataclass(frozen=True, slots=True)
class End:
    """How a recording ended.  ``kind``: ``loop`` (back-edge to its own start:
    a loop trace), ``backedge`` (to ``target``, left before the jump),
    ``header`` (reached ``target``, the start of another root trace),
    ``return``, ``segment`` (trace limit in segmenting mode: the end grows a
    bridge later), ``stop`` (an instruction the JIT does not handle)."""

    kind: str
    pc: int  # bytes: where the trace leaves (the instruction not recorded)
    target: int = -1  # bytes: header to link to


# A recording that reaches an unsupported instruction after at least this many
# instructions ends there instead of aborting (the rest runs in the interpreter);
# a function-entry trace must be at least this long to pay for its entry.
MIN_STOP_RECORDS = 24
MIN_FUNCTION_RECORDS = 24
_RETURNS = frozenset({"RETURN_VALUE", "RETURN_CONST"})


def _no_entries(offset: int) -> bool:
    return False


@dataclass(slots=True)
class Recording:
    code: types.CodeType
    header: int  # bytes: where recording starts (loop header, bridge or function start)
    frame: types.FrameType
    thread: int
    limit: int
    # "loop" (from a hot back-edge), "bridge" (from a hot exit), "function".
    kind: str = "loop"
    # Near the limit, end with a segment instead of aborting (huge code).
    segmenting: bool = False
    # Whether a root trace starts at this offset of the code (a recording that
    # reaches one ends there and links to it).
    is_entry: Callable[[int], bool] = _no_entries
    end: End | None = None
    info: CodeInfo = field(init=False)
    records: list[Record] = field(default_factory=list)
    # Types at the loop header: locals and value stack.
    entry_locals: list[type] = field(default_factory=list)
    entry_stack: list[type] = field(default_factory=list)
    done: bool = False
    # Value-stack depth before the current instruction (tracked with dis.stack_effect,
    # because INSTRUCTION events do not save the frame's stack pointer).
    depth: int = 0

    def __post_init__(self) -> None:
        if self.code.co_flags & CO_GENERATOR_LIKE:
            raise RecordingAborted(AbortReason.GENERATOR)
        if self.code.co_cellvars or self.code.co_freevars:
            raise RecordingAborted(AbortReason.CLOSURE)
        self.info = code_info(self.code)

    def start(self) -> None:
        """Observe the frame at the loop header."""
        n = self.info.nlocalsplus
        self.entry_locals = [_type_of(frames.slot_object(self.frame, i)) for i in range(n)]
        depth = frames.stack_depth(self.frame, n)
        self.entry_stack = [_type_of(o) for o in frames.stack_items(self.frame, n, depth)]
        self.depth = depth

    def step(self, offset: int) -> None:
        """Called before the instruction at `offset` runs in the recorded frame;
        sets ``done`` (and ``end``) when the trace ends before that instruction."""
        if self.records:
            prev = self.records[-1]
            prev.next_offset = offset
            allowed = {prev.instr.next_offset}
            if prev.instr.jump_target is not None:
                allowed.add(prev.instr.jump_target)
                if prev.instr.opname == "FOR_ITER":
                    allowed.add(prev.instr.jump_target + 4)
            if offset not in allowed:
                raise RecordingAborted(AbortReason.EXCEPTION, f"jumped to {offset}")
            if prev.instr.opname == "FOR_ITER" and offset != prev.instr.next_offset:
                assert prev.instr.jump_target is not None
                if offset != prev.instr.jump_target + 4:
                    raise RecordingAborted(AbortReason.INNER_LOOP, "loop ended oddly")
                if self.kind == "loop" and len(self.records) == 1:
                    raise RecordingAborted(AbortReason.LEFT_LOOP, "loop ended")
                # An exhausted FOR_ITER pops its iterator and skips END_FOR and
                # POP_TOP (the compiler's model says otherwise).
                self.depth -= 1
            else:
                jumped = offset != prev.instr.next_offset
                op = dis.opmap[prev.instr.opname]
                self.depth += dis.stack_effect(op, prev.instr.arg if op >= dis.HAVE_ARGUMENT
                                               else None, jump=jumped)
        elif offset != self.header:
            raise RecordingAborted(AbortReason.LEFT_LOOP)
        instr = self.info.instrs.get(offset)
        if instr is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, f"offset {offset}")
        if self._ends_before(instr):
            return
        rule = BYTECODES.get(instr.opname)
        if rule is None:
            if len(self.records) >= MIN_STOP_RECORDS:
                self._end("stop", instr.start)
                return
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, instr.opname)
        if len(self.records) >= self.limit:
            if self.segmenting:
                self._end("segment", instr.start)
                return
            raise RecordingAborted(AbortReason.TRACE_TOO_LONG)
        if not 0 <= self.depth <= self.code.co_stacksize:
            raise RecordingAborted(AbortReason.STACK_SHAPE, f"depth {self.depth}")
        objs = frames.stack_items(self.frame, self.info.nlocalsplus, rule.inputs(instr.arg),
                                  self.depth)
        # Keep only types: holding the objects would change when they die.
        rec = Record(instr, [NullType if o is frames.MISSING else type(o) for o in objs])
        if instr.opname == "IS_OP":
            rec.seen = objs[0] is objs[1]
        del objs
        if instr.opname == "LOAD_GLOBAL":
            rec.seen = self._global_value(str(instr.argval))
        self.records.append(rec)
        if instr.opname.startswith("JUMP_BACKWARD"):
            # Only a back-edge to the loop's own start is recorded (_ends_before).
            rec.next_offset = self.header
            self.end = End("loop", instr.start, self.header)
            self.done = True

    def _ends_before(self, instr: Instr) -> bool:
        """End the trace before `instr` when it leaves the trace's shape."""
        if instr.opname.startswith("JUMP_BACKWARD"):
            if self.kind == "loop" and instr.jump_target == self.header:
                return False  # closes the loop: recorded, then done
            assert instr.jump_target is not None
            return self._end("backedge", instr.start, instr.jump_target)
        if instr.opname in _RETURNS and self.records:
            if self.kind == "function" and len(self.records) < MIN_FUNCTION_RECORDS:
                raise RecordingAborted(AbortReason.UNPROFITABLE, "function too short")
            return self._end("return", instr.start)
        if self.records and instr.offset != self.header and self.is_entry(instr.offset):
            return self._end("header", instr.start, instr.offset)
        return False

    def _end(self, kind: str, pc: int, target: int = -1) -> bool:
        if not self.records:
            raise RecordingAborted(AbortReason.LEFT_LOOP, f"nothing recorded before {kind}")
        self.end = End(kind, pc, target)
        self.done = True
        return True

    def _global_value(self, name: str) -> object:
        g = self.frame.f_globals
        if name in g:
            return g[name]
        b = self.frame.f_builtins
        if name in b:
            return b[name]
        raise RecordingAborted(AbortReason.EXCEPTION, f"global {name} missing")
