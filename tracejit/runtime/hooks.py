"""CPython hooks: the monitoring callbacks that count, record, compile and link.

The JIT uses the monitoring tool id reserved for optimizers.  JUMP (loop
back-edges) and PY_START (function entry) events go to the native dispatcher
(``tj_dispatch``, see runtime/dispatch.py): where a root trace is compiled it
runs the trace on the calling frame, following exit links from trace to
trace, and returns to the interpreter, which continues at the ``instr_ptr``
the last exit wrote.  Everything else comes here, in Python:

- ``_fallback``: counting back-edges and calls; when hot, INSTRUCTION events
  are turned on for that code object and a trace is recorded; forward jumps
  and blacklisted locations return DISABLE, so they cost nothing afterwards;
- ``_on_instruction``: one recorded step; when the recording ends, the trace
  is compiled, registered and linked;
- ``_on_exit``: an exit taken often enough to be hot records a bridge from
  there.  (Error exits whose instruction has its own exception handler are
  unwound by the dispatcher, in C: ``tj_unwind``.)

Memory: code objects are held weakly.  When one dies, its counters,
dispatcher slots and traces go at once (the weakref callback runs before its
address can be reused); machine code taken out of use is unmapped once no
trace runs (``Dispatcher.running``).  Past ``code_cache_size`` bytes of
machine code, the least recently entered root traces are evicted with their
bridges.
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.ir.trace import entry_types
from tracejit.params import Params
from tracejit.recorder.record import (
    CO_GENERATOR_LIKE,
    LOOP_ENDED,
    MIN_FUNCTION_RECORDS,
    PERMANENT_REASONS,
    AbortReason,
    EntryTypes,
    Recording,
    RecordingAborted,
    code_info,
)
from tracejit.runtime import frames, jitlog
from tracejit.runtime.cache import (
    CodeCache,
    CompiledTrace,
    closure,
    handler_at,
    hot_threshold,
    unwinds_exactly,
)
from tracejit.runtime.counters import LoopCounter
from tracejit.runtime.dispatch import HELD_BIT, NEVER, Dispatcher, NativeTrace
from tracejit.runtime.resume import last_unit
from tracejit.stats import STATS

if TYPE_CHECKING:
    from tracejit.backend.assembler import CompiledCode
    from tracejit.backend.codegen import Lowered
    from tracejit.ir.trace import Trace

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

TOOL = sys.monitoring.OPTIMIZER_ID
EVENTS = sys.monitoring.events
DISABLE = sys.monitoring.DISABLE

# Bridges one root trace may grow (its whole tree), and failed attempts at one
# exit before it stops asking.
MAX_BRIDGES_PER_ROOT = 64
MAX_BRIDGE_ATTEMPTS = 3
# Traces of code marked huge, or of at least this many code units (a compiled
# template), call their commonest ops out of line (codegen _OUT_OF_LINE):
# such code runs about once per call, and its machine code is fetched from
# memory more often than it is run twice.
OUT_OF_LINE_UNITS = 8192
# JIT time always allowed before Params.jit_time_percent applies: a program's
# start compiles its first hot loops whatever it does next.
JIT_TIME_GRACE_S = 2.0


class _Tracked:
    """A code object the JIT counts or compiles for, held weakly."""

    __slots__ = ("offsets", "ref")

    def __init__(self, code: types.CodeType) -> None:
        code_id = id(code)
        def died(_: object) -> None:
            try:
                LOCK.run_soon(lambda: _code_died(code_id))
            except BaseException:
                pass  # at exit, with the runtime's modules torn down

        self.ref = weakref.ref(code, died)
        self.offsets: set[int] = set()  # counter keys


class _State:
    def __init__(self) -> None:
        self.params = Params()
        self.installed = False
        self.recording: Recording | None = None
        self.rec_key = 0  # dispatcher offset of the root being recorded
        self.rec_parent: tuple[CompiledTrace, int] | None = None
        # Back-edge and call counters, keyed by (id(code), offset); `codes`
        # holds those code objects weakly: what is keyed by the id of a code
        # object goes when it dies (_code_died), before the id can be reused.
        self.counters: dict[tuple[int, int], LoopCounter] = {}
        self.codes: dict[int, _Tracked] = {}
        self.cache = CodeCache()
        # Code objects whose traces hit the trace limit: traced in segments.
        self.huge: set[int] = set()
        self.dispatcher: Dispatcher | None = None
        # Traces taken out of use (their code object died, evicted, disable()):
        # unmapped as soon as no trace runs (until then one may be on a C stack).
        self.to_free: list[CompiledTrace] = []
        self.freed_guard_failures = 0
        self.sweep = 0  # eviction sweeps so far
        self.exit_registered = False
        self.enabled_at = time.perf_counter()  # start of the JIT's time budget
        # Code objects never inlined again (a trace inlining them could not be
        # compiled), by id; held weakly (an entry goes with its code object).
        self.no_inline: weakref.WeakValueDictionary[int, types.CodeType] = \
            weakref.WeakValueDictionary()
        # Code objects with INSTRUCTION events on for the current recording.
        self.events_on: dict[int, types.CodeType] = {}
        # Functions too small for PY_START to count that traces of big code
        # call (tj_call_py) instead of inlining: recorded at a direct call.
        self.wanted: set[int] = set()


STATE = _State()


class JitLock:
    """Serializes the JIT's Python code between threads.

    That code changes shared state (counters, cache, dispatcher table) in many
    steps, and the interpreter may switch threads, or run a garbage collection
    and its weakref callbacks, between any two of them.  While a thread holds
    the lock the dispatcher enters no native code (tj_state.busy), and events
    of other threads only count where they can: they are dropped when the
    lock is taken.  A weakref callback must act before the dead object's
    address is reused: it waits for the lock, or, when its own thread holds
    it (a collection inside JIT code), runs when that thread lets go."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner = 0  # thread ident, 0: free
        self._nesting = 0
        self._deferred: list[Callable[[], None]] = []

    def acquire(self, blocking: bool) -> bool:
        if not self._lock.acquire(blocking):
            return False
        self._nesting += 1
        if self._nesting == 1:
            self._owner = threading.get_ident()
            if STATE.dispatcher is not None:
                STATE.dispatcher.state.busy |= HELD_BIT  # (a property costs 1 us per recorded step)
        return True

    def release(self) -> None:
        if self._nesting == 1:
            while self._deferred:
                self._deferred.pop(0)()
            self._owner = 0
            if STATE.dispatcher is not None:
                STATE.dispatcher.state.busy &= ~HELD_BIT
        self._nesting -= 1
        self._lock.release()

    def mine(self) -> bool:
        return self._owner == threading.get_ident()

    def run_soon(self, action: Callable[[], None]) -> None:
        """Run `action` under the lock now, or when this thread lets go of it."""
        if self.mine():
            self._deferred.append(action)
            return
        self.acquire(True)
        try:
            action()
        finally:
            self.release()


