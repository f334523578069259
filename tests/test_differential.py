"""Differential tests: every program runs twice in a fresh subprocess, once on
the plain interpreter and once with ``tracejit.enable(threshold=1)``; stdout,
stderr (tracebacks included) and the exit code must be identical.

The JIT variant replaces the program's first line (a placeholder in the plain
variant) by a single line that enables the JIT and registers an ``atexit`` hook
writing ``tracejit.stats()`` as JSON to a side file, so line numbers in
tracebacks are the same in both runs.  For programs meant to compile, the
stats must show at least one compiled trace and one native entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

PLAIN_HEADER = "_tj_stats_file = None"
JIT_HEADER = (
    "import atexit as _tj_ae, json as _tj_js, tracejit as _tj; "
    "_tj.enable(threshold=1, jit_time_percent=100); _tj_stats_file = {path!r}; "
    "_tj_ae.register(lambda: open(_tj_stats_file, 'w').write(_tj_js.dumps(_tj.stats())))"
)


@dataclass(frozen=True)
class Outcome:
    stdout: str
    stderr: str
    returncode: int


def run_program(source: str, workdir: Path, header: str, timeout: float = 60) -> Outcome:
    """Run `header` + `source` as prog.py in `workdir`, without JIT log variables."""
    prog = workdir / "prog.py"
    prog.write_text(header + "\n" + source)
    env = dict(os.environ)
    env.pop("TRACEJIT_LOG", None)
    env.pop("TRACEJIT_DUMP", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run(
        [sys.executable, "prog.py"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def run_differential(source: str, workdir: Path) -> tuple[Outcome, Outcome, dict[str, Any]]:
    """Run ``source`` plain and jitted; return both outcomes and the JIT's stats."""
    source = textwrap.dedent(source)
    plain = run_program(source, workdir, PLAIN_HEADER)
    stats_path = workdir / "stats.json"
    if stats_path.exists():
        stats_path.unlink()
    jit = run_program(source, workdir, JIT_HEADER.format(path=str(stats_path)))
    stats: dict[str, Any] = {}
    if stats_path.exists():
        loaded = json.loads(stats_path.read_text())
        assert isinstance(loaded, dict)
        stats = loaded
    return plain, jit, stats


def check(source: str, workdir: Path, *, compiles: bool = True) -> dict[str, Any]:
    plain, jit, stats = run_differential(source, workdir)
    assert jit.stdout == plain.stdout
    assert jit.stderr == plain.stderr
    assert jit.returncode == plain.returncode
    assert stats, "the JIT run did not write its stats"
    if compiles:
        assert stats["traces_compiled"] >= 1, stats
        assert stats["native_entries"] >= 1, stats
    return stats


# --------------------------------------------------------------------------- programs
# name -> (source, meant to compile)
PROGRAMS: dict[str, tuple[str, bool]] = {}


def program(name: str, source: str, compiles: bool = True) -> None:
    assert name not in PROGRAMS
    PROGRAMS[name] = (source, compiles)


program(
    "int_overflow_add",
    """
    def f(n, start, step):
        x = start
        for i in range(n):
            x = x + step
        return x
    print(f(100, 2**63 - 50, 1))
    print(f(100, -2**63 + 50, -1))
    print(f(1000, 2**62, 2**52))
    print(f(10, 2**63 - 1, 0))
    """,
)

program(
    "int_overflow_sub",
    """
    def f(n, start, step):
        x = start
        for i in range(n):
            x = x - step
        return x
    print(f(100, -2**63 + 50, 1))
    print(f(100, 2**63 - 50, -1))
    print(f(5, 0, -2**63 + 1))
    print(f(100, 0, i := 3))
    """,
)

program(
    "int_overflow_mul",
    """
    def f(n, x, k):
        out = []
        for i in range(n):
            x = x * k
            out.append(x)
        return out
    print(f(70, 1, 2))
    print(f(70, -1, 2))
    print(f(40, 3, -3))
    print(f(10, -2**62, 2))
    def sq(n):
        s = 0
        for i in range(n):
            s += i * i * i * i * i
        return s
    print(sq(8000))
    """,
)

program(
    "int_overflow_lshift",
    """
    def f(n):
        out = []
        for i in range(n):
            out.append(1 << i)
            out.append(-3 << i)
            out.append((2**40) << (i % 30))
        return out
    r = f(130)
    print(len(r), sum(r), r[-6:])
    def g(n):
        x = 1
        for i in range(n):
            x = x << 1
        return x
    print(g(200))
    def h(n):
        s = 0
        for i in range(n):
            s += (i >> 2) ^ (i << 60) | (i & 7)
        return s
    print(h(1000))
    """,
)

program(
    "zero_division_caught",
    """
    def f(n, d):
        s = 0
        for i in range(n):
            s += i // (d - i)
        return s
    def g(n, d):
        s = 0
        for i in range(n):
            s += i % (d - i)
        return s
    for fn in (f, g):
        for d in (50, 10, 2000):
            try:
                print(fn.__name__, d, fn(100, d))
            except ZeroDivisionError as e:
                print(fn.__name__, d, 'ZeroDivisionError', e)
    """,
)

program(
    "zero_division_uncaught",
    """
    def f(n):
        s = 0
        for i in range(n):
            s += 1000 // (77 - i)
        return s
    print(f(50))
    print(f(100))
    """,
)

program(
    "modulo_uncaught_in_while",
    """
    def f():
        i = 0
        acc = 1
        while i < 1000:
            acc = (acc * 7 + i) % (500 - i)
            i += 1
        return acc
    print(f())
    """,
)

program(
    "negative_floordiv_mod",
    """
    def f(n):
        out = []
        for i in range(-n, n):
            for d in (-7, -3, -1, 1, 2, 5):
                out.append((i // d, i % d, -i // d, (-i) % d))
        return out
    r = f(40)
    print(len(r), r[:10], r[-10:], sum(a + b + c + d for a, b, c, d in r))
    def g(n):
        s = 0
        for i in range(n):
            s += (-2**63) // (i - 500 if i != 500 else 1)
            s += (-2**63) % (i + 3)
            s += (-i) // 3 - (-i) % 7
        return s
    print(g(1000))
    print(-2**63 // -1)
    def h(n, x):
        out = 0
        for i in range(n):
            out = x // -1
        return out
    print(h(10, -2**63))
    """,
)

