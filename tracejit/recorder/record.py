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
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend.layout import (
    METHOD_DESCRIPTOR,
    TPFLAGS_HEAPTYPE,
    bound_method_def,
    dict_has_str_keys,
    method_def,
)
from tracejit.frozen import frozen
from tracejit.recorder.bytecodes import BYTECODES
from tracejit.recorder.percode import PerCode
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
    STACK_SHAPE = "loop changes its header stack"
    TYPE_UNSTABLE = "loop-carried types unstable"
    FRAME_GONE = "frame finished while recording"
    TOOL_ACTIVE = "another tool is tracing"
    BACKEND = "backend refused the trace"
    UNPROFITABLE = "trace leaves too early to pay off"
    SEGMENTING = "segmenting trace"
    INLINE_REFUSED = "inlined callee not compilable"
    INLINE_EXIT_HOT = "hot exit inside an inlined call"
    GLOBAL_VARIES = "guarded global varies"
    RECURSION = "recursion the recording does not follow"
    # Not a recording that failed: one not started (Params.jit_time_percent).
    OVER_TIME_BUDGET = "JIT time budget spent"


# Reasons that will recur on every attempt: the location is blacklisted at once.
PERMANENT_REASONS = frozenset({"generator or coroutine",
                               "trace leaves too early to pay off"})


class RecordingAborted(Exception):
    def __init__(self, reason: AbortReason, detail: str = "",
                 callee: types.CodeType | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        # INLINE_REFUSED: the inlined callee to call instead next time.
        self.callee = callee


@frozen
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
    instrs: Instructions
    # The first instruction after RESUME (MAKE_CELL and COPY_FREE_VARS come
    # before it and raise no INSTRUCTION event): where an inlined call starts.
    body_start: int
    # Globals whose guard went hot or that recordings saw change twice (e.g. a
    # namespace rebuilt for every run of exec'd code): traces look them up at
    # each use instead of guarding them.
    varying_globals: set[str] = field(default_factory=set)
    # Per global name: the id of the value the last recording saw, and how
    # often recordings saw it change (a namespace rebuilt for every run shows
    # at the second change, before its guards fail and get hot).
    global_ids: dict[str, tuple[int, int]] = field(default_factory=dict)

    def note_global(self, name: str, value: object) -> None:
        last, changes = self.global_ids.get(name, (id(value), 0))
        if last != id(value):
            changes += 1
            if changes >= 2:
                self.varying_globals.add(name)
        self.global_ids[name] = (id(value), changes)

    @property
    def code(self) -> types.CodeType:
        code = self.code_ref()
        if code is None:
            raise RuntimeError("code object gone")
        return code


def _code_info(code: types.CodeType) -> CodeInfo:
    cells = [c for c in code.co_cellvars if c not in code.co_varnames]
    nlocalsplus = len(code.co_varnames) + len(cells) + len(code.co_freevars)
    instrs = Instructions(code)
    first = instrs[0]
    while first.opname != "RESUME":
        first = instrs[first.next_offset]
    return CodeInfo(weakref.ref(code), nlocalsplus, instrs, first.next_offset)


code_info = PerCode(_code_info).get


_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]
_LOAD_CONST = dis.opmap["LOAD_CONST"]
_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
_HASJUMP = frozenset(dis.hasjump)
_BACKWARD = frozenset({dis.opmap["JUMP_BACKWARD"], dis.opmap["JUMP_BACKWARD_NO_INTERRUPT"]})
_CACHES = [dis._inline_cache_entries.get(name, 0) if isinstance(  # type: ignore[attr-defined]
    dis._inline_cache_entries, dict) else dis._inline_cache_entries[op]  # type: ignore[attr-defined]
           for op, name in enumerate(dis.opname)]


_SIZES = bytes(2 + 2 * c for c in _CACHES)  # bytes per instruction, caches included


