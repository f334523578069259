"""Differential tests for the trace graph: bridges grown from hot exits, bridges
of bridges, links between traces (loop closing, nested loops, function entry
traces) and segmented traces of huge code.

Every program runs twice in fresh subprocesses, as in test_differential.py
(whose headers and ``Outcome`` are reused): plain, and with
``tracejit.enable(threshold=1, <params>)`` on its first line; stdout, stderr
(tracebacks included) and the exit code must be identical.  The JIT run also
writes ``tracejit.stats()`` at exit and logs every compiled trace
(``TRACEJIT_LOG``, one line per trace: its kind, the exit it grew from, how it
ends); each test asserts on both that the shape it is about really ran
natively: bridges compiled, transfers between traces, links, segments.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_differential import JIT_HEADER, PLAIN_HEADER, REPO_ROOT, Outcome

TIMEOUT = 60

_ENABLE_CALL = "_tj.enable(threshold=1, jit_time_percent=100)"
assert _ENABLE_CALL in JIT_HEADER, "test_differential's JIT header changed"


def jit_header(stats_path: Path, params: dict[str, int]) -> str:
    """test_differential's one-line JIT header with extra enable() keywords."""
    extra = "".join(f", {name}={value!r}" for name, value in sorted(params.items()))
    header = JIT_HEADER.replace(_ENABLE_CALL,
                                f"_tj.enable(threshold=1, jit_time_percent=100{extra})")
    return header.format(path=str(stats_path))