program(
    "float_division_by_zero",
    """
    def f(n, z):
        s = 0.0
        for i in range(n):
            s += i / (z - i + 0.5)
            s += float(i) / (i + 1.0)
        return s
    print(f(100, 50))
    def g(n):
        s = 0.0
        for i in range(n):
            s += 1.0 / (30.0 - i)
        return s
    try:
        g(100)
    except ZeroDivisionError as e:
        print('caught', e)
    def h(n):
        s = 0.0
        for i in range(n):
            s += 2.5 // (40.0 - i) + 7.5 % (60.0 - i)
        return s
    for k in (30, 50, 70):
        try:
            print(h(k))
        except ZeroDivisionError as e:
            print('caught', k, e)
    """,
)

program(
    "nan_inf_comparisons",
    """
    import math
    def f(vals, n):
        counts = [0] * 8
        for i in range(n):
            x = vals[i % len(vals)]
            if x < 0.0: counts[0] += 1
            if x > 0.0: counts[1] += 1
            if x == x: counts[2] += 1
            if x != x: counts[3] += 1
            if x <= 1e308: counts[4] += 1
            if x >= -1e308: counts[5] += 1
            if not (x < 1.0): counts[6] += 1
            if x * 0.0 == 0.0: counts[7] += 1
        return counts
    print(f([1.0, -2.5, math.inf, -math.inf, math.nan, 0.0, -0.0], 7000))
    def g(n):
        x = 1.0
        for i in range(n):
            x = x * 10.0
        return x, x - x, x * 0.0
    print(g(400))
    def h(n):
        x = 1.0
        out = []
        for i in range(n):
            x = x * 0.5
            out.append(x == 0.0)
        return out.count(True), x
    print(h(1200))
    """,
)

program(
    "int_float_mixing",
    """
    def f(n):
        a = 0
        b = 0.5
        for i in range(n):
            a = a + i
            b = b + a * 0.25 - i
            c = a / 3
            d = b // 2
            if a > b:
                b = b + 1
        return a, b, c, d
    print(f(1000))
    def g(n):
        x = 1
        s = 0.0
        for i in range(n):
            s += x * 1.5 + i % 3 - 0.1
            s -= i // 7 * 0.5
            x = -x
        return s
    print(repr(g(10000)))
    def h(n):
        s = 0
        for i in range(n):
            s += 2**53 + 1 + 0.0 if i % 2 else i
        return s
    print(h(100))
    """,
)

program(
    "bool_arithmetic",
    """
    def f(n):
        t = True
        s = 0
        out = []
        for i in range(n):
            b = i % 3 == 0
            s += b + t
            s -= (not b) * 2
            s ^= b << 3
            s += ~b + -b + (b & t) + (b | False) + (b ^ t)
            out.append(b + 0)
        return s, sum(out), type(b).__name__
    print(f(999))
    def g(n):
        c = 0
        for i in range(n):
            flag = i > 10
            c = c + flag * flag - (flag and i > 500)
        return c
    print(g(1000))
    """,
)

program(
    "branch_flips_midloop",
    """
    def f(n, k):
        s = 0
        for i in range(n):
            if i < k:
                s += i
            else:
                s -= 2 * i
        return s
    for k in (0, 5, 500, 999, 2000):
        print(f(1000, k))
    def g(n):
        s = 0
        for i in range(n):
            if (i // 100) % 2 == 0:
                s += 1
            else:
                s *= 3
                s %= 1000003
        return s
    print(g(2000))
    print(g(2000))
    """,
)

program(
    "type_change_int_to_float",
    """
    def f(n):
        x = 0
        for i in range(n):
            x = x + 1
            if i == 500:
                x = x + 0.5
        return x
    print(repr(f(1000)))
    print(repr(f(400)))
    def g(n):
        x = 1
        for i in range(n):
            x = x * 3 if x < 10**6 else x / 7
        return x
    print(repr(g(200)))
    """,
)

program(
    "type_change_int_to_none",
    """
    def f(n):
        x = 0
        out = []
        for i in range(n):
            if x is None:
                out.append('none')
                x = i
            else:
                x = x + 1
            if i % 250 == 249:
                x = None
        return out, x
    print(f(1000))
    def g(n):
        x = 0
        try:
            for i in range(n):
                x = x + 1
                if i == 300:
                    x = None
        except TypeError as e:
            return 'TypeError ' + str(e)
        return x
    print(g(1000))
    """,
)

program(
    "iterate_list_tuple_range_negative_step",
    """
    def f(seq):
        s = 0
        for x in seq:
            s = s * 31 + x
            s %= 1000000007
        return s
    print(f(list(range(1000))))
    print(f(tuple(range(500, -500, -3))))
    print(f(range(1000, 0, -7)))
    print(f(range(10, -10**6, -1)))
    print(f([2**70, -2**64, 5] * 20))
    print(f(range(2**63 - 10, 2**63 + 10)))
    """,
)

program(
    "empty_and_tiny_ranges",
    """
    def f(a, b, c):
        s = -1
        for i in range(a, b, c):
            s += i
        return s
    for args in [(0, 0, 1), (5, 0, 1), (0, 5, -1), (0, 1, 1), (0, 2, 1), (3, 3, -1), (0, 1000, 1)]:
        print(args, f(*args))
    def g(xs):
        n = 0
        for x in xs:
            n += 1
        return n
    print(g([]), g(()), g([1]), g(range(0)))
    """,
)

program(
    "break_continue",
    """
    def f(n, stop):
        s = 0
        for i in range(n):
            if i % 3 == 0:
                continue
            if i == stop:
                break
            s += i
        else:
            s = -s
        return s
    for stop in (-1, 0, 10, 999, 5000):
        print(f(1000, stop))
    def g(n):
        i = 0
        s = 0
        while True:
            i += 1
            if i & 1:
                continue
            if i > n:
                break
            s += i
        return s
    print(g(10000))
    """,
)

