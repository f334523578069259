"""CPython hooks: sys.monitoring callbacks that count, record and enter traces.

The JIT uses the monitoring tool id reserved for optimizers.  JUMP events on
loop back-edges drive everything:

- a back-edge to a header with a compiled trace enters it: the native code
  runs on the frame's own locals and stack and, when it leaves, has written
  the frame back and set ``instr_ptr``; returning from the callback lets the
  interpreter continue exactly there;
- otherwise the header's counter ticks; when hot, INSTRUCTION events are
  turned on for that code object and one iteration is recorded;
- forward jumps and blacklisted back-edges return DISABLE, so they cost
  nothing afterwards.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

from tracejit.params import Params
from tracejit.recorder.record import (
    PERMANENT_REASONS,
    AbortReason,
    Recording,
    RecordingAborted,
)
from tracejit.runtime import jitlog
from tracejit.runtime.cache import CodeCache, CompiledLoop
from tracejit.runtime.counters import LoopCounter
from tracejit.stats import STATS

TOOL = sys.monitoring.OPTIMIZER_ID
EVENTS = sys.monitoring.events
DISABLE = sys.monitoring.DISABLE


class _State:
    def __init__(self) -> None:
        self.params = Params()
        self.installed = False
        self.recording: Recording | None = None
        # Keyed by (id(code), header); `codes` keeps those code objects alive so
        # their ids stay unique (hashing a code object is slow for big ones).
        self.counters: dict[tuple[int, int], LoopCounter] = {}
        self.codes: dict[int, types.CodeType] = {}
        self.cache = CodeCache()
        # Traces taken out of use; their code may still be on the C stack, so it
        # is freed only when the JIT is turned off.
        self.retired: list[CompiledLoop] = []


STATE = _State()


def install(params: Params) -> None:
    STATE.params = params
    if STATE.installed:
        return
    from tracejit.backend.layout import check_layout

    problem = check_layout()
    if problem:
        raise RuntimeError(problem)
    current = sys.monitoring.get_tool(TOOL)
    if current is not None and current != "tracejit":
        raise RuntimeError(f"the optimizer monitoring tool id is taken by {current!r}")
    if current is None:
        sys.monitoring.use_tool_id(TOOL, "tracejit")
    sys.monitoring.register_callback(TOOL, EVENTS.JUMP, _on_jump)
    sys.monitoring.register_callback(TOOL, EVENTS.INSTRUCTION, _on_instruction)
    sys.monitoring.set_events(TOOL, EVENTS.JUMP)
    STATE.installed = True


def uninstall() -> None:
    if not STATE.installed:
        return
    _abort_recording(None)
    sys.monitoring.set_events(TOOL, 0)
    sys.monitoring.register_callback(TOOL, EVENTS.JUMP, None)
    sys.monitoring.register_callback(TOOL, EVENTS.INSTRUCTION, None)
    sys.monitoring.free_tool_id(TOOL)
    STATE.installed = False
    STATE.counters.clear()
    STATE.codes.clear()
    # disable() may be called from code a trace called, so traces may still be
    # on the C stack: keep their code mapped (retired), never free it here.
    STATE.retired.extend(STATE.cache.loops.values())
    STATE.cache.loops.clear()
    STATE.cache.bytes = 0


def _tools_active() -> bool:
    return sys.gettrace() is not None or sys.getprofile() is not None


def _on_jump(code: types.CodeType, src: int, dst: int) -> Any:
    if dst > src:
        return DISABLE  # not a back-edge
    rec = STATE.recording
    if rec is not None:
        if rec.thread != threading.get_ident():
            return None
        frame = sys._getframe(1)
        if frame is not rec.frame:
            if not _on_stack(rec.frame, frame):
                # The recorded frame was left (an exception unwound it).
                _abort_recording(AbortReason.FRAME_GONE)
                return _on_jump(code, src, dst)
            return None  # a callee's loop runs in the interpreter while recording
        if dst != rec.header:
            _abort_recording(AbortReason.INNER_LOOP)
            return None
        loop = _finish_recording(rec)
        if loop is None:
            return None
        return _enter(loop, frame)
    loop = STATE.cache.get(code, dst)
    if loop is not None:
        if _tools_active():
            return None
        return _enter(loop, sys._getframe(1))
    key = (id(code), dst)
    counter = STATE.counters.get(key)
    if counter is None:
        counter = _new_counter(code, dst)
    if counter.blacklisted:
        return DISABLE
    if not counter.tick():
        return None
    counter.reset()
    if _tools_active():
        _count_abort(code, dst, AbortReason.TOOL_ACTIVE)
        return None
    _start_recording(code, dst, sys._getframe(1))
    return None


def _on_stack(target: types.FrameType, frame: types.FrameType | None) -> bool:
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


def _enter(loop: CompiledLoop, frame: types.FrameType) -> Any:
    STATS.native_entries += 1
    loop.entries += 1
    # A negative result raises the trace's exception here (ctypes checks the error
    # indicator); the frame was already written back at the failing instruction.
    loop.compiled.entry(frame)
    STATS.guard_failures += 1
    if loop.entries % PROFIT_CHECK_ENTRIES == 0:
        _check_profit(loop)
    return None


# Every this many entries, a trace must have run this many iterations per entry
# on average: entering costs a Python callback (about as much as 40 native
# iterations), so a trace that leaves sooner is slower than the interpreter and
# is retired (bridges, later, keep such loops native).
PROFIT_CHECK_ENTRIES = 64
MIN_ITERATIONS_PER_ENTRY = 40


def _check_profit(loop: CompiledLoop) -> None:
    if loop.lowered.iterations.value >= MIN_ITERATIONS_PER_ENTRY * loop.entries:
        return
    if STATE.cache.get(loop.code, loop.header) is loop:
        del STATE.cache.loops[(id(loop.code), loop.header)]
        STATE.retired.append(loop)
    _count_abort(loop.code, loop.header, AbortReason.UNPROFITABLE,
                 f"{loop.lowered.iterations.value} iterations in {loop.entries} entries")


def _start_recording(code: types.CodeType, header: int, frame: types.FrameType) -> None:
    t0 = time.perf_counter()
    STATS.traces_started += 1
    try:
        rec = Recording(code, header, frame, threading.get_ident(), STATE.params.trace_limit)
        rec.start()
    except RecordingAborted as exc:
        _count_abort(code, header, exc.reason, exc.detail)
        return
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t0
    STATE.recording = rec
    sys.monitoring.set_local_events(TOOL, code, EVENTS.INSTRUCTION)


def _on_instruction(code: types.CodeType, offset: int) -> Any:
    rec = STATE.recording
    if rec is None or code is not rec.code or rec.thread != threading.get_ident():
        return None
    if sys._getframe(1) is not rec.frame:
        return None
    t0 = time.perf_counter()
    try:
        rec.step(offset)
    except RecordingAborted as exc:
        _abort_recording(exc.reason, exc.detail)
    except Exception as exc:  # a bug in the recorder must never break the program
        _abort_recording(AbortReason.BACKEND, f"internal error: {exc!r}")
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t0
    return None


def _stop_events(code: types.CodeType) -> None:
    sys.monitoring.set_local_events(TOOL, code, 0)


def _new_counter(code: types.CodeType, header: int) -> LoopCounter:
    STATE.codes[id(code)] = code
    counter = STATE.counters[(id(code), header)] = LoopCounter(STATE.params.threshold)
    return counter


def _count_abort(code: types.CodeType, header: int, reason: AbortReason,
                 detail: str = "") -> None:
    STATS.aborts[reason.value] += 1
    counter = STATE.counters.get((id(code), header))
    if counter is None:
        counter = _new_counter(code, header)
    counter.abort(STATE.params.threshold, STATE.params.max_aborts,
                  permanent=reason.value in PERMANENT_REASONS
                  or reason is AbortReason.UNPROFITABLE)
    jitlog.abort(code, header, reason.value, detail, counter.blacklisted)


def _abort_recording(reason: AbortReason | None, detail: str = "") -> None:
    rec = STATE.recording
    if rec is None:
        return
    STATE.recording = None
    _stop_events(rec.code)
    if reason is not None:
        _count_abort(rec.code, rec.header, reason, detail)


def _finish_recording(rec: Recording) -> CompiledLoop | None:
    from tracejit.backend.assembler import assemble
    from tracejit.backend.codegen import lower_trace
    from tracejit.ir.translate import translate
    from tracejit.opt import optimize

    STATE.recording = None
    _stop_events(rec.code)
    t0 = time.perf_counter()
    try:
        rec.finish()
        name = f"{rec.code.co_name}:{rec.header // 2}"
        trace = optimize(translate(rec, name))
        lowered = lower_trace(trace, rec.info.nlocalsplus, len(rec.entry_stack))
        compiled = assemble(lowered.code, lowered.nregs)
    except RecordingAborted as exc:
        _count_abort(rec.code, rec.header, exc.reason, exc.detail)
        return None
    except Exception as exc:  # never let a compiler bug reach the program
        _count_abort(rec.code, rec.header, AbortReason.BACKEND, repr(exc))
        return None
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t0
        rec.records.clear()
    loop = CompiledLoop(rec.code, rec.header, trace, lowered, compiled)
    STATE.cache.add(loop)
    STATS.traces_compiled += 1
    STATS.code_bytes = STATE.cache.bytes
    jitlog.compiled(loop)
    return loop