def _start(source: str, workdir: Path, header: str, log: Path | None) -> subprocess.Popen[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prog.py").write_text(header + "\n" + source)
    env = dict(os.environ)
    for name in ("TRACEJIT_LOG", "TRACEJIT_DUMP"):
        env.pop(name, None)
    if log is not None:
        env["TRACEJIT_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"
    return subprocess.Popen(
        [sys.executable, "prog.py"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], workdir: Path) -> Outcome:
    """The outcome, with the run's own directory written as <dir> (the two runs
    are concurrent, in different directories)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    d = str(workdir)
    return Outcome(out.replace(d, "<dir>"), err.replace(d, "<dir>"), proc.returncode)


# One compiled trace in the log, e.g.
# "[TRACE f:18] f /tmp/x/prog.py:2 @51 bridge from exit 14 of f:18 -> backedge @74, 26 IR ops, ..."
_TRACE_LINE = re.compile(
    r"^\[TRACE (?P<name>\S+)\] .*? @(?P<start>\d+) (?P<kind>loop|function|bridge)"
    r"(?: from exit \d+ of (?P<parent>\S+))?(?: -> (?P<end>\w+) @\d+)?, "
)


@dataclass(frozen=True)
class LoggedTrace:
    name: str
    kind: str  # loop, function, bridge
    parent: str | None  # name of the trace a bridge grew from
    end: str | None  # loop, backedge, header, return, segment, stop


@dataclass(frozen=True)
class Run:
    plain: Outcome
    jit: Outcome
    stats: dict[str, Any]
    traces: list[LoggedTrace]

    def ends(self, kind: str) -> list[LoggedTrace]:
        return [t for t in self.traces if t.end == kind]

    def bridges(self) -> list[LoggedTrace]:
        return [t for t in self.traces if t.kind == "bridge"]

    def of(self, function: str, kind: str | None = None) -> list[LoggedTrace]:
        """Traces of the program's function `function` (of that kind, if given)."""
        return [t for t in self.traces if t.name.startswith(function + ":")
                and (kind is None or t.kind == kind)]

    def bridge_depth(self) -> int:
        """Longest chain root -> bridge -> bridge ... in the log (names are not
        unique: a name counts at the smallest depth it was compiled at)."""
        depth: dict[str, int] = {}
        best = 0
        for t in self.traces:
            if t.kind == "bridge":
                d = depth.get(t.parent or "", 0) + 1
            else:
                d = 0
            depth[t.name] = min(depth.get(t.name, d), d)
            best = max(best, d)
        return best


def run_both(source: str, workdir: Path, **params: int) -> Run:
    source = textwrap.dedent(source)
    stats_path = workdir / "jit" / "stats.json"
    log_path = workdir / "jit" / "jit.log"  # the JIT appends to its log
    for stale in (stats_path, log_path):
        stale.unlink(missing_ok=True)
    plain_proc = _start(source, workdir / "plain", PLAIN_HEADER, None)
    jit_proc = _start(source, workdir / "jit", jit_header(stats_path, params), log_path)
    try:
        plain = _finish(plain_proc, workdir / "plain")
        jit = _finish(jit_proc, workdir / "jit")
    finally:
        for proc in (plain_proc, jit_proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stats: dict[str, Any] = {}
    if stats_path.exists():
        loaded = json.loads(stats_path.read_text())
        assert isinstance(loaded, dict)
        stats = loaded
    traces: list[LoggedTrace] = []
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            m = _TRACE_LINE.match(line)
            if m:
                traces.append(LoggedTrace(m["name"], m["kind"], m["parent"], m["end"]))
    return Run(plain, jit, stats, traces)


def check(source: str, workdir: Path, **params: int) -> Run:
    """Same behaviour plain and jitted, and at least one trace ran natively."""
    run = run_both(source, workdir, **params)
    assert run.jit.stdout == run.plain.stdout
    assert run.jit.stderr == run.plain.stderr
    assert run.jit.returncode == run.plain.returncode
    stats = run.stats
    assert stats, "the JIT run did not write its stats"
    assert stats["traces_compiled"] >= 1, stats
    assert stats["native_entries"] >= 1, stats
    assert len(run.traces) == stats["traces_compiled"], (run.traces, stats)
    return run


def assert_converges(stats: dict[str, Any]) -> None:
    """No endless retracing: recordings stay within a small multiple of compiled traces."""
    assert stats["traces_started"] <= 3 * stats["traces_compiled"] + 5, stats


# ------------------------------------------------------------ 1. bridges

FLIP = """
def flip(n, k):
    s = 0
    f = 0.0
    marks = []
    for i in range(n):
        if (i // k) % 2:
            s = s + i
            f = f + 0.5
        else:
            s = s - 3
            f = f * 1.001
        if i % 997 == 0:
            marks.append(s)
    return s, f, marks
for n in (1, 2, 7, 5000):
    print(n, flip(n, {k}))
"""


@pytest.mark.parametrize("k", [1, 3, 16, 1000])
def test_flip_every_k_grows_a_closing_bridge(k: int, tmp_path: Path) -> None:
    run = check(FLIP.format(k=k), tmp_path, trace_eagerness=2)
    stats = run.stats
    assert stats["bridges_compiled"] >= 1, stats
    # The bridge (the other arm of the if) closes the loop at the back-edge and
    # continues in the root: most of the 5000 iterations transfer natively.
    assert stats["trace_transfers"] > 1000, stats
    assert any(t.end == "backedge" for t in run.bridges()), run.traces
    assert_converges(stats)


def test_flip_default_eagerness(tmp_path: Path) -> None:
    """With the default trace_eagerness (200), a branch taken 1 in 3 grows a bridge too."""
    run = check(FLIP.format(k=1).replace("5000", "30000"), tmp_path)
    assert run.stats["bridges_compiled"] >= 1, run.stats
    assert run.stats["trace_transfers"] > 1000, run.stats


def test_flip_while_loop_and_continue(tmp_path: Path) -> None:
    """Bridges ending at a `continue` back-edge, in while and for loops, with
    unboxed ints and floats carried across the link back to the root."""
    source = """
    def cont(n):
        i = 0
        s = 0
        while i < n:
            i += 1
            if i % 3 == 0:
                s -= i
                continue
            s += i * 2
        return s
    print(cont(5000))
    def fcont(n):
        s = 0.0
        c = 0
        for i in range(n):
            if i % 4 == 1:
                s = s + 0.25
                c = c + 1
                continue
            s = s * 1.0000001 + i
        return s, c
    print(repr(fcont(4000)))
    def big(n):
        x = 2**62
        out = []
        for i in range(n):
            if i % 3 == 0:
                x = x + 2**61
            else:
                x = x - 2**61
            out.append(x)
        return out[-4:], x
    print(big(100))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 3, run.stats
    assert run.stats["trace_transfers"] > 1000, run.stats
    assert len(run.ends("backedge")) >= 3, run.traces


# ------------------------------------------------------------ 2. bridges of bridges


def test_phases_grow_bridges_of_bridges(tmp_path: Path) -> None:
    source = """
    def phases(n):
        s = 0
        counts = [0, 0, 0, 0, 0]
        for i in range(n):
            ph = i // 300
            if ph == 0:
                s += i
                counts[0] += 1
            elif ph == 1:
                s -= i
                counts[1] += 1
            elif ph == 2:
                if i % 2:
                    s ^= i
                    counts[2] += 1
                else:
                    s += 3
                    counts[3] += 1
            else:
                s = (s * 7 + i) % 1000003
                counts[4] += 1
        return s, counts
    print(phases(1500))
    print(phases(1500))
    print(phases(700))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 3, run.stats
    assert run.stats["trace_transfers"] > 1000, run.stats
    assert run.bridge_depth() >= 2, run.traces
    assert_converges(run.stats)


def test_global_rebound_every_run_is_looked_up_not_retraced(tmp_path: Path) -> None:
    """Code exec'd in a fresh namespace per run (what Tornado does for every
    render) sees a new object behind the same global each time: its guard's
    exit goes hot, the global is read at each use from then on, and the
    traces converge instead of growing a bridge per new object."""
    source = """
    SRC = '''
    def render(rows):
        out = []
        for r in rows:
            if isinstance(r, KINDS):
                out.append(LABEL + str(r))
            else:
                out.append('-')
        return ''.join(out)
    '''
    code = compile(textwrap.dedent(SRC), 'tmpl', 'exec')
    total = 0
    for k in range(300):
        ns = {'KINDS': (int, float), 'LABEL': 'v%d:' % (k % 3)}
        exec(code, ns)
        total += len(ns['render']([1, 2.5, 'x', 4] * 5))
    print(total)
    ns = {'KINDS': (str,), 'LABEL': None}
    exec(code, ns)
    try:
        ns['render'](['a'])
    except TypeError as e:
        print('TypeError', e)
    del ns['LABEL']
    try:
        ns['render'](['a'])
    except NameError as e:
        print('NameError', e)
    """
    run = check("import textwrap\n" + textwrap.dedent(source), tmp_path, trace_eagerness=5)
    assert run.stats["aborts"].get("guarded global varies", 0) >= 1, run.stats
    # a handful of traces of render (a global per retrace), not one per run
    assert 1 <= len(run.of("render")) <= 10, run.traces
    assert_converges(run.stats)


def test_type_changes_inside_bridge_path(tmp_path: Path) -> None:
    """A variable only the bridge touches is an int, then a float, then a str:
    the bridge's own guards fail and grow bridges of their own."""
    source = """
    def types_in_bridge(n):
        x = 0
        s = 0
        seen = []
        for i in range(n):
            if i % 4 == 0:
                if i < 300:
                    x = i
                elif i < 600:
                    x = i * 0.5
                else:
                    x = 'ab' * (i % 3)
                y = x + x
                s = s + len(str(y))
                if i % 100 == 0:
                    seen.append(y)
            else:
                s = s + 1
        return s, x, seen
    print(types_in_bridge(1000))
    def carried(n):
        v = 0
        out = []
        for i in range(n):
            if i % 3:
                v = v + 1
            elif i < 200:
                v = i
            elif i < 400:
                v = i * 0.5
            else:
                v = 'x' * (i % 4)
                v = len(v)
            if i % 50 == 0:
                out.append(v)
        return v, out
    print(carried(600))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 3, run.stats
    assert run.bridge_depth() >= 2, run.traces
    assert run.stats["trace_transfers"] > 100, run.stats


def test_exceptions_raised_inside_bridges(tmp_path: Path) -> None:
    """ZeroDivisionError, IndexError and KeyError raised on the bridge's path,
    caught by a handler inside the loop body and by one around the loop."""
    source = """
    def inside(n, data, table):
        s = 0
        caught = [0, 0, 0]
        for i in range(n):
            if i % 4 == 0:
                try:
                    s += 100 // (i % 50 - 48)
                    s += data[i % 13]
                    s += table[i % 11]
                except ZeroDivisionError:
                    caught[0] += 1
                    s -= 1
                except IndexError:
                    caught[1] += 1
                    s += 2
                except KeyError:
                    caught[2] += 1
                    s ^= 5
            else:
                s += 1
        return s, caught
    table = {}
    for k in range(10):
        table[k] = k * k
    print(inside(4000, list(range(12)), table))
    def outside(n, data, table):
        s = 0
        i = -1
        try:
            for i in range(n):
                if i % 3 == 0:
                    s += data[i // 3] + table[i % 500]
                else:
                    s += 1
        except IndexError as e:
            print('IndexError', e, i, s)
        except KeyError as e:
            print('KeyError', e, i, s)
        return s
    t2 = {}
    for k in range(500):
        t2[k] = -k
    print(outside(3000, list(range(700)), t2))
    del t2[77]
    print(outside(3000, list(range(1000)), t2))
    def zde(n, d):
        s = 0
        try:
            for i in range(n):
                if i & 1:
                    s += 1000 // (d - i)
                else:
                    s -= 1
        except ZeroDivisionError as e:
            print('ZeroDivisionError', e, i, s)
        return s
    print(zde(1000, 801), zde(1000, 800), zde(1000, 2000))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    for function in ("inside", "outside", "zde"):
        assert run.of(function, "bridge"), run.traces
    assert run.stats["trace_transfers"] > 100, run.stats


def test_bridge_exception_uncaught_traceback(tmp_path: Path) -> None:
    """An exception on a bridge's path that nobody catches: same traceback."""
    source = """
    def f(n, table):
        s = 0
        for i in range(n):
            if i % 2:
                s += table[i % 300]
            else:
                s += 1
        return s
    t = {}
    for k in range(299):
        t[k] = k
    print(f(200, t))
    print(f(2000, t))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert "KeyError: 299" in run.jit.stderr
    assert run.of("f", "bridge"), run.traces
    assert run.stats["trace_transfers"] > 10, run.stats


def test_values_live_across_exits(tmp_path: Path) -> None:
    """Locals modified on a trace (kept unboxed in registers) before an exit
    must be in the frame when the interpreter, a handler or a bridge continues."""
    source = """
    def live(n, d):
        a = 0
        b = 0
        f = 0.5
        last = None
        try:
            for i in range(n):
                a = a + i
                f = f * 1.5 - a
                if i % 2:
                    b = b + 1
                    last = i
                    a = a - 100 // (d - i)
                else:
                    b = b - 1
                    f = f / 3.0
        except ZeroDivisionError:
            print('live', i, a, b, repr(f), last)
        return a, b, repr(f)
    print(live(1000, 501))
    print(live(1000, 2000))
    def mid_expr(n):
        out = []
        s = 0
        for i in range(n):
            s = s + (i if i % 3 else -i) * (2 if i % 5 else 3)
            out.append(max(s, i if i % 7 else 0))
        return s, sum(out)
    print(mid_expr(2000))
    def g(a, b, c):
        return a * 100 + b * 10 + c
    def in_call(n):
        s = 0
        for i in range(n):
            s += g(i, i % 4 if i % 2 else -1, 7)
        return s
    print(in_call(2000))
    def float_live(n):
        x = 0.0
        y = 1
        for i in range(n):
            x = x + 0.5
            y = y * 3 % 1000
            if i % 10 == 9:
                x = x * 1.0001
                y = y + 1
                if i % 100 == 99:
                    print('chk', i, repr(x), y)
        return x, y
    print(float_live(600))
    def overflow(n):
        x = 1
        y = 1
        for i in range(n):
            if i % 2:
                y = y * 3
            else:
                x = x + 1
        return x, y % 1000003, y.bit_length()
    print(overflow(400))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 5, run.stats
    assert run.stats["trace_transfers"] > 1000, run.stats


def test_local_deleted_then_loop_reentered(tmp_path: Path) -> None:
    """A local the loop reads is type-guarded at the trace's entry; entering
    again after `del` must fail that guard, not read through NULL (segfaulted
    before 053795d)."""
    source = """
    def f(n):
        v = 0
        out = 0
        for i in range(n):
            if i == 3:
                del v
            if i < 3:
                out += v
        return out
    print(f(10))
    """
    run = check(source, tmp_path)
    assert run.stats["native_entries"] >= 5, run.stats  # entered after the del


def test_local_deleted_caught_in_loop(tmp_path: Path) -> None:
    """As above, with the UnboundLocalError caught in the loop body (segfaulted
    before 053795d)."""
    source = """
    def unbound(n):
        out = 0
        for i in range(n):
            if i % 5 == 0:
                v = i
            if i % 7 == 3:
                del v
            try:
                out += v
            except UnboundLocalError:
                out -= 1
        return out
    print(unbound(2000))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["native_entries"] >= 100, run.stats


# ------------------------------------------------------------ 3. nested loops


def test_nested_inner_first_outer_links_and_exit_bridge(tmp_path: Path) -> None:
    """The inner loop is compiled first; the outer loop's trace ends at the inner
    header (linked); the exhausted inner loop's exit grows a bridge that runs
    the rest of the outer body and closes at the outer back-edge."""
    source = """
    def nest(n, m):
        s = 0
        for i in range(n):
            t = i
            for j in range(m):
                t = t + j
            s = s + t
        return s
    print(nest(300, 50))
    print(nest(3, 500))
    print(nest(500, 1))
    print(nest(200, 0))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.ends("header"), run.traces  # outer root linked to the inner loop
    assert any(t.end == "backedge" for t in run.bridges()), run.traces
    assert run.stats["bridges_compiled"] >= 1, run.stats
    # Each outer iteration goes outer -> inner -> bridge -> outer natively.
    assert run.stats["trace_transfers"] > 600, run.stats
    assert_converges(run.stats)


def test_linked_inner_loop_entered_before_its_variable_is_bound(tmp_path: Path) -> None:
    """The outer trace links to the inner loop's trace, which carries `j` unboxed:
    with an empty inner range `j` was never bound (segfaulted before 053795d)."""
    source = """
    def nest(n, m):
        s = 0
        for i in range(n):
            t = i
            for j in range(m):
                t = t + j
            s = s + t
        return s
    print(nest(300, 50))
    print(nest(200, 0))
    """
    run = check(source, tmp_path)
    assert run.ends("header"), run.traces
    assert run.stats["trace_transfers"] > 200, run.stats


def test_nested_break_continue_else(tmp_path: Path) -> None:
    source = """
    def nest_bc(rows):
        total = 0
        found = 0
        first = -1
        for r in range(len(rows)):
            row = rows[r]
            for x in row:
                if x < 0:
                    continue
                if x > 90:
                    found = found + 1
                    if first < 0:
                        first = r
                    break
                total += x
            else:
                total -= 1
        return total, found, first
    rows = []
    for i in range(400):
        rows.append([(i * 37 + j * 11) % 100 - 5 for j in range(i % 17)])
    print(nest_bc(rows))
    def search(n):
        hits = 0
        for a in range(2, n):
            for b in range(2, a):
                if a % b == 0:
                    break
                if b * b > a:
                    hits += 1
                    break
            else:
                hits += 100
        return hits
    print(search(2000))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 2, run.stats
    assert run.stats["trace_transfers"] > 100, run.stats


def test_nested_inner_while(tmp_path: Path) -> None:
    source = """
    def inner_while(n):
        s = 0
        for i in range(n):
            k = i
            while k > 0:
                s += k & 3
                k >>= 1
            s += 1
        return s
    print(inner_while(3000))
    def triple(n):
        s = 0
        for a in range(n):
            for b in range(a):
                c = 0
                while c < b:
                    s += a ^ b ^ c
                    c += 3
        return s
    print(triple(60))
    def outer_while(n):
        i = 0
        s = 0
        while i < n:
            for j in range(i % 9):
                s += j * i
            i += 1
        return s
    print(outer_while(3000))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 2, run.stats
    assert run.stats["trace_transfers"] > 1000, run.stats


def test_nested_generic_iterators(tmp_path: Path) -> None:
    source = """
    def gen(n):
        for i in range(n):
            yield i * 2
    def iters(lst, tup, d):
        s = 0
        for x in lst:
            for y in tup:
                s += x * y
        for k, v in d.items():
            for y in tup:
                s += k - v * y
        for i, x in enumerate(lst):
            for j in range(i % 5):
                s += i ^ x ^ j
        for a, b in zip(lst, tup * 60):
            for c in (a, b):
                s += a - b + c
        for g in gen(300):
            for h in gen(g % 7):
                s += g + h
        for x in lst:
            for y in reversed(tup):
                s -= y
        for ch in 'abcdefgh' * 30:
            for y in tup:
                s += len(ch) * y
        return s
    d = {}
    for i in range(300):
        d[i] = i * 3
    print(iters(list(range(200)), (1, 2, 3, 5), d))
    print(iters([], (), {}))
    print(iters(list(range(-5, 5)), (7,), {1: 1}))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert len(run.of("iters", "loop")) >= 8, run.traces
    assert len(run.ends("header")) >= 2, run.traces
    assert len(run.of("iters", "bridge")) >= 3, run.traces
    assert run.stats["trace_transfers"] > 1000, run.stats


def test_function_with_loop_called_often(tmp_path: Path) -> None:
    """Early return from inside a loop, in a function called many times: exits
    leading to the return grow bridges ending in `return`."""
    source = """
    def early(xs, limit):
        s = 0
        for x in xs:
            if x > limit:
                return -s
            s += x
        return s
    tot = 0
    for k in range(600):
        tot += early(range(k % 40), k % 50)
    print(tot)
    def count_until(xs, stop):
        n = 0
        i = 0
        while i < len(xs):
            if xs[i] == stop:
                return n
            n += xs[i]
            i += 1
        return -1
    data = list(range(30))
    acc = 0
    for k in range(600):
        acc += count_until(data, k % 35)
    print(acc)
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.stats["bridges_compiled"] >= 1, run.stats
    assert any(t.end == "return" for t in run.bridges()), run.traces


# ------------------------------------------------------------ 4. function entry traces

STRAIGHT = """
def straight(a, b, c):
    x = a + b
    y = x * c
    z = y - a
    w = z ^ b
    v = w | c
    u = v & 1023
    t = u + x + y
    r = t % 97
    q = r * r - t // 3
    if r > 90:
        raise ValueError(r)
    if c == 7:
        return 0.5 * t + q
    if c == 8:
        return None
    if c == 9:
        return str(q)
    return r + 1 + q
"""


def test_function_entry_trace(tmp_path: Path) -> None:
    """Many calls from module level (not traced: STORE_NAME) enter the
    function's own trace; its exits (other return types, a raise) grow bridges."""
    source = STRAIGHT + """
out = []
for i in range(500):
    try:
        out.append(straight(i, i * 3, i % 10))
    except ValueError as e:
        out.append(-e.args[0])
print(sum(x for x in out if isinstance(x, int)), out.count(None))
print([x for x in out if isinstance(x, float)][:5], [x for x in out if isinstance(x, str)][:5])
print(straight(2, 1, 3))
for args in ((1, 2, 'c'), (2.5, 1, 3)):
    try:
        straight(*args)
    except TypeError as e:
        print('TypeError', e)
print(straight(2**62, 2**62, 3))
"""
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_eagerness=2)
    assert run.of("straight", "function"), run.traces
    assert run.of("straight", "bridge"), run.traces
    assert run.stats["native_entries"] >= 100, run.stats


def test_function_entry_trace_uncaught_traceback(tmp_path: Path) -> None:
    source = STRAIGHT + """
for i in range(2000):
    straight(i, i * 5, 3)
"""
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_eagerness=2)
    assert "ValueError" in run.jit.stderr
    assert run.of("straight", "function"), run.traces


def test_function_called_from_jitted_loop(tmp_path: Path) -> None:
    source = STRAIGHT + """
def loop(n):
    s = 0
    for i in range(n):
        try:
            r = straight(i, 7, i % 7)
        except ValueError:
            r = -1
        if r is None:
            r = 0
        s = s + r
    return s
print(loop(3000))
for i in range(100):
    straight(i, i, i)
print(straight(5, 6, 7))
"""
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_eagerness=2)
    # The loop's trace inlines the call; the later calls from the (untraced)
    # module level enter the function's own trace.
    assert run.of("loop", "loop"), run.traces
    assert run.of("straight", "function"), run.traces
    assert run.stats["native_entries"] >= 100, run.stats


def test_function_entry_recursion(tmp_path: Path) -> None:
    source = """
    def fib(n, depth):
        a = n * 2 + 1
        b = a * 3 - n
        c = (a ^ b) & 255
        d = c + a - b
        e = d * 2 + c
        if n < 2:
            return n + 0 * e
        return fib(n - 1, depth + 1) + fib(n - 2, depth + 1) + 0 * (e - e)
    print([fib(k, 0) for k in range(20)])
    def walk(node, acc):
        val = node[0]
        kids = node[1]
        x = val * 3 + acc
        y = x ^ 21
        z = y % 1000
        w = z + x - y
        q = w * 2 - z
        total = q - q + val
        for kid in kids:
            total = total + walk(kid, acc + 1)
        return total
    def tree(d):
        if d == 0:
            return (d, [])
        return (d, [tree(d - 1), tree(d - 1)])
    print(walk(tree(10), 0))
    def deep(n):
        a = n + 1
        b = a * 2
        c = b - 1
        d = c * c
        e = d % 7
        f = e + a + b + c
        if n == 0:
            raise RecursionError('bottom %d' % f)
        return deep(n - 1) + 1
    try:
        deep(300)
    except RecursionError as e:
        print(e)
    """
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_eagerness=2)
    assert run.of("fib", "function"), run.traces
    assert run.of("walk", "function"), run.traces
    assert run.of("fib", "bridge"), run.traces
    assert run.stats["native_entries"] >= 1000, run.stats