program(
    "while_complex_conditions",
    """
    def collatz(n):
        steps = 0
        while n != 1 and steps < 10000:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps
    print([collatz(k) for k in range(1, 60)])
    print(collatz(2**80 + 1))
    def g(a, b):
        while (a > 0 or b > 0) and not (a == 7 and b == 7):
            if a > b:
                a -= 3
            else:
                b -= 2
        return a, b
    print(g(1000, 999), g(10, 10), g(7, 9))
    def gcd(a, b):
        while b:
            a, b = b, a % b
        return a
    print(gcd(2**64 * 3 * 7, 2**70 * 7), gcd(123456789, 987654321))
    """,
)

program(
    "nested_loops",
    """
    def f(n):
        s = 0
        for i in range(n):
            for j in range(i):
                s += i ^ j
            k = 0
            while k < i % 7:
                s -= k
                k += 1
        return s
    print(f(300))
    def mat(n):
        a = [[i * n + j for j in range(n)] for i in range(n)]
        b = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                t = 0
                for k in range(n):
                    t += a[i][k] * a[k][j]
                b[i][j] = t
        return sum(map(sum, b))
    print(mat(30))
    """,
)

program(
    "list_mutation",
    """
    def f(n):
        xs = []
        for i in range(n):
            xs.append(i * i)
            if i % 10 == 0:
                xs[i // 2] = -i
        return xs
    r = f(1000)
    print(len(r), sum(r), r[:12])
    def g(xs):
        i = 0
        for x in xs:
            if i < 50:
                xs.append(x + 1)
            i += 1
        return len(xs), sum(xs)
    print(g(list(range(30))))
    def h(xs, n):
        for i in range(n):
            xs[i] = xs[i] + xs[-1 - i]
        return xs
    print(sum(h(list(range(100)), 100)))
    try:
        h(list(range(100)), 150)
    except IndexError as e:
        print('IndexError', e)
    def k(xs):
        t = (1, 2, 3)
        s = 0
        for i in range(len(xs) + 5):
            s += t[i % 3] + xs[i]
        return s
    k(list(range(200)))
    """,
)

program(
    "attribute_class_monkeypatch",
    """
    class P:
        def __init__(self):
            self.x = 1
            self.y = 2.0
        def get(self):
            return self.x
    class Q:
        x = 100
        def get(self):
            return -1
    def f(objs):
        s = 0
        for i in range(len(objs)):
            o = objs[i]
            s += o.x + o.get()
            o.x = o.x + 1
            if i == 400:
                P.get = lambda self: 1000
            if i == 700:
                objs[i + 1].__class__ = Q
        return s
    objs = [P() for _ in range(1000)]
    print(f(objs))
    print(sum(o.x for o in objs), type(objs[701]).__name__)
    class R:
        __slots__ = ('v',)
        def __init__(self, v):
            self.v = v
    def g(rs):
        s = 0
        for r in rs:
            s += r.v
            r.v = s
        return s
    rs = [R(i) for i in range(500)]
    print(g(rs))
    try:
        del rs[300].v
        print(g(rs))
    except AttributeError as e:
        print('AttributeError', e)
    """,
)

program(
    "globals_rebound_by_callee",
    """
    K = 1
    def rebind(i):
        global K
        if i == 300:
            K = 1000
        if i == 600:
            K = 2.5
    def f(n):
        s = 0
        for i in range(n):
            s += K
            rebind(i)
        return s
    print(f(1000))
    def kill(i):
        global K
        if i == 50:
            del K
    def g(n):
        s = 0
        for i in range(n):
            s += K
            kill(i)
        return s
    try:
        K = 3
        print(g(100))
    except NameError as e:
        print('NameError', e)
    """,
)

program(
    "builtins_shadowed_by_globals",
    """
    import builtins
    def f(xs, n):
        s = 0
        for i in range(n):
            s += len(xs) + abs(-i)
            if i == 300:
                globals()['len'] = lambda x: 1000
            if i == 600:
                del globals()['len']
            if i == 800:
                builtins.abs = lambda v: 7
        return s
    orig_abs = abs
    print(f([1, 2, 3], 1000))
    builtins.abs = orig_abs
    def g(n):
        s = 0
        for i in range(n):
            s += min(i, 10)
        return s
    print(g(100))
    min = max
    print(g(100))
    """,
)

program(
    "custom_dunders",
    """
    class V:
        def __init__(self, v):
            self.v = v
        def __add__(self, o):
            return V(self.v + (o.v if isinstance(o, V) else o))
        def __eq__(self, o):
            return isinstance(o, V) and self.v % 10 == o.v % 10
        def __hash__(self):
            return 0
        def __bool__(self):
            return self.v % 3 != 0
        def __repr__(self):
            return f'V({self.v})'
    class I:
        def __init__(self, i):
            self.i = i
        def __index__(self):
            return self.i
    def f(n):
        acc = V(0)
        eqs = 0
        truths = 0
        xs = list(range(50))
        s = 0
        for i in range(n):
            acc = acc + V(i) + 1
            if acc == V(5):
                eqs += 1
            if acc:
                truths += 1
            s += xs[I(i % 50)]
        return acc, eqs, truths, s
    print(f(1000))
    """,
)

program(
    "del_side_effect_order",
    """
    log = []
    class D:
        def __init__(self, i):
            self.i = i
        def __del__(self):
            log.append(self.i)
    def f(n):
        d = None
        s = 0
        for i in range(n):
            d = D(i)
            s += d.i
            if i % 100 == 0:
                log.append(-i)
        return s
    print(f(500))
    print(len(log), log[:10], log[-10:])
    def g(n):
        xs = []
        for i in range(n):
            xs.append(D(1000 + i))
            if len(xs) > 3:
                xs.pop(0)
        return len(xs)
    log.clear()
    print(g(300), log[:10], log[-5:])
    log.clear()
    """,
)

program(
    "user_method_raises_traceback",
    """
    class Acc:
        def __init__(self):
            self.total = 0
        def add(self, v):
            if v == 777:
                raise ValueError(f'bad value {v}')
            self.total += v
            return self.total
    def f(n):
        a = Acc()
        s = 0
        for i in range(n):
            s += a.add(i)
        return s
    try:
        f(1000)
    except ValueError as e:
        import traceback
        traceback.print_exc()
    print(f(700))
    f(1000)
    """,
)