LOCK = JitLock()


def install(params: Params) -> None:
    LOCK.acquire(True)
    try:
        _install(params)
    finally:
        LOCK.release()


def _install(params: Params) -> None:
    STATE.params = params
    if STATE.installed:
        return
    if not STATE.exit_registered:  # first install: the budget's clock starts
        STATE.enabled_at = time.perf_counter()
    # The compiler's modules are loaded now, not on the first compilation:
    # an import there, under the lock, could wait for a thread that waits for
    # the lock (see JitLock).
    import tracejit.backend.assembler  # noqa: F401
    import tracejit.backend.codegen  # noqa: F401
    import tracejit.ir.translate  # noqa: F401
    import tracejit.opt  # noqa: F401
    from tracejit.backend.layout import check_layout

    problem = check_layout()
    if problem:
        raise RuntimeError(problem)
    current = sys.monitoring.get_tool(TOOL)
    if current is not None and current != "tracejit":
        raise RuntimeError(f"the optimizer monitoring tool id is taken by {current!r}")
    if STATE.dispatcher is None:
        STATE.dispatcher = Dispatcher(_fallback, _on_exit, _on_instruction)
    if current is None:
        sys.monitoring.use_tool_id(TOOL, "tracejit")
    callback = STATE.dispatcher.callback
    events = EVENTS.JUMP
    sys.monitoring.register_callback(TOOL, EVENTS.JUMP, callback)
    if params.function_threshold > 0:
        sys.monitoring.register_callback(TOOL, EVENTS.PY_START, callback)
        events |= EVENTS.PY_START
    sys.monitoring.register_callback(TOOL, EVENTS.INSTRUCTION,
                                     STATE.dispatcher.instruction_callback)
    sys.monitoring.set_events(TOOL, events)
    STATE.installed = True
    if not STATE.exit_registered:
        atexit.register(_at_exit)
        STATE.exit_registered = True


def uninstall() -> None:
    LOCK.acquire(True)
    try:
        _uninstall()
    finally:
        LOCK.release()


def _uninstall() -> None:
    if not STATE.installed:
        return
    _stop_events()
    sync_stats()
    STATE.counters.clear()
    STATE.codes.clear()
    # disable() may be called from code a trace called, so traces may still be
    # on the C stack: they are freed once none runs.
    if STATE.dispatcher is not None:
        STATE.dispatcher.clear()
    _retire(STATE.cache.clear())


def _stop_events() -> None:
    _abort_recording(None)
    sys.monitoring.set_events(TOOL, 0)
    for event in (EVENTS.JUMP, EVENTS.PY_START, EVENTS.INSTRUCTION):
        sys.monitoring.register_callback(TOOL, event, None)
    sys.monitoring.free_tool_id(TOOL)
    STATE.installed = False


def _at_exit() -> None:
    """Interpreter shutdown: the JIT hears no more events.  What runs from
    here on (earlier atexit handlers, finalizers) runs in the interpreter,
    never calling JIT code while the modules it needs are torn down.  The
    traces and stats stay for whoever reads them."""
    LOCK.acquire(True)
    try:
        if STATE.installed:
            sync_stats()
            _stop_events()
    finally:
        LOCK.release()