def test_function_entry_links_to_loop(tmp_path: Path) -> None:
    """A function-entry trace that reaches its loop's header links to the loop
    trace; the loop's exhausted exit grows a bridge to the return."""
    source = """
    def summ(xs, k):
        a = k * 2
        b = a + 1
        c = a * b
        d = c % 11
        e = d + a + b
        s = e - e
        for x in xs:
            s = s + x * k
        return s + d
    data = list(range(20))
    tot = 0
    for k in range(1000):
        tot += summ(data, k % 13)
    print(tot)
    print(summ([], 3), summ([1.5, 2.5], 2), summ(range(3), True))
    """
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_eagerness=2)
    kinds = {t.kind for t in run.traces}
    assert "loop" in kinds, run.traces
    assert run.stats["trace_transfers"] > 100, run.stats


def test_function_entry_links_into_range_loop(tmp_path: Path) -> None:
    """A function-entry trace that reaches a range loop whose loop variable
    (carried unboxed) is not bound yet (linking there segfaulted before 053795d,
    default parameters included).  The loop's entry guards would fail on the
    unbound variable, so the recording goes round the loop once and links at
    its back-edge."""
    source = """
    def f(n):
        s = n + n + n + n + n + n + n + n + n + n
        for i in range(n):
            s += i
        return s
    tot = 0
    for k in range(600):
        tot += f(k % 5)
    print(tot)
    def summ(n, k):
        a = k * 2
        b = a + 1
        c = a * b
        d = c % 11
        e = d + a + b
        s = e - e
        for x in range(n):
            s = s + x * k
        return s + d
    tot = 0
    for k in range(1000):
        tot += summ(20, k % 13)
    print(tot, summ(0, 1), summ(2, 0.5))
    """
    run = check(source, tmp_path, function_threshold=2, function_min_size=1)
    assert any(t.kind == "function" and t.end == "backedge" for t in run.traces), run.traces
    assert run.stats["trace_transfers"] > 500, run.stats