program(
    "refcounts_stable",
    """
    import sys
    class O:
        def __init__(self):
            self.a = 1
    o = O()
    big = 2**100
    fl = 1.5
    xs = [1, 2, 3]
    t = (o, big)
    name = 'abc'
    def before():
        return [sys.getrefcount(x) for x in (o, big, fl, xs, t, name, O)]
    def f(n):
        s = 0
        for i in range(n):
            s += o.a + xs[i % 3] + len(name)
            u = t[0]
            v = big + 0
            w = fl * 2
            xs[0] = o.a
            o.a = o.a
        return s
    b = before()
    f(10000)
    f(10000)
    a = before()
    print(b == a, [x - y for x, y in zip(a, b)])
    def g(seq):
        s = 0
        for x in seq:
            s += x.a
        return s
    items = [O() for _ in range(100)]
    rc = [sys.getrefcount(x) for x in items]
    print(g(items), g(tuple(items)))
    print(rc == [sys.getrefcount(x) for x in items])
    """,
)

program(
    "big_loop_counts",
    """
    def f(n):
        a = 0
        b = 1
        for i in range(n):
            a, b = b, (a + b) % 1000000007
        return a
    print(f(100000))
    def g(n):
        i = 0
        s = 0.0
        while i < n:
            s += (i % 17) * 0.5 - (i & 3)
            i += 1
        return s
    print(g(100000))
    def h(n):
        x = 12345
        for i in range(n):
            x = (x * 1103515245 + 12345) & 0x7fffffff
        return x
    print(h(100000))
    """,
)

program(
    "generic_calls_and_strings",
    """
    def f(n):
        parts = []
        d = {}
        for i in range(n):
            s = str(i)
            parts.append(s)
            d[s] = len(s) + i
            if d.get(s, 0) > 50:
                d.pop(s)
        return len(parts), ''.join(parts[-5:]), sorted(d.items())[:5], len(d)
    print(f(1000))
    def g(words):
        out = []
        for w in words:
            out.append(w.upper() + w[0])
        return out
    print(g(['ab', 'cd', 'ef'] * 100)[-3:])
    """,
)

program(
    "dict_subscripts_generic",
    """
    def f(n):
        d = {0: 1}
        s = 0
        for i in range(n):
            d[i % 13] = d.get(i % 13, 0) + i
            s += d[i % 13]
        return s, d
    print(f(1000))
    def g(n):
        d = {}
        for i in range(n):
            d[i] = i
            s = d[i + 1]
        return s
    try:
        g(10)
    except KeyError as e:
        print('KeyError', e)
    """,
)

program(
    "unary_ops_and_comparisons",
    """
    def f(n):
        s = 0
        for i in range(-n, n):
            s += -i + ~i + (i < 0) - (i <= 0) + (i == 0) * 100 + (i != 5) + (i >= 3) - (i > 7)
            s += -(-2**63 + (i % 2))
        return s
    print(f(1000))
    def g(n):
        x = -2**63
        out = []
        for i in range(n):
            out.append(-x)
            out.append(~x)
            out.append(abs(x))
        return out
    print(g(3))
    """,
)

program(
    "exception_in_loop_caught_inside",
    """
    def f(n):
        s = 0
        for i in range(n):
            try:
                s += 100 // (i % 10)
            except ZeroDivisionError:
                s -= 1
        return s
    print(f(1000))
    def g(xs):
        s = 0
        for i in range(len(xs) + 10):
            try:
                s += xs[i]
            except IndexError:
                s += 1000
        return s
    print(g(list(range(100))))
    """,
    compiles=True,
)

program(
    "range_of_bigints_and_float_loopvar",
    """
    def f(n):
        s = 0
        for i in range(2**63 - 5, 2**63 - 5 + n):
            s += i
        return s
    print(f(100))
    def g(n):
        x = 0.0
        i = 0
        while x < n:
            x += 0.1
            i += 1
        return i, x
    print(g(100))
    """,
)

program(
    "recursion_error_and_deep_call_in_loop",
    """
    def r(k):
        return k if k <= 0 else r(k - 1) + 1
    def f(n):
        s = 0
        for i in range(n):
            s += r(i % 20)
        return s
    print(f(1000))
    """,
)

program(
    "sys_exit_inside_loop",
    """
    import sys
    def f(n):
        s = 0
        for i in range(n):
            s += i
            if i == 900:
                print('exiting', s)
                sys.exit(3)
        return s
    f(1000)
    """,
)

program(
    "interpreter_only_constructs",
    """
    def outer(n):
        k = 3
        def inner():
            s = 0
            for i in range(n):
                s += i * k
            return s
        return inner()
    print(outer(1000))
    def gen(n):
        for i in range(n):
            yield i * i
    print(sum(gen(1000)))
    print(sum([i * 2 for i in range(1000)]))
    """,
    compiles=False,
)

program(
    "int_float_compare_precision_and_signed_zero",
    """
    def f(n, x, y):
        c = 0
        for i in range(n):
            if x < y: c += 1
            if x == y: c += 10
            if x >= y: c += 100
        return c
    print(f(20, 2**63-1, 9.223372036854776e18), f(20, 2**53+1, 9007199254740992.0))
    print(f(20, -2**63, -9.223372036854776e18))
    def g(n, x, y):
        out = []
        for i in range(n):
            out.append((x + y, x * y, x - y, x / y if y else 0,
                        x % y if y else 0, x // y if y else 0))
        return out[-1]
    for a, b in [(2**53+1, 1.0), (-7, 2.5), (7.5, -2), (-0.0, 3), (0, -0.0), (-1e308, 10),
                 (2**62, 0.5), (-5, -0.0)]:
        try:
            print(a, b, g(10, a, b))
        except Exception as e:
            print(type(e).__name__, e)
    def h(n, x):
        out = []
        for i in range(n):
            out.append((-x, x % -3.0, x // -3.0, x % 3, -x * 0.0, 0.0 * x))
        return out[-1]
    for v in [0.0, -0.0, -1.0, 5.5, -1e-320, float('inf'), float('nan')]:
        print(repr(h(10, v)))
    def k(n, x):
        out = []
        for i in range(n):
            out.append((x / 7, x * 1.0, float(x), x + 0.0))
        return out[-1]
    print(k(10, 2**63-1), k(10, 2**53+1), k(10, -2**63+1))
    """,
)