def sync_stats() -> None:
    """Copy the counters native code keeps into STATS."""
    d = STATE.dispatcher
    if d is None:
        return
    STATS.native_entries = int(d.state.native_entries)
    STATS.trace_transfers = int(d.state.transfers)
    STATS.direct_calls = int(d.state.direct_calls)
    traces = STATE.cache.all() + STATE.to_free
    STATS.guard_failures = STATE.freed_guard_failures + sum(
        sum(t.lowered.counters) for t in traces)
    STATS.inlined_exits = sum(t.lowered.counters[e.index] for t in traces
                              for e in t.lowered.exits if e.inline)
    STATS.code_bytes = STATE.cache.bytes


def _tools_active() -> bool:
    return sys.gettrace() is not None or sys.getprofile() is not None


# ---------------------------------------------------------------- counting


def _fallback(code: types.CodeType, where: int, dst: int | None = None) -> Any:
    """Events the dispatcher did not handle: JUMP (code, src, dst) and
    PY_START (code, offset).  Called straight from C: frame 1 is the program's.
    Events of code the JIT itself runs, or that come while another thread
    runs JIT code, are not counted.  Callbacks never raise into the program:
    near its recursion limit (these frames count too) an event is skipped, and
    the program's own next call raises as it would."""
    try:
        if LOCK.mine() or not LOCK.acquire(False):
            return None
    except RecursionError:
        return None
    try:
        if STATE.to_free:
            _free_retired()
        frame = sys._getframe(1)
        if dst is None:
            return _on_py_start(code, where, frame)
        return _on_jump(code, where, dst, frame)
    except RecursionError:
        return None
    finally:
        LOCK.release()  # as deep as the acquire that succeeded


def _recording_elsewhere(frame: types.FrameType) -> bool:
    """While a recording runs, other events only count; True if this one is
    to be ignored (or the recording was abandoned, then False)."""
    rec = STATE.recording
    if rec is None:
        return False
    if rec.thread != threading.get_ident():
        return True
    # While the recorded frame runs, every event of its thread comes from it or
    # from code it called (walking the stack up from a deep recursion's
    # frames at each call would be quadratic).
    if frame is rec.frame or frames.running(rec.frame):
        return True
    # The recorded frame was left (an exception unwound it).
    _abort_recording(AbortReason.FRAME_GONE)
    return False


def _never_traced(code: types.CodeType) -> bool:
    """Code the JIT never compiles: generators and coroutines, and the JIT's
    own code."""
    return bool(code.co_flags & CO_GENERATOR_LIKE or code.co_filename.startswith(_PACKAGE_DIR))


_PACKAGE_DIR = __file__.rsplit("/", 2)[0] + "/"


def _on_jump(code: types.CodeType, src: int, dst: int, frame: types.FrameType) -> Any:
    if dst > src or _never_traced(code):
        return DISABLE  # not a back-edge, or never compiled
    if _recording_elsewhere(frame) or _tools_active():
        return None
    if STATE.cache.get(code, dst) is not None:
        return None  # compiled; the dispatcher runs it when it can
    counter = STATE.counters.get((id(code), dst))
    if counter is None:
        counter = _new_counter(code, dst, STATE.params.threshold)
    if counter.blacklisted:
        return DISABLE
    if not _tick(code, dst, counter) or _over_time_budget():
        return None
    _start_recording(code, dst, dst, frame, "loop")
    return None


def _on_py_start(code: types.CodeType, offset: int, frame: types.FrameType) -> Any:
    wanted = id(code) in STATE.wanted
    if _never_traced(code) or (len(code.co_code) // 2 < STATE.params.function_min_size
                               and not wanted):
        return DISABLE
    if _recording_elsewhere(frame) or _tools_active():
        return None
    if STATE.cache.get(code, offset) is not None:
        return None
    if wanted:
        # tj_call_py's countdown ran out at this call
        instr = code_info(code).instrs.get(offset)
        if instr is not None and instr.opname == "RESUME" and not _over_time_budget():
            _start_recording(code, instr.next_offset, offset, frame, "function")
        return None
    counter = STATE.counters.get((id(code), offset))
    if counter is None:
        counter = _new_counter(code, offset, _function_threshold(code))
    if counter.blacklisted:
        return DISABLE
    if not _tick(code, offset, counter) or _over_time_budget():
        return None
    instr = code_info(code).instrs.get(offset)
    if instr is None or instr.opname != "RESUME":
        return DISABLE
    _start_recording(code, instr.next_offset, offset, frame, "function")
    return None


def _tick(code: types.CodeType, offset: int, counter: LoopCounter) -> bool:
    """Count one event; True when the location is hot now.  Otherwise the
    dispatcher absorbs the events up to the next decision in native code
    (a Python call per back-edge would make lukewarm code much slower)."""
    if counter.tick():
        counter.reset()
        return True
    remaining = counter.threshold - counter.count
    if remaining > 1 and STATE.dispatcher is not None:
        STATE.dispatcher.count_down(code, offset, remaining)
        counter.count = counter.threshold - 1
    return False


def _record_at_next_event(code: types.CodeType, offset: int) -> None:
    """Make a location hot at its next event rather than after a full
    threshold (also in native code, where a countdown may be absorbing)."""
    counter = STATE.counters.get((id(code), offset))
    if counter is None:
        counter = _new_counter(code, offset, STATE.params.threshold)
    counter.count = max(counter.count, counter.threshold - 1)
    if STATE.dispatcher is not None:
        STATE.dispatcher.count_down(code, offset, 0)