# ------------------------------------------------------------ 5. segments


def _long_function_source(lines: int) -> str:
    out = ["def long(x, i, mode):"]
    for k in range(lines):
        m = k % 6
        if m == 0:
            out.append(f"    x = x * 3 + i % {k % 7 + 2}")
        elif m == 1:
            out.append(f"    x = x % 1000003 - {k}")
        elif m == 2 and k % 60 == 2:
            out.append(f"    if mode == {k % 3}:\n        x = x + {k}\n    else:\n"
                       f"        x = x ^ {k * 3}")
        elif m == 3:
            out.append(f"    y = x // {k % 11 + 1}")
        elif m == 4 and k % 100 == 4:
            out.append("    if i % 50 == 49:\n        x = x + 0.5\n        x = int(x)")
        else:
            out.append("    x = (x + y) % 999983")
    out.append("    return x")
    return "\n".join(out) + "\n"


def test_segmented_long_function(tmp_path: Path) -> None:
    source = _long_function_source(300) + """
total = 0
for i in range(300):
    total = total + long(i, i, i // 100)
print(total)
print(long(2**70, 3, 1), long(-5, 7, 0))
try:
    long('x', 1, 1)
except TypeError as e:
    print('TypeError', e)
"""
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_limit=40)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert run.ends("segment"), run.traces
    assert stats["traces_compiled"] >= 5, stats
    assert stats["bridges_compiled"] >= 4, stats
    assert stats["trace_transfers"] > 100, stats
    assert_converges(stats)