program(
    "int64_edge_bitops_divmod",
    """
    def f(n, x, s):
        out = []
        for i in range(n):
            out.append((x << s, x >> s, -x >> s, x & -x, x | s, x ^ -1, ~x))
        return out[-1]
    for x, s in [(1, 63), (1, 64), (-1, 63), (3, 62), (2**62, 1), (-2**63, 0), (-2**63, 1),
                 (5, 100), (-5, 100), (2**63-1, 1)]:
        print(f(10, x, s))
    try:
        f(10, 1, -1)
    except ValueError as e:
        print('ValueError', e)
    def g(n, x, y):
        out = []
        for i in range(n):
            out.append((x % y, x // y, divmod(x, y)))
        return out[-1]
    for x, y in [(-2**63, -1), (-2**63, 1), (2**63-1, -1), (-7, 2**63-1), (7, -2**63),
                 (-1, -2**63), (0, -5)]:
        print(g(5, x, y))
    def h(n):
        x = 2**62
        y = -2**62
        out = []
        for i in range(n):
            out.append((x + x, y + y, y - x, x * 2, y * 2, y * -2, -y - y - y))
        return out[-1]
    print(h(5))
    def w(n, a):
        i = 0
        c = 0
        while i < n and (a or i % 2) and not (i == 77):
            i += 1
            c += a
        return i, c
    print(w(100, 1), w(100, 0), w(100, True), w(100, 2.5))
    """,
)

program(
    "attribute_shadowing_properties_iter_mutation",
    """
    class A:
        k = 1
        def __init__(self): self.v = 0
    a = A()
    def f(n):
        s = 0
        for i in range(n):
            s += a.k + a.v
            if i == 10: a.k = 100           # instance shadows class attr
            if i == 20: del a.k
            if i == 30: A.k = property(lambda self: -5)
            if i == 40: A.v = property(lambda self: 1000, lambda self, v: None)
            a.v = i
        return s
    print(f(60), a.__dict__)
    def g(xs):
        s = 0
        for x in xs:
            s += x
            if x == 5:
                xs.clear()
        return s
    print(g(list(range(100))))
    def g2(xs):
        s = 0
        for x in xs:
            s += x
            if len(xs) < 50: xs.insert(0, -1)
        return s, len(xs)
    print(g2(list(range(10))))
    def h(n):
        t = (1, 2, 3)
        lst = [1, 2, 3]
        s = 0
        for i in range(n):
            s += t[i % 3 - 3] + lst[-1] + lst[i % 3 - 3]
            if i == 50:
                lst = (7, 8, 9)
            if i == 60:
                t = [4, 5, 6]
            if i == 70:
                t = b'abc'
                pass
        return s
    print(h(100))
    class M(type): pass
    def k(n):
        objs = [A(), A()]
        s = 0
        for i in range(n):
            o = objs[i % 2]
            s += o.v
            o.v += 1
            if i == 50:
                objs[1] = 5
        return s
    try: print(k(100))
    except AttributeError as e: print('AE', e)
    G = 0
    def gl(n):
        global G
        for i in range(n):
            G = G + i
            if i == 30:
                globals()['G'] = 1.5
        return G
    print(gl(100))
    def bi(n):
        s = 0
        for i in range(n):
            s += len([i])
            if i == 30:
                import builtins; builtins.len = lambda x: 100
        return s
    print(bi(60))
    """,
)

program(
    "recursion_iterators_unbound_locals",
    """
    def f(d):
        s = 0
        for i in range(5):
            s += i
            if d > 0:
                s += f(d - 1)
        return s
    print(f(5))
    def g(n):
        s = 0
        it = iter(range(n))
        for i in it:
            s += i
            if i % 10 == 0:
                next(it, None)
        return s
    print(g(100))
    def h(xs):
        s = 0
        for x in xs:
            s += x
        return s
    print(h([1, 2.5, 3, True, 2**70, -1]), h((1.0, 2.0, float('nan'))))
    try:
        h([1, 2, 'x', 3])
    except TypeError as e:
        print('TE', e)
    def w(n):
        i = n
        acc = []
        while i:
            i -= 1
            acc.append(i)
            if i == 5:
                i = 0.0
        return acc[-3:], i
    print(w(50))
    def e(n):
        s = 0
        for i in range(n):
            s += i
        else:
            s = -s
        return s, i
    print(e(100))
    try:
        print(e(0))
    except UnboundLocalError as ex:
        print('UnboundLocalError', ex)
    def u(n):
        for i in range(n):
            if i == 50:
                del x
            x = i
        return x
    try: u(100)
    except UnboundLocalError as ex: print('ULE', ex)
    """,
)

program(
    "power_and_unpacking",
    """
    def f(n, base):
        out = []
        for i in range(n):
            out.append(base ** (i % 5 - 2) if base else base ** (i % 3))
        return out[-5:]
    for b in (2, -3, 0.5, -2.0, 0, 10**20):
        print(f(40, b))
    def g(n):
        s = 0
        for i in range(n):
            s += 2 ** i + (-2) ** i + i ** 2
        return s
    print(g(200))
    def h(n, b):
        out = 0.0
        for i in range(n):
            out = b ** (i - 50)
        return out
    for b in (0, 0.0, -0.0):
        try: print(h(100, b))
        except ZeroDivisionError as e: print('ZDE', e)
    try: print(h(100, 1e10))
    except OverflowError as e: print('OE', e)
    print(h(10, -8.0), h(60, -8.0) if True else 0)
    def p(n):
        out = []
        for i in range(n):
            out.append((-8.0) ** (1/3) if i > 5 else 1)
        return out[-1]
    print(p(10))
    def u(seqs):
        s = 0
        for seq in seqs:
            a, b = seq
            s += a * b
        return s
    print(u([(1, 2), [3, 4], (5.5, 2)] * 10))
    try: u([(1, 2)] * 10 + [(1, 2, 3)])
    except ValueError as e: print('VE', e)
    try: u([(1, 2)] * 10 + [[1]])
    except ValueError as e: print('VE', e)
    try: u([(1, 2)] * 10 + ['ab', 5])
    except TypeError as e: print('TE', e)
    def sw(n):
        a, b, c = 1, 2, 3
        for i in range(n):
            a, b, c = c, a + 1, b * 2 % 1000
        return a, b, c
    print(sw(1000))
    """,
)