def _over_time_budget() -> bool:
    """Whether the JIT has used its share of the run (Params.jit_time_percent);
    then a hot location counts again from zero instead of being recorded."""
    spent = STATS.time_in_jit_s
    if spent < JIT_TIME_GRACE_S or STATE.params.jit_time_percent >= 100:
        return False
    elapsed = time.perf_counter() - STATE.enabled_at
    if spent * 100 <= STATE.params.jit_time_percent * elapsed:
        return False
    STATS.aborts[AbortReason.OVER_TIME_BUDGET.value] += 1
    return True


def _function_threshold(code: types.CodeType) -> int:
    """Calls before a function is traced: `function_threshold` for ordinary
    functions, fewer for big ones (a call of a huge generated function is as
    much work as many calls of a small one)."""
    size = len(code.co_code) // 2
    return max(3, STATE.params.function_threshold * 64 // max(64, size))


def _new_counter(code: types.CodeType, offset: int, threshold: int) -> LoopCounter:
    _track(code).offsets.add(offset)
    counter = STATE.counters[(id(code), offset)] = LoopCounter(max(1, threshold))
    return counter


# ---------------------------------------------------------------- memory


def _track(code: types.CodeType) -> _Tracked:
    tracked = STATE.codes.get(id(code))
    if tracked is None or tracked.ref() is not code:
        tracked = STATE.codes[id(code)] = _Tracked(code)
    return tracked


def _code_died(code_id: int) -> None:
    """A code object the JIT knows is being deallocated: drop its counters,
    dispatcher slots and traces.  No frame runs it any more, so none of its
    traces is on a C stack (a trace runs on a frame of its own code); they are
    still freed through the safe point, like evicted ones."""
    try:
        tracked = STATE.codes.pop(code_id, None)
        if tracked is None:
            return
        for offset in tracked.offsets:
            STATE.counters.pop((code_id, offset), None)
        STATE.huge.discard(code_id)
        STATE.wanted.discard(code_id)
        if STATE.dispatcher is not None:
            STATE.dispatcher.forget_code(code_id)
        dead = STATE.cache.remove_code(code_id)
        if dead:
            _retire(dead)
    except Exception as err:  # a weakref callback: never let it reach the program
        _internal_error("freeing code", err)


def _retire(traces: list[CompiledTrace]) -> None:
    """Take traces out of use.  One may be running now (it called the code
    that evicted it, or freed an object it holds weakly): its retired flag
    makes it leave at its next check_instrumentation, right after that
    call-out, before it relies on anything it recorded again; its machine
    code is unmapped once no trace runs."""
    for t in traces:
        t.lowered.retired.value = 1
    STATE.to_free.extend(traces)
    STATS.code_bytes = STATE.cache.bytes
    _free_retired()


def _free_retired() -> None:
    """Unmap retired traces' machine code, unless some thread runs a trace now
    (then at the next fallback call)."""
    d = STATE.dispatcher
    if not STATE.to_free or (d is not None and d.running):
        return
    batch, STATE.to_free = STATE.to_free, []
    for t in batch:
        STATE.freed_guard_failures += sum(t.lowered.counters)
        t.free()
        STATS.traces_freed += 1


def _enforce_cache_size(keep: CompiledTrace) -> None:
    """Evict the least recently entered root traces (with their bridges) while
    the machine code exceeds code_cache_size; never `keep`'s tree or the tree a
    bridge is being recorded for."""
    cache = STATE.cache
    limit = STATE.params.code_cache_size
    if cache.bytes <= limit:
        return
    STATE.sweep += 1
    entries: dict[int, int] = {}
    for t in cache.all():
        r = t.root
        entries[id(r)] = entries.get(id(r), 0) + t.entries
    roots = list(cache.roots.values())
    for r in roots:
        n = entries.get(id(r), 0)
        if n != r.seen_entries:
            r.seen_entries = n
            r.last_used = STATE.sweep
    spare = {id(keep.root)}
    if STATE.rec_parent is not None:
        spare.add(id(STATE.rec_parent[0].root))
    for r in sorted(roots, key=lambda r: (r.last_used, r.seen_entries)):
        if cache.bytes <= limit:
            break
        if id(r) not in spare:
            _evict(r)


def _evict(top: CompiledTrace) -> None:
    """Take a trace and the bridges grown from it out of use.  Exits of other
    traces linked to a root wait for its next compilation (pending links); the
    exit a bridge grew from leaves to the interpreter again."""
    cache = STATE.cache
    code_id = top.code_id
    tree = [t for t in cache.by_code.get(code_id, []) if _grew_from(t, top)]
    gone = {id(t) for t in tree}
    addresses = {t.native.address for t in tree}
    for x in cache.by_code.get(code_id, []):
        if id(x) in gone:
            continue
        links = x.native.links
        for k in range(len(links)):
            if links[k] in addresses:  # a root, or top's parent exit
                links[k] = None
                if top.parent is None:
                    cache.pending.setdefault((code_id, top.key), []).append((x, k))
        x.successors = [s for s in x.successors if id(s) not in gone]
    cache.remove(tree)
    if STATE.dispatcher is not None and top.parent is None:
        STATE.dispatcher.drop(code_id, top.key)
    STATS.traces_evicted += len(tree)
    _retire(tree)


def _grew_from(t: CompiledTrace, top: CompiledTrace) -> bool:
    while True:
        if t is top:
            return True
        if t.parent is None:
            return False
        t = t.parent[0]


def _hold_weakly(t: CompiledTrace) -> None:
    """The objects a trace's machine code refers to (guarded globals, types,
    constants) are held weakly where they allow it: a strong reference could
    keep a dead function's module, and so its code, alive for ever (a cycle
    through the cache).  When one dies, the trace is taken out of use at
    once, before its address can be reused."""
    strong: dict[int, object] = {}
    weak: dict[int, weakref.ReferenceType[Any]] = {}
    died = _constant_died(t.native.handle)
    for obj in t.lowered.keepalive:
        if id(obj) in weak or id(obj) in strong:
            continue
        try:
            weak[id(obj)] = weakref.ref(obj, died)
        except TypeError:
            strong[id(obj)] = obj
    t.lowered.keepalive = list(strong.values())
    t.weak = list(weak.values())


def _constant_died(handle: int) -> Any:
    def evict() -> None:
        try:
            t = STATE.cache.by_handle.get(handle)
            if t is not None:
                _evict(t)
        except Exception as err:  # a weakref callback: never reach the program
            _internal_error("invalidating", err)

    def died(_: object) -> None:
        try:
            LOCK.run_soon(evict)
        except BaseException:
            pass  # at exit, with the runtime's modules torn down
    return died


def _internal_error(what: str, err: Exception) -> None:
    try:
        STATS.aborts[f"internal error {what}: {err!r}"[:80]] += 1
    except BaseException:
        pass  # at exit, with the runtime's modules torn down


# ---------------------------------------------------------------- recording


def _start_recording(code: types.CodeType, start: int, key: int, frame: types.FrameType,
                     kind: str, parent: tuple[CompiledTrace, int] | None = None) -> None:
    t0 = time.perf_counter()
    STATS.traces_started += 1
    roots = STATE.cache.roots
    code_id = id(code)
    params = STATE.params
    try:
        counter = STATE.counters.get((code_id, key)) if kind == "loop" else None
        rec = Recording(code, start, frame, threading.get_ident(), params.trace_limit,
                        kind=kind, segmenting=code_id in STATE.huge,
                        # a location that aborted before (a short loop caught at its
                        # last back-edge aborts once): record on past the loop's end
                        past_loop_end=counter is not None and counter.aborts > 0,
                        entry_types=lambda offset: _entry_types(roots.get((code_id, offset))),
                        max_inline_depth=params.max_inline_depth if params.inlining else 0,
                        min_function_records=1 if code_id in STATE.wanted
                        else MIN_FUNCTION_RECORDS,
                        may_inline=_may_inline_in_big if _is_big(code) else _may_inline,
                        pure_call=_pure_call,
                        enable_events=_enable_events)
        rec.start()
    except RecordingAborted as exc:
        _count_abort(code, key, exc.reason, exc.detail, parent)
        return
    except Exception as exc:  # a recorder bug must never break the program
        _count_abort(code, key, AbortReason.BACKEND, f"internal error: {exc!r}", parent)
        return
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t0
    STATE.recording = rec
    STATE.rec_key = key
    STATE.rec_parent = parent
    assert STATE.dispatcher is not None
    STATE.dispatcher.busy = True
    _enable_events(code)


def _entry_types(t: CompiledTrace | None) -> EntryTypes | None:
    return None if t is None else t.entry_types


def _set_local_events(code: types.CodeType, events: int) -> None:
    """Switch recording on or off for `code`: CPython instruments the whole
    code object (about 1 ms for a 100k-instruction generated function), so it
    counts as the JIT's time."""
    t0 = time.perf_counter()
    sys.monitoring.set_local_events(TOOL, code, events)
    STATS.time_in_jit_s += time.perf_counter() - t0


def _may_inline(code: types.CodeType) -> bool:
    return id(code) not in STATE.no_inline and not code.co_filename.startswith(_PACKAGE_DIR)


def _pure_call(code: types.CodeType) -> bool:
    """Whether a function of this code has a pure function trace (a call
    of it keeps the caller's checks, behind guard_pure_call)."""
    t = STATE.cache.get(code, 0)
    return t is not None and t.kind == "function" and t.pure


def _is_big(code: types.CodeType) -> bool:
    """Code marked huge, or a compiled template's size: its traces call the
    callees that have function traces instead of inlining a copy at every
    call site."""
    return id(code) in STATE.huge or len(code.co_code) // 2 >= OUT_OF_LINE_UNITS


def _may_inline_in_big(code: types.CodeType) -> bool:
    """In big code, a function tj_call_py can run natively is called, not
    inlined: one compiled copy serves every call site.  One that PY_START does
    not count (too small) is recorded at its WANT_CALLS-th direct call."""
    if not _may_inline(code):
        return False
    if code.co_cellvars or code.co_freevars or code.co_kwonlyargcount \
            or code.co_flags & _CALL_PY_REFUSED or _never_traced(code):
        return True
    compiled = STATE.cache.get(code, 0)
    if compiled is not None:
        # A function trace too short to pay for its entry is inlined.
        return compiled.kind == "function" and compiled.records < MIN_FUNCTION_RECORDS
    if STATE.dispatcher is not None and id(code) not in STATE.wanted:
        STATE.wanted.add(id(code))
        _track(code).offsets.add(0)
        STATE.dispatcher.want(code, 0, WANT_CALLS)
    return False


# Direct calls of a wanted function before it is recorded.
WANT_CALLS = 16


# Code flags tj_call_py leaves to vectorcall (CO_VARARGS, CO_VARKEYWORDS,
# CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR).
_CALL_PY_REFUSED = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200


def _enable_events(code: types.CodeType) -> None:
    if id(code) not in STATE.events_on:
        STATE.events_on[id(code)] = code
        _set_local_events(code, EVENTS.INSTRUCTION)


def _on_instruction(code: types.CodeType, offset: int) -> Any:
    rec = STATE.recording
    if rec is None or id(code) not in STATE.events_on or rec.thread != threading.get_ident():
        return None
    frame = sys._getframe(1)
    try:
        if LOCK.mine():
            return None
        LOCK.acquire(True)  # every step counts: wait for another thread's JIT code
    except RecursionError:
        return None  # the step is missed (see below)
    try:
        _record_step(rec, code, offset, frame)
    except RecursionError:
        pass  # at the program's recursion limit: the step is missed, and the
        # recording aborts at the next one (it did not follow from the last)
    finally:
        LOCK.release()
    return None


def _record_step(rec: Recording, code: types.CodeType, offset: int,
                 frame: types.FrameType) -> None:
    if STATE.recording is not rec:
        return  # abandoned while this thread waited
    t0 = time.perf_counter()
    try:
        if not rec.wants(code, frame):
            return
        rec.step(offset, frame)
    except RecordingAborted as exc:
        _abort_recording(exc.reason, exc.detail)
    except Exception as exc:  # a bug in the recorder must never break the program
        _abort_recording(AbortReason.BACKEND, f"internal error: {exc!r}")
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t0
    if rec.done and STATE.recording is rec:
        _finish_recording(rec)


def _stop_recording() -> Recording | None:
    rec = STATE.recording
    if rec is None:
        return None
    STATE.recording = None
    if STATE.dispatcher is not None:
        STATE.dispatcher.busy = False
    for code in STATE.events_on.values():
        _set_local_events(code, 0)
    STATE.events_on.clear()
    return rec


def _abort_recording(reason: AbortReason | None, detail: str = "") -> None:
    rec = _stop_recording()
    if rec is not None and reason is not None:
        _count_abort(rec.code, STATE.rec_key, reason, detail, STATE.rec_parent)


def _count_abort(code: types.CodeType, key: int, reason: AbortReason, detail: str = "",
                 parent: tuple[CompiledTrace, int] | None = None) -> None:
    STATS.aborts[reason.value] += 1
    if reason is AbortReason.TRACE_TOO_LONG:
        # Next time this code is traced in segments; no penalty for that.
        STATE.huge.add(id(code))
        jitlog.abort(code, key, reason.value, detail + " -> segmenting", False)
        if parent is not None:
            _retry_exit_later(parent, penalize=False)
        return
    if reason is AbortReason.INLINE_REFUSED:
        # The callee is called, not inlined, next time: retry soon, no penalty.
        jitlog.abort(code, key, reason.value, detail, False)
        if parent is not None:
            _retry_exit_later(parent, penalize=False)
            return
        _record_at_next_event(code, key)
        return
    if parent is not None:
        blacklisted = _retry_exit_later(parent, penalize=True)
        jitlog.abort(code, key, reason.value, detail + " (bridge)", blacklisted)
        return
    counter = STATE.counters.get((id(code), key))
    if counter is None:
        counter = _new_counter(code, key, STATE.params.threshold)
    counter.abort(STATE.params.threshold, STATE.params.max_aborts,
                  permanent=reason.value in PERMANENT_REASONS)
    jitlog.abort(code, key, reason.value, detail, counter.blacklisted)
    if reason is AbortReason.LEFT_LOOP and detail == LOOP_ENDED and counter.aborts == 1:
        # A short loop caught at its last back-edge: the next recording goes on
        # past the loop's end (Recording.past_loop_end); no need to wait.
        _record_at_next_event(code, key)


def _retry_exit_later(parent: tuple[CompiledTrace, int], penalize: bool) -> bool:
    t, k = parent
    fails = t.failed_bridges.get(k, 0) + (1 if penalize else 0)
    t.failed_bridges[k] = fails
    if fails >= MAX_BRIDGE_ATTEMPTS:
        t.native.hot_at[k] = NEVER
        return True
    wait = hot_threshold(STATE.params.trace_eagerness) * (2 ** fails)
    t.native.hot_at[k] = min(NEVER, int(t.native.counters[k]) + wait)
    return False


def _finish_recording(rec: Recording) -> None:
    from tracejit.backend.assembler import assemble
    from tracejit.backend.codegen import lower_trace
    from tracejit.ir.translate import translate
    from tracejit.opt import optimize

    _stop_recording()
    key, parent = STATE.rec_key, STATE.rec_parent
    t0 = time.perf_counter()
    # The compiler's objects die young and form no cycles: collections it
    # would trigger only traverse the program's heap (7% of the JIT's time on
    # the Tornado benchmark).  The count carries on from where it was.
    collecting = gc.isenabled()
    gc.disable()
    try:
        name = f"{rec.code.co_name}:{rec.header // 2}"
        trace = optimize(translate(rec, name))
        base = len(rec.entry_stack) if rec.end is not None and rec.end.kind == "loop" else 0
        out_of_line = id(rec.code) in STATE.huge or rec.info.instrs.units >= OUT_OF_LINE_UNITS
        lowered = lower_trace(trace, rec.info.nlocalsplus, base, rec.code, out_of_line)
        compiled = assemble(lowered.code, lowered.nregs)
    except RecordingAborted as exc:
        if exc.callee is not None:
            STATE.no_inline[id(exc.callee)] = exc.callee
        _count_abort(rec.code, key, exc.reason, exc.detail, parent)
        return
    except Exception as exc:  # never let a compiler bug reach the program
        _count_abort(rec.code, key, AbortReason.BACKEND, repr(exc), parent)
        return
    finally:
        if collecting:
            gc.enable()
        STATS.time_in_jit_s += time.perf_counter() - t0
        records = len(rec.records)
        rec.records.clear()
    # Installing and linking count as the JIT's time too.
    t1 = time.perf_counter()
    try:
        _install_trace(rec, key, parent, trace, lowered, compiled, records)
    finally:
        STATS.time_in_jit_s += time.perf_counter() - t1


def _install_trace(rec: Recording, key: int, parent: tuple[CompiledTrace, int] | None,
                   trace: Trace, lowered: Lowered, compiled: CompiledCode,
                   records: int) -> None:
    """Enter a compiled trace in the cache, the dispatcher and the trace graph."""
    cache = STATE.cache
    if parent is not None and cache.by_handle.get(parent[0].native.handle) is not parent[0]:
        compiled.free()  # the parent was evicted meanwhile: nothing would reach it
        STATS.aborts[AbortReason.BACKEND.value] += 1
        jitlog.abort(rec.code, key, AbortReason.BACKEND.value, "parent trace evicted", False)
        return
    handle = cache.new_handle()
    native = NativeTrace(compiled.address, lowered.counters, len(lowered.exits), handle,
                         lowered.inlined, trace.pure)
    kind = "bridge" if parent is not None else rec.kind
    t = CompiledTrace(kind, weakref.ref(rec.code), id(rec.code), key, rec.header, trace,
                      lowered, compiled, native, rec.end, parent,
                      entry_types=entry_types(trace) if parent is None else (),
                      records=records, pure=trace.pure)
    t.root_in_handler = parent[0].root_in_handler if parent is not None \
        else handler_at(rec.code, key) is not None
    if not unwinds_exactly(t, t.root_in_handler):
        t.free()  # never entered nor linked
        _count_abort(rec.code, key, AbortReason.BACKEND,
                     "an exception would leave a try block the root is in", parent)
        return
    _set_exit_policy(t)
    _track(rec.code)
    cache.add(t, handle)
    STATS.traces_compiled += 1
    STATS.inlined_calls += trace.inlined_calls
    if parent is not None:
        p, k = parent
        p.native.link(k, native)
        p.successors.append(t)
        STATS.bridges_compiled += 1
    else:
        assert STATE.dispatcher is not None
        STATE.dispatcher.add(rec.code, key, native)
        for src, exit_index in cache.pending.pop((id(rec.code), key), []):
            _link(src, exit_index, t)
    end = rec.end
    k_end = t.end_exit()
    if end is not None and k_end is not None and end.kind in ("backedge", "header"):
        target = cache.get(rec.code, end.target)
        if target is not None:
            _link(t, k_end, target)
        else:
            cache.pending.setdefault((id(rec.code), end.target), []).append((t, k_end))
            if end.kind == "backedge":
                # A trace wants to continue in that loop: record it at its next
                # back-edge rather than after a full threshold.
                _record_at_next_event(rec.code, end.target)
    if end is not None and end.kind == "segment":
        # The seed's table counts a trace cut at the limit as "segmenting trace".
        STATS.aborts[AbortReason.SEGMENTING.value] += 1
    jitlog.compiled(t)
    t.drop_ir()  # the IR holds the constants strongly
    _hold_weakly(t)
    _enforce_cache_size(t)
    STATS.code_bytes = cache.bytes


def _raise_delta(code: types.CodeType, pc: int, op: str) -> int:
    """Where CPython 3.13's RAISE event says an instruction failed, relative to
    the instruction's start (code units): one unit before it when a Python
    callee's exception comes back into the frame (the interpreter resumes with
    the error at the CALL; a call from a trace is assumed to be one), else the
    instruction's last unit (its inline caches included)."""
    if op in ("call", "call_kw", "call_nocode"):
        return -1
    return max(0, min(last_unit(code, pc) - pc, (1 << 13) - 2))


def _set_exit_policy(t: CompiledTrace) -> None:
    """Which exits call back when hot (to grow a bridge) and which unwind."""
    hot = hot_threshold(STATE.params.trace_eagerness)
    end = t.end
    for info in t.lowered.exits:
        if info.inline:
            # The rest of the callee ran through a resume object: no bridge
            # grows there; when hot, the callee is called instead
            # (_retrace_without).  When the callee raised, the exit fails at
            # the trace's CALL, as a call-out that raised (_raise_delta).
            handler = handler_at(t.code, info.pc * 2)
            if handler is not None:
                _, _, target, depth, lasti = handler
                t.native.set_handler(info.index, target, depth, lasti, -1)
            if not info.entry:
                t.native.hot_at[info.index] = hot
            continue
        if info.error:
            handler = handler_at(t.code, info.pc * 2)
            if handler is not None:
                _, _, target, depth, lasti = handler
                t.native.set_handler(info.index, target, depth, lasti,
                                     _raise_delta(t.code, info.pc, info.op))
        elif info.entry or info.op in ("check_instrumentation", "check_eval_breaker"):
            continue  # the trace does not apply now (a tool watches the code, or
            # the interpreter has work pending at an inner loop's back-edge)
        elif info.op == "exit":
            if end is not None and end.kind == "segment":
                t.native.hot_at[info.index] = 1  # a segment's end always grows on
        else:
            t.native.hot_at[info.index] = hot


def _link(src: CompiledTrace, exit_index: int, target: CompiledTrace) -> None:
    """Make src's exit continue in target, if every trace target leads to can
    unwind exactly for the roots src is entered from."""
    if src.root_in_handler:
        # (A walk of the whole graph: only for chains entered in a try block.
        # Keeping every trace's set of roots made each link of Mako's template,
        # about 600 linked traces, cost seconds.)
        reach = closure(target)
        if not all(unwinds_exactly(x, True) for x in reach):
            return
        for x in reach:
            x.root_in_handler = True
    src.native.link(exit_index, target.native)
    src.successors.append(target)


# ---------------------------------------------------------------- exits


def _on_exit(handle: int, code: int) -> Any:
    """Called by the dispatcher when exit `code` of a trace is hot (asked
    again later if another thread runs JIT code now)."""
    try:
        if LOCK.mine() or not LOCK.acquire(False):
            return None
    except RecursionError:
        return None  # at the program's recursion limit: asked again later
    try:
        t = STATE.cache.by_handle.get(handle)
        if t is not None:
            _on_hot_exit(t, code, sys._getframe(1))
    except RecursionError:
        pass
    except Exception as err:  # never let a JIT bug reach the program
        STATS.aborts[f"internal error at exit: {err!r}"[:80]] += 1
    finally:
        LOCK.release()
    return None


def _on_hot_exit(t: CompiledTrace, k: int, frame: types.FrameType) -> None:
    native = t.native
    native.hot_at[k] = NEVER
    info = t.lowered.exits[k]
    if info.inline:
        assert isinstance(info.callee, types.CodeType)
        _retrace_without(t, info.callee)
        return
    if info.global_name is not None:
        _retrace_varying(t, info.global_name)
        return
    if frame.f_code is not t.code or native.links[k]:
        return
    if STATE.recording is not None or _tools_active() or _over_time_budget():
        _retry_exit_later((t, k), penalize=False)
        return
    root = t
    while root.parent is not None:
        root = root.parent[0]
    if root.bridges >= MAX_BRIDGES_PER_ROOT:
        return
    root.bridges += 1
    pc = t.lowered.exits[k].pc * 2
    _start_recording(t.code, pc, pc, frame, "bridge", (t, k))


def _retrace_varying(t: CompiledTrace, name: str) -> None:
    """A guarded global often means another object (Tornado rebuilds a
    template's namespace for every render): traces of this code look it up at
    each use from now on, and those that guard it are recorded again.  A
    bridge per new value would never converge."""
    code = t.code
    code_info(code).varying_globals.add(name)
    reason = AbortReason.GLOBAL_VARIES
    STATS.aborts[reason.value] += 1
    jitlog.abort(code, t.key, reason.value, f"{name}: retracing", False)
    guarding = [x for x in STATE.cache.by_code.get(t.code_id, [])
                if any(e.global_name == name for e in x.lowered.exits)]
    # Evicting a trace takes the bridges grown from it: evict the topmost ones
    # (whose parents, if any, stay and may grow a bridge again).
    for x in guarding:
        if not any(y is not x and _grew_from(x, y) for y in guarding):
            parent = x.parent
            _evict(x)
            if parent is not None:
                _retry_exit_later(parent, penalize=False)
    if t.parent is None:
        _record_at_next_event(code, t.key)


def _retrace_without(t: CompiledTrace, callee: types.CodeType) -> None:
    """An exit inside an inlined call is taken often (the callee does not
    always do what it did while recording, and no bridge can grow inside it):
    that callee is called from now on, and the trace is recorded again."""
    STATE.no_inline[id(callee)] = callee
    reason = AbortReason.INLINE_EXIT_HOT
    STATS.aborts[reason.value] += 1
    jitlog.abort(t.code, t.key, reason.value, f"{callee.co_name}: retracing", False)
    parent = t.parent
    _evict(t)  # with its bridges; links to it wait for the new trace
    if parent is not None:
        _retry_exit_later(parent, penalize=False)
        return
    _record_at_next_event(t.code, t.key)