def test_segmented_long_function_eager(tmp_path: Path) -> None:
    """Segments plus eager bridges from every branch (bounded per root)."""
    source = _long_function_source(300) + """
total = 0
for i in range(300):
    total = total + long(i, i, i % 3)
print(total)
"""
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_limit=40,
                trace_eagerness=2)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert stats["bridges_compiled"] >= 4, stats
    assert_converges(stats)


DIRECT_HELPERS = """
import sys

def tag(s):
    if isinstance(s, str):
        return s.replace("&", "&amp;").replace("<", "&lt;")
    return str(s)

TRIG = [0]
G2 = 10
def scale(x, k):
    global G2
    if TRIG[0] == 1:
        TRIG[0] = 2
        G2 = 20
    return x * k + 1

D = {i: i * 3 + 1 for i in range(5)}
def pick(d, k):
    return d[k]

def where(x):
    return sys._getframe(1).f_code.co_name + ":" + str(x)

K = 3
def bump(x):
    return x + K

G = 1
def flip(x):
    # long enough (24 instructions) to be called rather than inlined
    global G
    y = x * 3 + 1
    y = y * 5 - 2
    y = y % 7 + x
    y = y * 2 - x
    y = y + 11
    if x == 350:
        G = 2
    return x + y - y
"""