class Instructions:
    """The instructions of a code object by offset (bytes), each decoded when
    first asked for.  Building all of a huge generated function's (140k code
    units) up front took about 0.2 s; finding where instructions start is one
    tight loop, and a trace touches a few hundred of them.  A lean decoder:
    dis.get_instructions formats every argument and position."""

    __slots__ = ("_raw", "_consts", "_names", "_starts", "_decoded")

    def __init__(self, code: types.CodeType) -> None:
        raw = self._raw = code.co_code
        self._consts = code.co_consts
        self._names = code.co_names
        starts = self._starts = bytearray(len(raw) // 2)  # 1 at each instruction
        sizes = _SIZES
        i, n = 0, len(raw)
        while i < n:
            starts[i >> 1] = 1
            i += sizes[raw[i]]
        self._decoded: dict[int, Instr] = {}

    @property
    def units(self) -> int:
        """The code's length in code units."""
        return len(self._starts)

    def get(self, offset: int) -> Instr | None:
        instr = self._decoded.get(offset)
        if instr is None and 0 <= offset < len(self._raw) and self._starts[offset >> 1]:
            instr = self._decoded[offset] = self._decode(offset)
        return instr

    def __getitem__(self, offset: int) -> Instr:
        instr = self.get(offset)
        if instr is None:
            raise KeyError(offset)
        return instr

    def _decode(self, i: int) -> Instr:
        raw, starts = self._raw, self._starts
        op = raw[i]
        arg = raw[i + 1]
        start, shift = i, 8
        while start >= 2 and starts[(start - 2) >> 1] and raw[start - 2] == _EXTENDED_ARG:
            start -= 2
            arg |= raw[start + 1] << shift
            shift += 8
        nxt = i + _SIZES[op]
        target: int | None = None
        if op in _HASJUMP:
            target = nxt - 2 * arg if op in _BACKWARD else nxt + 2 * arg
        argval: object = None
        if op == _LOAD_CONST:
            argval = self._consts[arg]
        elif op == _LOAD_GLOBAL:
            argval = self._names[arg >> 1]
        return Instr(i, dis.opname[op], arg, argval, nxt, target, start)


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
    # Extra observations (LOAD_GLOBAL's value, a CALL's InlineCall, ...).
    seen: object = None
    # Where control went next (bytes); set by the following step.
    next_offset: int = -1
    # Inlining depth: 0 for the recorded code, n inside n nested inlined calls.
    depth: int = 0
    # The exact dict the instruction looks keys up in (a subscript's container,
    # a dict method's self) had a str-only key table (dict_has_str_keys).
    str_keys: bool = False


@frozen
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

# Events of frames a recording does not follow before it gives up (Recording.wants).
MAX_FOREIGN_EVENTS = 20_000


# A recording goes round a small inner loop that no trace covers yet (its
# back-edge is recorded as a plain jump) at most this many times, and only
# while it is shorter than half its limit; past that it ends at the
# back-edge and the loop gets a trace of its own.  Short inner loops (a few
# items per run) then cost no transfer and never wait to get hot on their
# own (LuaJIT unrolls loops in side traces the same way).  A longer body
# (in code units) is worth one trace: each unrolled copy is compiled.
UNROLL_BACKEDGES = 2
UNROLL_MAX_BODY = 256

# The detail of a loop recording's LEFT_LOOP abort when its iterator ran out
# at the header: a short loop caught at its last back-edge.
LOOP_ENDED = "loop ended"

# The types a root trace's entry guards want in the frame's slots (locals,
# then the value stack): (slot, type) pairs.
EntryTypes = tuple[tuple[int, type], ...]


def _no_entries(offset: int) -> EntryTypes | None:
    return None


@dataclass(frozen=True, slots=True)
class InlineCall:
    """A CALL the recording followed into a Python function (Record.seen)."""

    func: types.FunctionType
    code: types.CodeType
    # The callable on the stack was a bound method object (self comes from it).
    method: bool
    # Positional arguments the function receives, self included; the rest of
    # co_argcount comes from func.__defaults__.
    nargs: int


# Code flags an inlined function must not have: generator-like, *args, **kwargs.
_NO_INLINE_FLAGS = CO_GENERATOR_LIKE | 0x04 | 0x08
MAX_INLINE_ARGS = 64


def _dict_looked_up(opname: str, objs: list[object]) -> dict[Any, Any] | None:
    """The exact dict a subscript, an `in` test or a dict method call looks
    keys up in."""
    if opname == "BINARY_SUBSCR":
        d = objs[0]
    elif opname == "STORE_SUBSCR" or opname == "CONTAINS_OP":
        d = objs[1]
    elif opname == "CALL" and len(objs) >= 2:
        d = objs[1]
        if d is frames.MISSING:
            fn = objs[0]
            d = getattr(fn, "__self__", None) if type(fn) is types.BuiltinMethodType else None
    else:
        return None
    return d if type(d) is dict else None


def inline_plan(callable_: object, self_or_null: object, argc: int) -> InlineCall | None:
    """How a CALL of `callable_` would be inlined, or None if it is not a call
    of a plain Python function with positional arguments the JIT handles."""
    method = False
    nargs = argc
    if type(callable_) is types.FunctionType:
        func = callable_
        if self_or_null is not frames.MISSING:
            nargs += 1
    elif type(callable_) is types.MethodType and self_or_null is frames.MISSING \
            and type(callable_.__func__) is types.FunctionType:
        func = callable_.__func__
        method = True
        nargs += 1
    else:
        return None
    code = func.__code__
    # Free variables are the function's closure cells (constants of the trace:
    # the function is guarded); cell variables would need new cells per call.
    if code.co_flags & _NO_INLINE_FLAGS or code.co_kwonlyargcount \
            or code.co_cellvars or code.co_argcount > MAX_INLINE_ARGS:
        return None
    ndefaults = len(func.__defaults__ or ())
    if not code.co_argcount - ndefaults <= nargs <= code.co_argcount:
        return None
    return InlineCall(func, code, method, nargs)


def module_attribute(module: object, name: str) -> object | None:
    """What LOAD_ATTR reads from an exact module whose dict holds `name` when
    the module type does not define it (so no descriptor, no __getattr__),
    else None."""
    if type(module) is not types.ModuleType \
            or any(name in vars(t) for t in types.ModuleType.__mro__):
        return None
    return module.__dict__.get(name)


def method_descriptor_of(fn: object) -> object | None:
    """For a builtin method object bound to an instance of a builtin (not
    heap) type, such as ``[].append``, the method descriptor it was made from
    (same C function), else None.  Descriptors live as long as their type."""
    if type(fn) is not types.BuiltinMethodType:
        return None
    owner = type(getattr(fn, "__self__", None))
    if owner.__flags__ & TPFLAGS_HEAPTYPE:
        return None
    descr = owner.__dict__.get(getattr(fn, "__name__", ""))
    if type(descr) is not METHOD_DESCRIPTOR or method_def(descr) != bound_method_def(fn):
        return None
    return descr


@dataclass(slots=True)
class Level:
    """One frame the recording follows: the recorded code's (level 0) or an
    inlined callee's."""

    code: types.CodeType
    info: CodeInfo
    frame_id: int
    # Value-stack depth before the next instruction (tracked with
    # dis.stack_effect: INSTRUCTION events do not save the stack pointer).
    depth: int = 0
    # The level's last record (control flow is checked against it).
    last: Record | None = None
    # Index in Recording.records of the CALL that entered this level.
    call_index: int = -1


def _always(code: types.CodeType) -> bool:
    return True


def _never(code: types.CodeType) -> bool:
    return False


def _ignore(code: types.CodeType) -> None:
    return None


class _Bail(Exception):
    """Stop following the innermost inlined call (it becomes a plain call)."""


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
    # A loop whose iterator is exhausted at the first FOR_ITER (a short loop
    # caught at its last back-edge): record on past its end as a linear trace
    # instead of aborting (the loop body then grows as a bridge).
    past_loop_end: bool = False
    # The entry types of the root trace that starts at this offset of the
    # code, if any: a recording that reaches one ends there and links to it
    # (when the frame has those types: otherwise it goes round once more).
    entry_types: Callable[[int], EntryTypes | None] = _no_entries
    # Inlining: follow calls of Python functions up to this many levels deep;
    # `may_inline` vetoes a callee's code, `enable_events` turns INSTRUCTION
    # events on for a callee's code.
    max_inline_depth: int = 0
    # A function-entry trace shorter than this does not pay for its entry
    # from the interpreter (traces calling it directly waive it).
    min_function_records: int = MIN_FUNCTION_RECORDS
    may_inline: Callable[[types.CodeType], bool] = _always
    # Whether a called function (not inlined) has a pure function trace.
    pure_call: Callable[[types.CodeType], bool] = _never
    enable_events: Callable[[types.CodeType], None] = _ignore
    end: End | None = None
    info: CodeInfo = field(init=False)
    records: list[Record] = field(default_factory=list)
    # Types at the loop header: locals and value stack.
    entry_locals: list[type] = field(default_factory=list)
    entry_stack: list[type] = field(default_factory=list)
    done: bool = False
    # The frames followed, the recorded code's first.
    levels: list[Level] = field(default_factory=list)
    # A CALL just recorded that is to be followed: (plan, its record index).
    pending: tuple[InlineCall, int] | None = None
    # Inner loops gone round (back-edges recorded as jumps), by target.
    unrolled: dict[int, int] = field(default_factory=dict)
    # INSTRUCTION events of frames the recording does not follow (the recorded
    # code or an inlined callee's, run deeper: recursion).
    foreign_events: int = 0

    def __post_init__(self) -> None:
        if self.code.co_flags & CO_GENERATOR_LIKE:
            raise RecordingAborted(AbortReason.GENERATOR)
        self.info = code_info(self.code)

    @property
    def depth(self) -> int:
        """Value-stack depth of the recorded code's frame."""
        return self.levels[0].depth if self.levels else 0

    def start(self) -> None:
        """Observe the frame at the loop header."""
        n = self.info.nlocalsplus
        self.entry_locals = [_type_of(frames.slot_object(self.frame, i)) for i in range(n)]
        depth = frames.stack_depth(self.frame, n)
        self.entry_stack = [_type_of(o) for o in frames.stack_items(self.frame, n, depth)]
        self.levels = [Level(self.code, self.info, id(self.frame), depth)]

    # ------------------------------------------------------------ events

    def wants(self, code: types.CodeType, frame: types.FrameType) -> bool:
        """Whether an INSTRUCTION event of `frame` belongs to the recording
        (its innermost followed frame, or the callee a pending CALL enters).
        Abandons inlined calls the event shows to be over."""
        top = self.levels[-1]
        fid = id(frame)
        if self.pending is not None:
            plan, index = self.pending
            if code is plan.code and fid != top.frame_id and frame.f_back is not None \
                    and id(frame.f_back) == top.frame_id:
                self.pending = None
                info = code_info(code)
                self.levels.append(Level(code, info, fid, 0, None, index))
                return True
            if fid == top.frame_id:
                # The call did not run the function's code in a new frame.
                self.pending = None
                self.records[index].seen = None
                return True
            return False
        if fid == top.frame_id and code is top.code:
            return True
        for lvl in self.levels[:-1]:
            if fid == lvl.frame_id:
                # An inlined call ended without its return being seen (an
                # exception left it).
                raise RecordingAborted(AbortReason.EXCEPTION, "left an inlined call")
        self.foreign_events += 1
        if self.foreign_events > MAX_FOREIGN_EVENTS:
            # Each costs a Python callback: a deep recursion through the
            # recorded code would run at a fraction of its speed till it ends.
            raise RecordingAborted(AbortReason.RECURSION)
        return False

    def step(self, offset: int, frame: types.FrameType | None = None) -> None:
        """Called before the instruction at `offset` runs in the innermost
        followed frame (`frame`, the recorded frame by default); sets ``done``
        (and ``end``) when the trace ends before that instruction."""
        if not self.levels:
            self.levels = [Level(self.code, self.info, id(self.frame), 0)]
        if len(self.levels) == 1:
            self._step(offset, self.frame if frame is None else frame)
            return
        assert frame is not None
        try:
            self._step(offset, frame)
        except (RecordingAborted, _Bail):
            self._bail(len(self.levels) - 1)

    def _bail(self, level: int) -> None:
        """Stop following the inlined call of levels[level] (>= 1): its CALL is
        recorded as a plain call; the recording continues after it returns."""
        lvl = self.levels[level]
        call = self.records[lvl.call_index]
        call.seen = None
        del self.records[lvl.call_index + 1:]
        del self.levels[level:]
        self.pending = None

    def _step(self, offset: int, frame: types.FrameType) -> None:
        lvl = self.levels[-1]
        inlined = len(self.levels) > 1
        prev = lvl.last
        if prev is not None:
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
                if self.kind == "loop" and prev.instr.start == self.header \
                        and not self.past_loop_end:
                    raise RecordingAborted(AbortReason.LEFT_LOOP, LOOP_ENDED)
                # An exhausted FOR_ITER pops its iterator and skips END_FOR and
                # POP_TOP (the compiler's model says otherwise).
                lvl.depth -= 1
            else:
                jumped = offset != prev.instr.next_offset
                op = dis.opmap[prev.instr.opname]
                lvl.depth += dis.stack_effect(op, prev.instr.arg if op >= dis.HAVE_ARGUMENT
                                              else None, jump=jumped)
        elif inlined:
            if offset != lvl.info.body_start:
                raise _Bail()
        elif offset != self.header and not self._ran_end_for(lvl, offset):
            raise RecordingAborted(AbortReason.LEFT_LOOP)
        instr = lvl.info.instrs.get(offset)
        if instr is None:
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, f"offset {offset}")
        if inlined:
            if instr.opname.startswith("JUMP_BACKWARD"):
                raise _Bail()  # a loop in the callee: call it instead
        elif self._ends_before(instr):
            return
        rule = BYTECODES.get(instr.opname)
        if rule is None:
            if inlined:
                raise _Bail()
            if len(self.records) >= MIN_STOP_RECORDS:
                self._end("stop", instr.start)
                return
            raise RecordingAborted(AbortReason.UNSUPPORTED_OPCODE, instr.opname)
        if len(self.records) >= self.limit:
            if inlined:
                # Too long with inlined calls: call the outermost one instead.
                self._bail(1)
                return
            if self.segmenting:
                self._end("segment", instr.start)
                return
            raise RecordingAborted(AbortReason.TRACE_TOO_LONG)
        if not 0 <= lvl.depth <= lvl.code.co_stacksize:
            raise RecordingAborted(AbortReason.STACK_SHAPE, f"depth {lvl.depth}")
        objs = frames.stack_items(frame, lvl.info.nlocalsplus, rule.inputs(instr.arg),
                                  lvl.depth)
        # Keep only types: holding the objects would change when they die.
        rec = Record(instr, [NullType if o is frames.MISSING else type(o) for o in objs],
                     depth=len(self.levels) - 1)
        if instr.opname == "IS_OP":
            rec.seen = objs[0] is objs[1]
        elif instr.opname == "CALL" and len(self.levels) <= self.max_inline_depth:
            plan = inline_plan(objs[0], objs[1], instr.arg)
            if plan is not None and self.may_inline(plan.code):
                rec.seen = plan
                self.pending = (plan, len(self.records))
                self.enable_events(plan.code)
        if instr.opname == "CALL" and rec.seen is None and objs[1] is frames.MISSING:
            rec.seen = method_descriptor_of(objs[0])
        lookup = _dict_looked_up(instr.opname, objs)
        if lookup is not None:
            rec.str_keys = dict_has_str_keys(lookup)
        if instr.opname == "LOAD_FAST_AND_CLEAR":
            # whether the local it moves to the stack is bound (a comprehension
            # saving its variable's outer value)
            rec.seen = _type_of(frames.slot_object(frame, instr.arg))
        if instr.opname == "LOAD_ATTR" and type(objs[0]) is types.ModuleType:
            rec.seen = module_attribute(objs[0], lvl.code.co_names[instr.arg >> 1])
        del objs
        if instr.opname == "LOAD_GLOBAL":
            rec.seen = self._global_value(str(instr.argval), frame)
            lvl.info.note_global(str(instr.argval), rec.seen)
        self.records.append(rec)
        lvl.last = rec
        if inlined and instr.opname in _RETURNS:
            # Back in the caller, after its CALL.
            self.levels.pop()
            return
        if instr.opname.startswith("JUMP_BACKWARD") and self.kind == "loop" \
                and instr.jump_target == self.header:
            # The loop closes (other back-edges recorded are inner loops gone
            # round: _ends_before).
            rec.next_offset = self.header
            self.end = End("loop", instr.start, self.header)
            self.done = True

    def _ran_end_for(self, lvl: Level, offset: int) -> bool:
        """CPython raises no INSTRUCTION event for END_FOR: a recording that
        starts there (a bridge from a loop's exit, which leaves the iterator
        and a placeholder for END_FOR and POP_TOP) first sees the POP_TOP.
        Record the END_FOR as it ran."""
        instr = lvl.info.instrs.get(self.header)
        if instr is None or instr.opname != "END_FOR" or offset != instr.next_offset \
                or not self.entry_stack:
            return False
        rec = Record(instr, [self.entry_stack[-1]], depth=0)
        rec.next_offset = offset
        self.records.append(rec)
        lvl.last = rec
        lvl.depth -= 1
        return True

    def _ends_before(self, instr: Instr) -> bool:
        """End the trace before `instr` when it leaves the trace's shape."""
        if instr.opname.startswith("JUMP_BACKWARD"):
            target = instr.jump_target
            assert target is not None
            if self.kind == "loop" and target == self.header:
                return False  # closes the loop: recorded, then done
            small = (instr.start - target) // 2 <= UNROLL_MAX_BODY
            if self.entry_types(target) is None \
                    and self._go_round(target, UNROLL_BACKEDGES if small else 0):
                return False
            return self._end("backedge", instr.start, target)
        if instr.opname in _RETURNS and self.records:
            if self.kind == "function" and len(self.records) < self.min_function_records:
                raise RecordingAborted(AbortReason.UNPROFITABLE, "function too short")
            return self._end("return", instr.start)
        if self.records and instr.offset != self.header:
            want = self.entry_types(instr.offset)
            if want is not None and (self._fits(want) or not self._go_round(instr.offset, 1)):
                return self._end("header", instr.start, instr.offset)
        return False

    def _go_round(self, target: int, times: int) -> bool:
        """Whether to record on through the inner loop at `target` (at most
        `times` times in all) instead of ending the trace there."""
        n = self.unrolled.get(target, 0)
        if n >= times or len(self.records) * 2 >= self.limit:
            return False
        self.unrolled[target] = n + 1
        return True

    def _fits(self, want: EntryTypes) -> bool:
        """Whether the recorded frame has the types a root's entry guards want
        (a first iteration often does not: `total = 0` before a loop that
        makes it a float)."""
        top = self.info.nlocalsplus + self.depth
        for slot, t in want:
            if slot >= top or type(frames.slot_object(self.frame, slot)) is not t:
                return False
        return True

    def _end(self, kind: str, pc: int, target: int = -1) -> bool:
        if not self.records:
            raise RecordingAborted(AbortReason.LEFT_LOOP, f"nothing recorded before {kind}")
        self.end = End(kind, pc, target)
        self.done = True
        return True

    def _global_value(self, name: str, frame: types.FrameType) -> object:
        g = frame.f_globals
        if name in g:
            return g[name]
        b = frame.f_builtins
        if name in b:
            return b[name]
        raise RecordingAborted(AbortReason.EXCEPTION, f"global {name} missing")