program(
    "int_float_subclasses_and_raising_dunders",
    """
    class MyInt(int):
        def __add__(self, o): return MyInt(int(self) * 10 + o)
        def __lt__(self, o): return True
        def __mul__(self, o): return 7
        def __neg__(self): return 99
        def __index__(self): return 1
    class MyFloat(float):
        def __add__(self, o): return -1.0
        def __bool__(self): return False
    def f(n, seed):
        x = 1
        out = []
        for i in range(n):
            x = x + 1
            out.append((x < 0, x * 3, -x, [10, 20, 30][int(x) % 3]))
            if i == 20:
                x = seed
        return x, out[-1]
    print(f(40, MyInt(2)))
    print(f(40, MyFloat(2.0)))
    print(f(40, True))
    def g(n, v):
        c = 0
        for i in range(n):
            if v:
                c += 1
            if i == 10:
                v = MyFloat(3.0)
        return c
    print(g(30, 1.0))
    class Bad:
        def __bool__(self): raise RuntimeError('nope')
        def __eq__(self, o): raise KeyError('eq')
    def h(n, v):
        c = 0
        for i in range(n):
            if v == 3:
                c += 1
            if i == 10:
                v = Bad()
        return c
    try: h(30, 3)
    except KeyError as e: print('KE', e)
    def k(n, v):
        c = 0
        for i in range(n):
            if v:
                c += 1
            if i == 10:
                v = Bad()
        return c
    try: k(30, 3)
    except RuntimeError as e: print('RE', e)
    def ch(n):
        c = 0
        for i in range(n):
            if 10 < i <= 50 and i is not None and i in (3, 20, 40):
                c += i
            if (j := i * 2) > 100:
                c += j
        return c
    print(ch(100))
    """,
)

program(
    "nested_native_loops_exceptions",
    """
    def f(n, bad):
        s = 0
        for i in range(n):
            j = 0
            while j < i:
                s += 1000 // (bad - i * j)
                j += 1
            s %= 10**9
        return s
    for bad in (-1, 50, 1000, 10**6):
        try: print(f(60, bad))
        except ZeroDivisionError as e: print('ZDE', bad, e)
    def g(rows):
        total = 0
        for r in rows:
            for x in r:
                if x is None:
                    break
                total += x
            else:
                total += 1000
        return total
    print(g([[1, 2, 3], [4, None, 5], [], (7.5, 8), range(10)] * 20))
    def h(n):
        s = 0
        for i in range(n):
            for j in range(i, 0, -3):
                if j % 5 == 0:
                    continue
                s += j
                if s > 10**12:
                    return -1
        return s
    print(h(300))
    def deep(n):
        out = 0
        for a in range(n):
            for b in range(n):
                for c in range(n):
                    out += (a ^ b) * (b | c) - (a & c)
        return out
    print(deep(25))
    """,
)

program(
    "settrace_and_frame_locals_midloop",
    """
    events = []
    def tracer(frame, event, arg):
        if frame.f_code.co_name == 'f':
            events.append((event, frame.f_lineno))
        return tracer
    def f(n, on):
        s = 0
        for i in range(n):
            s += i
            if i == on:
                sys.settrace(tracer)
                sys._getframe().f_trace = tracer
        return s
    print(f(50, 20))
    sys.settrace(None)
    print(len(events), events[:6])
    def g(n):
        s = 0
        for i in range(n):
            s += i
            if i == 30:
                fr = sys._getframe()
                print('locals', sorted((k, v) for k, v in fr.f_locals.items() if k != 'fr'))
        return s
    print(g(50))
    """,
)


program(
    "float_pow_edge_cases",
    """
    def powers(pairs):
        out = []
        for a, b in pairs:
            try:
                out.append(repr(a ** b))
            except Exception as e:
                out.append(type(e).__name__ + ': ' + str(e))
        return out
    nan, inf = float('nan'), float('inf')
    common = [(2.0, 0.5), (1.5, -1.5), (3.0, 2), (2, 0.5), (1.0, nan), (4.0, 0.0)]
    odd = [(-8.0, 1 / 3), (0.0, -1.0), (0.0, 2.0), (1e308, 2.0), (1.5, -1800.0),
           (1.5, -1840.0), (nan, 2.0), (inf, 2.0), (4.0, inf), (4.0, -inf), (-2.0, 3.0),
           (2.0, 1100.0), (2.0, -1100.0)]
    for _ in range(30):
        r1 = powers(common)
    print(r1)
    print(powers(common * 3 + odd + common))
    def accumulate(n):
        s = 0.0
        x = 1.0
        for i in range(n):
            x += 0.25
            s += x ** -1.5 + x ** 2.0
            s **= 1.0
        return s
    print(repr(accumulate(500)))
    """,
)

program(
    "list_store_float_in_place",
    """
    def bump(v, keep, n):
        for i in range(n):
            v[0] += 0.5          # the old item may be shared: never change it in place
            v[1] = v[1] * 1.001
            v[-1] -= 0.25
            if i == 7:
                keep.append(v[0])
        return v
    shared = 10.0
    v = [shared, 2.0, 3.0]
    keep = [v[1]]
    print(bump(v, keep, 40), keep, shared)
    w = [1.0, 2.0, 3.0]
    alias = w[2]
    print(bump(w, [], 40), alias)
    print(bump([1.0, 2, 'x'] if False else [1.0, 2.0, 3.0], [], 3))
    try:
        bump([1.0], [], 3)
    except IndexError as e:
        print('IndexError', e)
    """,
)


program(
    "float_locals_written_at_exit",
    """
    def run(n, x, seen):
        y = x            # y and x share the float object at first
        t = 0
        for i in range(n):
            x = x * 1.5 + 1.0
            t = t + 0.25
            if i == n - 3:
                seen.append(x)   # a second reference to the current value
        return x, y, t
    seen = []
    a = 2.0
    print(run(40, a, seen), seen, a)
    print(run(40, 7, seen), seen)
    for k in range(5):
        print(run(30 + k, 1.0, []))
    """,
)