def _long_caller_source(lines: int, name: str = "render") -> str:
    """A function too long for one trace that calls small functions at many
    sites (a compiled template's shape)."""
    out = [f"def {name}(x, s, mode):", "    parts = []", "    i0 = x"]
    for k in range(lines):
        m = k % 5
        if m == 0:
            out.append(f"    parts.append(tag(s + '<{k}>'))")
        elif m == 1:
            # G2, checked before the call, is read again after it: at
            # render(350, ...) scale rebinds it (a trace that ran scale's
            # pure trace alone to its return keeps the check)
            out.append(f"    x = G2 + scale(x, {k % 7 + 2}) % 100003 - G2")
        elif m == 2:
            out.append(f"    x = x + bump({k}) + G")
            if k % 50 == 27:
                # G checked before the call is read again after it: flip
                # rebinds it once, at render(350, ...)
                out.append("    x = x + G * flip(i0)")
                out.append("    x = x + G")
        elif m == 3 and k % 40 == 3:
            out.append("    if mode == 2:\n        parts.append(where(x))")
        elif m == 3:
            out.append(f"    x = x + pick(D, mode - 1 + {k % 3})")
        else:
            out.append(f"    parts.append(tag(x % {k + 7}))")
    out.append("    return x, len(''.join(parts))")
    return "\n".join(out) + "\n"


def test_huge_code_calls_small_functions_directly(tmp_path: Path) -> None:
    """Huge code calls small functions through their own compiled traces
    (one copy for every call site) instead of inlining them: the same output,
    tracebacks included, when a callee raises, looks at its caller's frame,
    finds a global rebound (its trace exits; the caller leaves after the
    call), or rebinds a global the caller checked before the call."""
    # warm's traces get the callees recorded (at their 16th direct call), so
    # render's are compiled with pure calls
    source = DIRECT_HELPERS + _long_caller_source(200, "warm") + _long_caller_source(200) + """
for i in range(50):
    warm(i, "a&b", 1)
total = 0
for i in range(400):
    if i == 300:
        K = 4
    if i == 350:
        TRIG[0] = 1
    total += render(i, "a&b", 1 + i % 3)[0]
print(total, render(7, "x<y", 2))
try:
    render(5, "z", 0)
except KeyError:
    import traceback
    print(traceback.format_exc())
render(4, "q", 0)
"""
    run = check(source, tmp_path, function_threshold=2, trace_limit=60)
    stats = run.stats
    assert "in pick\n" in run.plain.stderr and "KeyError" in run.plain.stderr
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert stats["direct_calls"] > 1000, stats


def test_segmented_long_loop_body(tmp_path: Path) -> None:
    body = ["def loop(n):", "    acc = 0", "    for i in range(n):", "        x = i"]
    for k in range(120):
        body.append(f"        x = (x * {k % 5 + 2} + {k}) % 10007")
        if k % 40 == 39:
            body.append("        if x % 3 == 0:\n            acc = acc - x")
    body.append("        acc = acc + x")
    body.append("    return acc")
    source = "\n".join(body) + "\nprint(loop(500))\nprint(loop(3))\n"
    run = check(source, tmp_path, trace_limit=40)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert run.ends("segment"), run.traces
    assert stats["bridges_compiled"] >= 4, stats
    # The last segment closes the loop: iterations stay native.
    assert any(t.end == "backedge" for t in run.bridges()), run.traces
    assert stats["trace_transfers"] > 2000, stats
    assert_converges(stats)


def test_segmented_loop_with_exceptions(tmp_path: Path) -> None:
    """Segments of a long loop body whose later part raises and catches."""
    body = ["def loop(n, d):", "    acc = 0", "    for i in range(n):", "        x = i"]
    for k in range(60):
        body.append(f"        x = (x * {k % 5 + 2} + {k}) % 10007")
    body.append("        try:")
    body.append("            acc = acc + 1000 // (i % d - d + 1)")
    body.append("        except ZeroDivisionError:")
    body.append("            acc = acc - x")
    for k in range(60):
        body.append(f"        x = (x + {k}) % 1009")
    body.append("        acc = acc + x")
    body.append("    return acc")
    source = "\n".join(body) + "\nprint(loop(500, 7))\nprint(loop(500, 1000))\n"
    run = check(source, tmp_path, trace_limit=40, trace_eagerness=2)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert stats["bridges_compiled"] >= 3, stats
    assert_converges(stats)


