"""Checks a trace makes once, and calls proven to run no code.

Each program runs on the plain interpreter and with the JIT (thresholds forced
low, ``TRACEJIT_DUMP`` on); output must be identical, and the dumped IR must
show the point of the test: a global read by several inlined calls guarded
once, a guard made again after an op that could change it, a bound builtin
method called directly (``guard_cfunc``, ``call_nocode``) with no tool check
after it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from test_differential import PLAIN_HEADER, REPO_ROOT, run_program

JIT_HEADER = ("import tracejit as _tj; "
              "_tj.enable(threshold=1, function_threshold=1, jit_time_percent=100)")


# A class whose instances rebind the global K when released (if hit).
BOMB = textwrap.dedent("""
    class Bomb:
        def __init__(self, hit):
            self.hit = hit
        def __del__(self):
            global K
            if self.hit:
                K += 1
    K = 0
""")


def run_jit(source: str, workdir: Path) -> tuple[str, str]:
    """stdout and the JIT log (with every compiled trace's IR)."""
    prog = workdir / "prog.py"
    prog.write_text(JIT_HEADER + "\n" + source)
    log = workdir / "jit.log"
    env = dict(os.environ)
    env.update(TRACEJIT_LOG=str(log), TRACEJIT_DUMP="1", PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT),
                                           *filter(None, [env.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "prog.py"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, log.read_text()


def traces_of(log: str, function: str) -> list[str]:
    """The dumped IR of each compiled trace of `function`."""
    parts = re.split(r"^(?=\[TRACE )", log, flags=re.M)
    return [p for p in parts if p.startswith(f"[TRACE {function}:")]


def check(source: str, workdir: Path) -> str:
    source = textwrap.dedent(source)
    plain = run_program(source, workdir, PLAIN_HEADER, timeout=120)
    assert plain.returncode == 0, plain.stderr
    out, log = run_jit(source, workdir)
    assert out == plain.stdout
    return log


def test_global_read_by_inlined_calls_is_guarded_once(tmp_path: Path) -> None:
    log = check("""
    K = 3
    def helper(x):
        return x * K + K
    def f(n):
        t = 0
        for i in range(n):
            t += helper(i) + helper(i + 1)
        return t
    print(f(3000))
    """, tmp_path)
    loops = [t for t in traces_of(log, "f") if " loop " in t.splitlines()[0]]
    assert loops, log
    body = loops[-1]
    assert body.count("name='K'") == 1, body  # four reads, one check


def test_destructor_between_two_reads_of_a_global(tmp_path: Path) -> None:
    # The popped Bomb's release runs __del__, which rebinds K: the second read
    # is checked again (a stale K would print other sums).
    log = check(BOMB + textwrap.dedent("""
    def helper(box):
        a = K
        box.pop()
        return a * 1000 + K
    def f(n):
        out = 0
        box = []
        for i in range(n):
            box.append(Bomb(i % 100 == 99))
            out += helper(box)
        return out
    print(f(3000), K)
    """), tmp_path)
    assert any(t.count("name='K'") == 2 for t in traces_of(log, "f")), log


def test_bound_list_append_is_called_directly(tmp_path: Path) -> None:
    log = check("""
    def f(n, add, out):
        for i in range(n):
            add(i)
            add(str(i))
        return len(out)
    out = []
    print(f(3000, out.append, out), out[-3:])
    other = set()
    print(f(5, other.add, other), sorted(other, key=str))  # another C function
    """, tmp_path)
    loops = [t for t in traces_of(log, "f") if " loop " in t.splitlines()[0]]
    assert loops, log
    body = loops[0]
    # an exact list's append is the op list_append (test_list_append_is_one_op)
    assert "guard_cfunc" in body and "list_append" in body, body
    assert "check_instrumentation" not in body, body


def test_module_attribute_is_a_checked_constant(tmp_path: Path) -> None:
    # m.scale is read from the module's dict like a global: checked once and
    # used as a constant, checked again after the module's dict changes.
    log = check("""
    import types
    m = types.ModuleType("m")
    m.scale = 3
    def helper(x):
        return x * m.scale
    def f(n):
        t = 0
        for i in range(n):
            t += helper(i) + m.scale
            if i == 2000:
                m.scale = 5
        return t
    print(f(3000))
    print(m.__name__, type(m.__dict__).__name__)
    """, tmp_path)
    loops = [t for t in traces_of(log, "f") if " loop " in t.splitlines()[0]]
    assert loops, log
    body = loops[-1]
    assert body.count("guard_module_attr") == 1 and "getattr" not in body, body


def test_release_of_an_item_its_container_still_holds_keeps_checks(tmp_path: Path) -> None:
    # r["a"] and r["b"] are released while the dict holds them: nothing can
    # be freed, so SCALE is checked once.
    log = check("""
    SCALE = 3
    def f(n):
        out = 0
        rows = [{"a": [1], "b": [2, 3]}]
        for i in range(n):
            r = rows[0]
            out += SCALE + len(r["a"]) + SCALE + len(r["b"]) + SCALE
        return out
    print(f(3000))
    """, tmp_path)
    loops = [t for t in traces_of(log, "f") if " loop " in t.splitlines()[0]]
    assert loops, log
    assert loops[-1].count("name='SCALE'") == 1, loops[-1]


def test_item_taken_out_of_its_container_is_released_with_care(tmp_path: Path) -> None:
    # After d[0] = None the list no longer holds the Bomb: its release at
    # helper's return runs __del__, which rebinds K, and the caller's read of
    # K is checked again (a stale K prints other sums).
    log = check(BOMB + textwrap.dedent("""
    def helper(d):
        a = K
        item = d[0]
        d[0] = None
        return a * 1000 + K
    def f(n):
        out = 0
        for i in range(n):
            d = []
            d.append(Bomb(i % 100 == 99))
            out += K + helper(d) + K
        return out
    print(f(3000), K)
    """), tmp_path)
    assert any(t.count("name='K'") >= 2 for t in traces_of(log, "f")), log


def test_varying_tuple_of_classes_still_folds_isinstance(tmp_path: Path) -> None:
    # Like Tornado's _tt_string_types: each run rebinds the global to a new
    # but equal tuple; its items are checked and isinstance is a constant.
    log = check("""
    def render(items):
        out = []
        for x in items:
            if isinstance(x, _types):
                out.append("y")
            else:
                out.append("n")
        return "".join(out)
    total = 0
    for k in range(300):
        _types = (str, bytes)
        total += render(["a", 1, "b", 2.5] * 5).count("y")
        if k == 250:
            _types = (str, int)  # other items: the check fails, as it must
            total += render(["a", 1] * 5).count("y") * 1000
    print(total)
    """, tmp_path)
    varying = [t for t in traces_of(log, "render") if "load_global name='_types'" in t]
    assert varying, log
    for t in varying:
        assert "tuple_getitem_borrowed" in t and ":obj = call " not in t, t


def test_varying_global_is_loaded_once_until_code_may_rebind_it(tmp_path: Path) -> None:
    # Within a stretch of ops that run no code, a varying global's second use
    # reuses the first load; code the trace calls out to (rebind, run by
    # any()) may rebind it, so the next use loads again and sees the new object.
    log = check("""
    def rebind(k):
        global _types
        if k % 7 == 3:
            _types = (str, int)
        return False
    def render(items, k):
        out = []
        for x in items:
            t = (isinstance(x, _types), isinstance(x, _types))
            any(map(rebind, (k,)))
            u = (isinstance(x, _types), isinstance(x, _types))
            out.append(str(t) + str(u))
        return "".join(out)
    total = 0
    for k in range(300):
        _types = (str, bytes)
        total += render(["a", 1, "b", 2.5] * 5, k).count("True")
    print(total)
    """, tmp_path)
    loops = [t for t in traces_of(log, "render")
             if " loop " in t.splitlines()[0] and "load_global name='_types'" in t]
    assert loops, log
    for t in loops:
        # four uses: the pairs share a load, the call out between them does not
        assert t.count("load_global name='_types'") == 2, t


def test_float_compared_with_an_int_constant_keeps_checks(tmp_path: Path) -> None:
    # x > 50 (a float with an int a double holds exactly) compares doubles; the
    # bool a plain richcompare makes frees nothing when released: neither makes
    # K's guard again.
    log = check("""
    K = 2
    BIG = 2 ** 53 + 1  # not exact as a double: compared as CPython does
    def f(rows):
        t = 0
        for row in rows:
            t += K
            if row[0] > 50:
                t += 1
            if row[0] < BIG:
                t += 2
            if row[1] == "x":
                t += 4
            t += K
        return t
    nan = float("nan")
    rows = [(float(i % 100), "x" if i % 3 else "y") for i in range(3000)]
    rows += [(nan, "x"), (50.0, "y"), (50.5, "x"), (float(2 ** 53), "x"), (-0.0, "y")]
    print(f(rows))
    """, tmp_path)
    loops = [t for t in traces_of(log, "f") if " loop " in t.splitlines()[0]]
    assert loops, log
    body = loops[0]
    assert "float_gt" in body and "richcompare" in body, body  # BIG: richcompare
    assert body.count("name='K'") == 1, body


def test_list_append_is_one_op(tmp_path: Path) -> None:
    """list.append of an exact list, called as a method or as a bound method
    (a template's ``_tt_append``), is the op list_append, not a call: the list
    grows past its allocation, its result is None, a subclass's own append
    still runs."""
    log = check("""
    class Doubling(list):
        def append(self, x):
            list.append(self, 2 * x)
    def f(n):
        out = []
        add = out.append
        sub = Doubling()
        r = 1
        for i in range(n):
            out.append(i)
            add(-i)
            sub.append(i)
            r = out.append(0)
        print(len(out), sum(out), sum(sub), len(sub), r)
    f(3000)
    """, tmp_path)
    body = "".join(traces_of(log, "f"))
    assert body.count("list_append") >= 3, body[-3000:]


def test_comprehension_tuple_contains_and_fstring_ops(tmp_path: Path) -> None:
    """A list comprehension is a loop trace (LOAD_FAST_AND_CLEAR's NULL on the
    header stack, LIST_APPEND as list_append) and a loop body with a tuple, an
    ``in`` test, a dict literal, an f-string, list displays and a slice
    compiles to their own ops instead of ending the trace."""
    log = check("""
    def comp(n):
        return [x * 3 for x in range(n)]
    def body(n):
        d = {"a": 1}
        s = 0
        for i in range(n):
            t = (i, i + 1)
            e = {"i": i, "t": t}
            s += t[1] + ("a" in d) + len(f"{i}:{i * 0.5:.1f}") + len(e)
            s += len([i, t]) + len([1, 2, 3]) + len("abcdef"[1:i % 5])
        return s
    print(sum(comp(3000)), body(3000))
    """, tmp_path)
    comp = "".join(traces_of(log, "comp"))
    assert "list_append" in comp and " loop @" in comp, comp[-3000:]
    body = "".join(traces_of(log, "body"))
    for op in ("build_tuple", "contains", "build_string", "build_const_key_map",
               "build_list", "list_extend", "get_slice"):
        assert op in body, (op, body[-3000:])
    assert "-> stop" not in body, body[-3000:]