program(
    "globals_and_builtins_rebound_midloop",
    """
    import builtins
    K = 3
    def f(n):
        out = 0
        for i in range(n):
            out += abs(-i) + K + len('ab')
            if i == 50:
                globals()['abs'] = lambda x: 1000       # shadows the builtin
            if i == 80:
                del globals()['abs']
            if i == 90:
                builtins.len = lambda x: 7
            if i == 95:
                builtins.len = real_len
            if i == 120:
                globals()['K'] = 10
            if i == 130:
                globals()['unrelated'] = i              # another key: same values
        return out
    real_len = len
    print(f(200))
    print(f(200))
    """,
)


program(
    "truth_of_guarded_global_container",
    """
    PENDING = []
    SEEN = {}
    def drain(n):
        out = 0
        for i in range(n):
            if PENDING:          # the same list object every time, not the same contents
                out += PENDING.pop()
            if not SEEN:
                out += 1
            if i % 7 == 0:
                PENDING.append(i)
            if i == 50:
                SEEN['x'] = 1
        return out
    print(drain(200), PENDING, SEEN)
    print(drain(200), PENDING)
    """,
)


program(
    "borrowed_list_items_exit_mid_update",
    """
    # v[k] -= ... on lists reached through tuples (nbody's shape): the item is
    # loaded without a reference while nothing escapes; exits in between (an
    # int item, a short tuple, a short list) must hand the frame a reference.
    import sys
    def step(pairs, dt):
        for (v1, m1), (v2, m2) in pairs:
            d = m1 - m2
            v1[0] -= d * dt
            v1[1] += d * m2
            v2[2] -= d * m1
    a, b, c = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]
    pairs = [((a, 1.5), (b, 2.5)), ((a, 1.5), (c, 3.5)), ((b, 2.5), (c, 3.5))]
    for i in range(300):
        step(pairs, 0.01)
    print(a, b, c)
    b[1] = 5                      # an int item: the float guard exits
    for i in range(50):
        step(pairs, 0.01)
    print(a, b, c)
    pairs.append(((c, 1.0), (a,)))  # a short tuple: the size guard exits
    try:
        step(pairs, 0.01)
    except ValueError as e:
        print("ValueError", e)
    pairs[-1] = ((c, 1.0), ([1.0], 2.0))  # a short list: index 2 out of range
    try:
        step(pairs, 0.01)
    except IndexError as e:
        print("IndexError", e)
    print(a, b, c, [sys.getrefcount(x) for x in (a, b, c)])
    """,
)

program(
    "int_locals_written_in_place_at_exits",
    """
    # Exit stubs write an unboxed int into an int object only the frame holds;
    # one the program still refers to (saved), a cached small int, or a value
    # of another size must get a new object.
    def f(n, total):
        saved = []
        small = 0
        for i in range(n):
            total += i * 3 % 7
            small = i % 300 - 20
            if i & 15 == 0:
                total ^= i
                saved.append(total)
            if i % 97 == 0:
                total = -total
        return total, small, saved[-3:], sum(saved), len(saved)
    for start in (1000, 2**30 - 2000, -(2**30) + 500, 5, 2**40):
        print(f(3000, start))
    keep = 10**6 + 1
    print(f(100, keep), keep)
    """,
)

program(
    "comprehensions",
    """
    def f(n):
        out = []
        for i in range(n):
            out.append(sum([j * 2 for j in range(i % 7)]))
        return sum(out)
    def g(n, x):
        # the comprehension's variable shadows a bound local: saved and restored
        y = [x * 3 for x in range(n)]
        return x, len(y), y[-1]
    def h(n):
        return [(a, a * 2.5) for a in range(n)][-3:]
    def nested(n):
        return sum(sum([a * b for b in range(5)]) for a in range(n))
    def raising(n):
        x = "outer"
        try:
            return [10 // (j - n // 2) for j in range(n)]
        except ZeroDivisionError as e:
            return x, repr(e)
    def iter_raises(n):
        def gen():
            for k in range(n):
                yield k
            raise ValueError("late")
        try:
            return [k + 1 for k in gen()]
        except ValueError as e:
            return str(e)
    print(f(500), g(400, "kept"), h(300), nested(300))
    for n in (10, 50, 400):
        print(raising(n), iter_raises(n))
    """,
)

program(
    "tuples_and_contains",
    """
    class Box:
        def __init__(self):
            self.calls = 0
        def __contains__(self, item):
            self.calls += 1
            if item == 77:
                raise KeyError(item)
            return item % 3 == 0
    class Eq:
        seen = 0
        def __eq__(self, other):
            Eq.seen += 1
            return other == 5
        __hash__ = None
    def f(n):
        s = 0
        d = {"a": 1, "b": 2}
        lst = [1, 2, 3, Eq()]
        keyed = {(3, 1): 0}
        for i in range(n):
            t = (i, i * 2, float(i), "x", None)
            s += t[1] + len(t)
            if "a" in d:
                s += 1
            if "z" not in d:
                s += 2
            if "bc" in "abcd":
                s += 3
            if i in lst:
                s += 100
            if (i, 1) in keyed:
                s += 1000
        return s, t, Eq.seen
    def g(n, box):
        hits = 0
        for i in range(n):
            if i in box:
                hits += 1
        return hits
    print(f(600))
    box = Box()
    print(g(70, box), box.calls)
    try:
        g(100, box)
    except KeyError as e:
        print("KeyError", e, box.calls)
    def pairs(n):
        return [(i, (i, -i)) for i in range(n)][n // 2]
    print(pairs(500))
    """,
)


program(
    "fstrings_and_dict_literals",
    """
    class P:
        def __init__(self, v):
            self.v = v
        def __format__(self, spec):
            if self.v == 333:
                raise ValueError("bad format")
            if self.v == 444:
                return 7
            return f"P<{self.v}:{spec}>"
        def __repr__(self):
            return f"P({self.v!r})"
    def f(n, w):
        out = []
        for i in range(n):
            x = i * 1.5
            s = f"{i}-{x:.2f}-{'ab'!r}-{i!s:>{w}}|{None}|{True}|{x!a}"
            d = {"k": i, "s": s, 1: x}
            e = {}
            e[i] = d
            out.append(len(s) + len(d) + len(e) + len(f"{P(i)}{P(i)!r}{P(i):x}"))
        return sum(out), s, d
    print(f(300, 5))
    print(f(300, 9))
    for bad in (334, 445):
        try:
            print(f(bad, 3))
        except (ValueError, TypeError) as exc:
            print(type(exc).__name__, exc)
    """,
)