def test_segments_link_into_loops(tmp_path: Path) -> None:
    """Segments of a huge function end at loop headers (linked), and the loops'
    exits continue in bridges to the return."""
    source = """
    def g(n, k):
        a = k * 2
        b = a + 1
        c = a * b
        d = c % 11
        e = d + a + b
        a = k * 2
        b = a + 1
        c = a * b
        d = c % 11
        e = d + a + b
        s = e - e
        it = 0
        while it < n:
            s = s + it * k
            it += 1
        for x in range(k % 4):
            s += x
        for y in (1, 2, 3):
            s -= y
        return s + d
    tot = 0
    for k in range(300):
        tot += g(k % 20, k % 13)
    print(tot)
    """
    run = check(source, tmp_path, function_threshold=2, function_min_size=1, trace_limit=20)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert run.ends("segment"), run.traces
    assert run.ends("header"), run.traces
    assert stats["trace_transfers"] > 500, stats
    assert_converges(stats)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_tiny_trace_limits(limit: int, tmp_path: Path) -> None:
    """Segments of one or a few instructions: loops, bridges, links and early
    returns still run the same, and recording converges."""
    source = FLIP.format(k=3) + textwrap.dedent("""
    def nest(n, m):
        s = 0
        for i in range(n):
            t = i
            for j in range(m):
                t = t + j * 0.5 if j % 3 else t - j
            s = s + t
        return s
    print(nest(300, 20), nest(50, 0), nest(3, 300))
    def early(xs, limit):
        s = 0
        for x in xs:
            if x > limit:
                return -s
            s += x
        return s
    tot = 0
    for k in range(400):
        tot += early(range(k % 40), k % 50)
    print(tot)
    """)
    run = check(source, tmp_path, trace_limit=limit, trace_eagerness=2, function_threshold=2,
                function_min_size=1)
    stats = run.stats
    assert stats["aborts"].get("trace too long", 0) >= 1, stats
    assert len(run.ends("segment")) >= 3, run.traces
    assert stats["bridges_compiled"] >= 10, stats
    assert stats["trace_transfers"] > 10000, stats
    assert_converges(stats)


# ------------------------------------------------------------ 6. handlers


def test_try_except_inside_loop_body(tmp_path: Path) -> None:
    source = """
    def fin(n):
        s = 0
        log = []
        for i in range(n):
            try:
                s += 10 // (i % 37 - 36 + (i > 900))
            except ZeroDivisionError:
                log.append(i)
            finally:
                s += 1
        return s, log[:4], len(log)
    print(fin(1000))
    def nested(n, lst):
        s = 0
        for i in range(n):
            try:
                try:
                    s += lst[i % 7]
                except IndexError:
                    s -= 1
                    s += 1 // (i % 3)
            except ZeroDivisionError:
                s *= 2
                s %= 100003
        return s
    print(nested(3000, [1, 2, 3, 4, 5]))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.of("fin", "loop") and run.of("nested", "loop"), run.traces
    assert run.stats["native_entries"] > 100, run.stats
    assert run.stats["guard_failures"] > 10, run.stats


def test_try_around_loop_and_finally(tmp_path: Path) -> None:
    source = """
    def around(n, lst):
        s = 0
        try:
            for i in range(n):
                try:
                    s += lst[i % 4]
                except IndexError:
                    s -= 1
                if i == 777:
                    raise RuntimeError('stop at %d' % i)
        except RuntimeError as e:
            print('caught', e, s)
        finally:
            print('finally', s)
        return s
    print(around(1000, [1, 2, 3]))
    def fin_return(n):
        s = 0
        try:
            for i in range(n):
                if i % 2:
                    s += i
                else:
                    s -= 1
                if s > 100000:
                    return s
        finally:
            s = -1
            print('finally', s)
        return s
    print(fin_return(10000))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert run.of("around", "loop"), run.traces
    assert run.of("fin_return", "bridge"), run.traces


def test_try_in_outer_body_around_inner_loop(tmp_path: Path) -> None:
    """Exceptions raised in an inner loop's trace (entered through the outer
    trace's link) caught by a handler in the outer loop's body or around both."""
    source = """
    def f(n, m):
        s = 0
        for i in range(n):
            try:
                for j in range(m):
                    s += 10 // (j - i % 40)
            except ZeroDivisionError:
                s -= 1
            s += i
        return s
    print(f(300, 30))
    def g(n, m, d):
        s = 0
        i = j = -1
        try:
            for i in range(n):
                for j in range(m):
                    s += d[(i * j) % 50]
                s -= 1
        except KeyError as e:
            print('KeyError', e, i, j, s)
        return s
    d = {}
    for k in range(49):
        d[k] = 3
    print(g(100, 30, d))
    def h(n, m, lst):
        s = 0
        for i in range(n):
            j = 0
            try:
                while j < m:
                    s += lst[j % 4 - (i % 5 == 4)]
                    j += 1
            except IndexError:
                s += 1000
        return s
    print(h(300, 10, [1, 2, 3]))
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert [t for t in run.of("g") if t.end == "header"], run.traces
    assert [t for t in run.of("h") if t.end == "header"], run.traces
    assert run.stats["trace_transfers"] > 100, run.stats


def test_with_blocks(tmp_path: Path) -> None:
    source = """
    class CM:
        def __init__(self):
            self.n = 0
            self.exits = 0
        def __enter__(self):
            self.n += 1
            return self
        def __exit__(self, t, v, tb):
            self.exits += 1
            return t is KeyError
    def with_around(n, cm):
        s = 0
        with cm:
            for i in range(n):
                if i % 3:
                    s += i
                else:
                    s -= 1
                if i == 900:
                    raise KeyError(i)
        return s, cm.n, cm.exits
    print(with_around(1000, CM()))
    print(with_around(800, CM()))
    def with_inside(n, cm):
        s = 0
        for i in range(n):
            a = i * 3
            b = a ^ 5
            c = b + a
            d = c % 17
            e = d * d
            f = e - a
            g = f + b
            h = g % 101
            s = s + h - d
            with cm:
                s += 1
                if i % 97 == 96:
                    raise KeyError(i)
        return s, cm.n, cm.exits
    print(with_inside(1000, CM()))
    def with_raises(n, cm):
        s = 0
        with cm:
            for i in range(n):
                s += 100 // (500 - i)
        return s
    with_raises(1000, CM())
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert "ZeroDivisionError" in run.jit.stderr
    assert run.of("with_around", "bridge"), run.traces
    assert run.of("with_inside", "loop"), run.traces  # ends before BEFORE_WITH
    assert run.of("with_raises", "loop"), run.traces


