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
from dataclasses import dataclass, field

from tracejit.recorder.bytecodes import BYTECODES
from tracejit.runtime import frames

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


# Reasons that will recur on every attempt: the location is blacklisted at once.
PERMANENT_REASONS = frozenset({"generator or coroutine", "closure variables"})


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
    code: types.CodeType
    nlocalsplus: int
    instrs: dict[int, Instr]


_CODE_INFO: dict[types.CodeType, CodeInfo] = {}


def code_info(code: types.CodeType) -> CodeInfo:
    info = _CODE_INFO.get(code)
    if info is None:
        listing = list(dis.get_instructions(code))
        instrs: dict[int, Instr] = {}
        start = -1
        for i, ins in enumerate(listing):
            nxt = listing[i + 1].offset if i + 1 < len(listing) else ins.offset + 2
            target = ins.jump_target if ins.opcode in dis.hasjump else None
            if start < 0:
                start = ins.offset
            instrs[ins.offset] = Instr(
                ins.offset, ins.opname, ins.arg or 0, ins.argval, nxt, target, start
            )
            if ins.opname != "EXTENDED_ARG":
                start = -1
        cells = [c for c in code.co_cellvars if c not in code.co_varnames]
        nlocalsplus = len(code.co_varnames) + len(cells) + len(code.co_freevars)
        info = CodeInfo(code, nlocalsplus, instrs)
        _CODE_INFO[code] = info
    return info


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


@dataclass(slots=True)
class Recording:
    code: types.CodeType
    header: int  # bytes: the loop header (back-edge target)
    frame: types.FrameType
    thread: int
    limit: int
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
        self.info = code_info(self.code)
        if self.code.co_flags & CO_GENERATOR_LIKE:
            raise RecordingAborted(AbortReason.GENERATOR)
        if self.code.co_cellvars or self.code.co_freevars:
            raise RecordingAborted(AbortReason.CLOSURE)

    def start(self) -> None:
        """Observe the frame at the loop header."""
        n = self.info.nlocalsplus
        self.entry_locals = [_type_of(frames.slot_object(self.frame, i)) for i in range(n)]
        depth = frames.stack_depth(self.frame, n)
        self.entry_stack = [_type_of(o) for o in frames.stack_items(self.frame, n, depth)]
        self.depth = depth

    def step(self, offset: int) -> None:
        """Called before the instruction at `offset` runs in the recorded frame."""
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
                # An inner loop ended; the frame's stack no longer matches the
                # compiler's model of the jump, so stop before reading it.
                raise RecordingAborted(AbortReason.INNER_LOOP, "loop ended while recording")
            jumped = offset != prev.instr.next_offset
            self.depth += dis.stack_effect(dis.opmap[prev.instr.opname], prev.instr.arg
                                           if dis.opmap[prev.instr.opname] >= dis.HAVE_ARGUMENT
                                           else None, jump=jumped)
        elif offset != self.header:
            raise RecordingAborted(AbortReason.LEFT_LOOP)
        instr = self.info.instrs.get(offset)
        if instr is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, f"offset {offset}")
        rule = BYTECODES.get(instr.opname)
        if rule is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, instr.opname)
        if instr.opname.startswith("JUMP_BACKWARD") and instr.jump_target != self.header:
            raise RecordingAborted(AbortReason.INNER_LOOP)
        if len(self.records) >= self.limit:
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

    def finish(self) -> None:
        """The recorded frame took a back-edge to the header: one iteration done."""
        if not self.records:
            raise RecordingAborted(AbortReason.LEFT_LOOP)
        last = self.records[-1]
        if not last.instr.opname.startswith("JUMP_BACKWARD"):
            raise RecordingAborted(AbortReason.LEFT_LOOP)
        last.next_offset = self.header
        self.done = True

    def _global_value(self, name: str) -> object:
        g = self.frame.f_globals
        if name in g:
            return g[name]
        b = self.frame.f_builtins
        if name in b:
            return b[name]
        raise RecordingAborted(AbortReason.EXCEPTION, f"global {name} missing")