program(
    "list_displays_and_slices",
    """
    class Seq:
        def __getitem__(self, k):
            if k.start == 13:
                raise IndexError("thirteen")
            return (k.start, k.stop)
    def f(n, s, seq):
        out = 0
        for i in range(n):
            a = [i, i + 1, "x"]
            b = [1, 2, 3, 4, 5]
            c = [*a, *(7, 8), *b]
            out += len(a) + len(b) + len(c) + len(s[1:i % 7]) + len(a[:2]) + len(s[i % 3:])
            out += len(seq[i % 20:None])
            last = (s[-3:], b[1:-1], c[i % 4:], seq[i % 10:i])
        return out, a, b, c, last
    print(f(300, "hello world", Seq()))
    try:
        f(300, "hello", [1, 2, 3] if False else Seq().__class__())
    except IndexError as e:
        print("IndexError", e)
    try:
        f(50, 12345, Seq())
    except TypeError as e:
        print("TypeError", e)
    """,
)


program(
    "str_replace_one_char",
    # str.replace with constants: the same object back when a one-character
    # needle is absent, longer needles, wide and narrow text, a str subclass
    # (a new str).
    """
    import html

    class S(str):
        pass

    def f(items):
        out = []
        for s in items:
            e = html.escape(s)
            out.append((e, e is s, s.replace("a", ""), s.replace("\u0100", "A"),
                        type(s.replace("x", "y")).__name__, s.replace("<b", "[")))
        return out

    items = ["plain", "a<b>&c", "", "q" + chr(34) + chr(39), "\u0100 & <", "\U0001F600 a", "aaa",
             "x" * 40 + "&", S("sub&")]
    for i in range(300):
        r = f(items)
    print(r)
    """,
)

program(
    "is_between_objects",
    # `a is b` with neither side a constant the trace knows.
    """
    def f(pairs):
        n = 0
        for a, b in pairs:
            if a is b:
                n += 1
            if a is not b:
                n += 100
            n += (a is b) * 10000
        return n

    x, y = object(), [1]
    pairs = [(x, x), (x, y), (y, y), (None, x), ("s", "s")]
    for i in range(300):
        r = f(pairs)
    print(r)
    """,
)


program(
    "make_function_in_loop",
    # MAKE_FUNCTION and SET_FUNCTION_ATTRIBUTE (defaults, keyword defaults,
    # annotations, closures) in a trace; the functions it makes are called,
    # not inlined (each run makes new ones).
    """
    def outer(n, k):
        total = 0
        for i in range(n):
            def inner(x, y=i, *, z=k):
                return x + y + z + i
            total += inner(1)
            g = lambda a, b=2: a * b + k
            total += g(i)
            def ann(q: int) -> int:
                return q
            total += ann(3) + len(ann.__annotations__) + inner.__defaults__[0]
        return total, inner.__kwdefaults__, inner.__qualname__, g.__name__, g(1, 3)

    print(outer(300, 5))
    """,
)


KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n]))
        if n in KNOWN_BUGS
        else n
        for n in sorted(PROGRAMS)
    ],
)
def test_program(name: str, tmp_path: Path) -> None:
    source, compiles = PROGRAMS[name]
    check(source, tmp_path, compiles=compiles)


def test_helper_detects_difference(tmp_path: Path) -> None:
    """The helper really compares: a program whose output depends on whether the
    JIT is on must fail the stdout comparison."""
    source = "import sys\nprint('tracejit' in sys.modules)\n"
    plain, jit, stats = run_differential(source, tmp_path)
    assert plain.stdout != jit.stdout
    assert stats["traces_compiled"] == 0


def test_program_count() -> None:
    assert len(PROGRAMS) >= 30


def _run_raw(source: str, workdir: Path) -> Outcome:
    return run_program(textwrap.dedent(source), workdir, "")


def test_import_textwrap_under_jit(tmp_path: Path) -> None:
    source = """
    import tracejit; tracejit.enable(threshold=1)
    import textwrap
    print("ok")
    """
    out = _run_raw(source, tmp_path)
    assert (out.returncode, out.stdout) == (0, "ok\n")


def test_del_order_minimal(tmp_path: Path) -> None:
    source = """
    log = []
    class D:
        def __init__(self, i):
            self.i = i
        def __del__(self):
            log.append(self.i)
    def f(n):
        d = None
        s = 0
        for i in range(n):
            d = D(i)
            s += d.i
            if i % 2 == 0:
                log.append(-i - 100)
        return s
    f(5)
    print(log)
    """
    check(source, tmp_path)


def test_traceback_minimal(tmp_path: Path) -> None:
    source = """
    def g(v):
        if v == 50:
            raise ValueError(v)
        return v
    def f(n):
        s = 0
        for i in range(n):
            s += g(i)
        return s
    f(100)
    """
    check(source, tmp_path)


def test_global_kept_alive_minimal(tmp_path: Path) -> None:
    source = """
    import gc
    class D:
        def __del__(self):
            print("D freed")
    x = D()
    def g(n):
        for i in range(n):
            u = x
    g(100)
    print("rebinding")
    x = None
    gc.collect()
    print("end")
    """
    check(source, tmp_path)


def test_exception_during_recording_minimal(tmp_path: Path) -> None:
    source = """
    def f():
        c = 1
        for i in range(10):
            x = 15 // c
            c = 0
    def g():
        s = 0
        for i in range(100):
            s += i
        return s
    try:
        f()
    except ZeroDivisionError:
        pass
    print(g())
    """
    check(source, tmp_path, compiles=True)


def test_disable_inside_native_loop_minimal(tmp_path: Path) -> None:
    source = """
    import tracejit; tracejit.enable(threshold=1)
    def toggle(i):
        if i == 30:
            tracejit.disable()
    def f(n):
        s = 0
        for i in range(n):
            s += i
            toggle(i)
        return s
    print(f(100))
    print("done")
    """
    out = _run_raw(source, tmp_path)
    assert (out.returncode, out.stdout) == (0, "4950\ndone\n")