def test_uncaught_from_nested_handler(tmp_path: Path) -> None:
    """An exception raised in a handler inside the loop, chained to the first."""
    source = """
    def uncaught(n):
        s = 0
        for i in range(n):
            try:
                s += 1 // (i - 500)
            except ZeroDivisionError:
                s += {}[i]
        return s
    uncaught(1000)
    """
    run = check(source, tmp_path, trace_eagerness=2)
    assert "During handling of the above exception" in run.jit.stderr
    assert run.of("uncaught", "loop"), run.traces


# ------------------------------------------------------------ the helpers


def test_helpers_detect_a_difference(tmp_path: Path) -> None:
    """run_both really runs the JIT variant, with the parameters given."""
    source = """
    import sys
    print('tracejit' in sys.modules)
    if 'tracejit' in sys.modules:
        import tracejit
        print(tracejit.params.trace_eagerness, tracejit.params.trace_limit)
    """
    run = run_both(source, tmp_path, trace_eagerness=3, trace_limit=77)
    assert run.plain.stdout == "False\n"
    assert run.jit.stdout == "True\n3 77\n"


def test_log_parser_sees_bridges(tmp_path: Path) -> None:
    run = check(FLIP.format(k=1), tmp_path, trace_eagerness=2)
    assert run.traces[0].kind == "loop"
    assert run.bridges() and all(b.parent for b in run.bridges())
    assert run.bridge_depth() >= 1


def test_bridge_from_the_end_of_an_enumerate_loop(tmp_path: Path) -> None:
    """A generic iterator's loop leaves at END_FOR (which raises no INSTRUCTION
    event): the bridge from that exit records it as it ran and continues."""
    run = check("""
    def f(rows):
        out = []
        for i, r in enumerate(rows):
            out.append(r * 2 + i)
        out.append(-1)
        out.append(-2)
        return out
    t = 0
    for k in range(3000):
        t += sum(f([1, 2, 3][:k % 4]))
    print(t)
    """, tmp_path, trace_eagerness=5)
    assert any(t.kind == "bridge" and t.end == "return" for t in run.of("f")), run.traces


def test_short_inner_loop_is_traced_past_its_end(tmp_path: Path) -> None:
    """An inner loop of one iteration is always caught at its last back-edge:
    after one abort it is recorded on past its end (a linear trace from its
    header), so the code after it runs natively too."""
    run = check("""
    def f(rows, tags):
        out = []
        for r in rows:
            out.append(r * 2)
            for t in tags:
                out.append(t)
        out.append(-1)
        return out
    t = 0
    for k in range(3000):
        t += sum(f([1, 2, 3][:k % 4], [7]))
    print(t)
    """, tmp_path, trace_eagerness=5)
    assert any(t.kind == "loop" and t.end == "backedge" for t in run.of("f")), run.traces
    assert run.stats["aborts"].get("left the loop while recording", 0) <= 2, run.stats


SHORT_INNER = """
def f(rows):
    out = []
    for r in rows:
        out.append(r[0])
        for t in r[1]:
            out.append(t * 2)
        out.append(-1)
    return out
rows = [(i, [j for j in range(i % {n})] if i % {every} == 0 else []) for i in range(40)]
t = 0
for k in range(300):
    t += sum(f(rows))
print(t)
"""


def test_short_inner_loops_are_gone_round(tmp_path: Path) -> None:
    """An inner loop of at most two items that no trace covers is recorded round
    (its back-edge as a jump): the outer loop's trace and its bridges cover it,
    so it never needs a trace of its own."""
    # The first exit into the inner loop grows a bridge at once: the inner
    # loop never runs in the interpreter (where it would get hot at once).
    run = check(SHORT_INNER.format(n=3, every=8), tmp_path, trace_eagerness=1)
    loops = [t for t in run.of("f") if t.kind == "loop"]
    assert len(loops) == 1 and loops[0].end == "loop", run.traces
    assert_converges(run.stats)


def test_longer_inner_loops_get_their_own_trace(tmp_path: Path) -> None:
    """Past two back-edges a recording ends at the inner loop's back-edge; the
    inner loop gets a trace of its own and the ends link to it."""
    run = check(SHORT_INNER.format(n=7, every=1), tmp_path, trace_eagerness=5)
    loops = [t for t in run.of("f") if t.kind == "loop"]
    assert len(loops) >= 2, run.traces
    assert any(t.end == "backedge" for t in run.of("f")), run.traces
    assert_converges(run.stats)


def test_recordings_that_see_a_global_change_twice_read_it_at_each_use() -> None:
    """A namespace rebuilt for every run shows as a global whose value changed
    between recordings: after the second change the code reads it at each use,
    before guards on it are compiled, fail and have to be evicted."""
    from tracejit.recorder.record import code_info

    def user() -> object:
        return KINDS_FOR_TEST

    info = code_info(user.__code__)
    values = [(int,), (int,), (float,)]
    info.note_global("KINDS_FOR_TEST", values[0])
    info.note_global("KINDS_FOR_TEST", values[0])
    info.note_global("KINDS_FOR_TEST", values[1])  # an equal tuple, another object
    assert "KINDS_FOR_TEST" not in info.varying_globals
    info.note_global("KINDS_FOR_TEST", values[2])
    assert "KINDS_FOR_TEST" in info.varying_globals


KINDS_FOR_TEST: object = None
