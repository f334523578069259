"""Hypothesis fuzzing: random loop programs run plain and with the JIT must agree.

Each example is a script with several generated functions.  A function has
2-4 int/float locals and a ``for i in range(N)`` or ``while`` loop whose body
is a random sequence of assignments (arithmetic over the locals, ``i`` and
small or near-int64-boundary constants such as 2**62, -2**63, 2**63-1), if/else
on comparisons, occasional ``x = x % M`` reductions, divisions that may raise
and early ``break``.  The script calls every function, printing its result or
the exception's type and message (exceptions are caught outside the loop), and
is run in two subprocesses: on the plain interpreter and with
``tracejit.enable(threshold=1)``.  stdout, stderr and exit code must match.

Budget: 60 examples (deterministic, ``derandomize=True``) in CI.  For longer
runs set ``TRACEJIT_FUZZ_EXAMPLES``, e.g.::

    TRACEJIT_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py -q

A mismatch is shrunk by hypothesis to a minimal function; bugs found this way
are kept as explicit ``xfail(strict=True)`` regression tests at the bottom.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_differential import check, run_differential

MAX_EXAMPLES = int(os.environ.get("TRACEJIT_FUZZ_EXAMPLES", "60"))
FUNCS_PER_EXAMPLE = 4

NAMES = ["a", "b", "c", "d"]
INT_CONSTS = [
    0, 1, 2, 3, 5, 7, -1, -2, -7, 10, 63, 64, 100,
    2**31, 2**32, 2**62, 2**63 - 1, -(2**63), -(2**63) + 1, 2**62 + 1, -(2**62),
]
# constants that do not fit in int64 make the recorder abort: keep them rare
HUGE_CONSTS = [2**63, 2**64, -(2**63) - 1]
FLOAT_CONSTS = [0.0, -0.0, 0.5, 1.5, -2.25, 1e300, -1e-300, 3.0, 1e16]
BIG = 2**60


@st.composite
def constants(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 29))
    if kind < 4:
        return repr(draw(st.sampled_from(FLOAT_CONSTS)))
    if kind == 4:
        v = draw(st.sampled_from(HUGE_CONSTS))
    else:
        v = draw(st.sampled_from(INT_CONSTS) | st.integers(-20, 20))
    return f"({v})" if v < 0 else repr(v)


@st.composite
def exprs(draw: st.DrawFn, names: list[str], depth: int = 2) -> str:
    choice = draw(st.integers(0, 9))
    if depth == 0 or choice < 3:
        return draw(st.sampled_from([*names, "i"]) if choice != 2 else constants())
    left = draw(exprs(names, depth - 1))
    right = draw(exprs(names, depth - 1))
    op = draw(
        st.sampled_from(
            ["+", "-", "*"] * 4 + ["//", "%", "/", "&", "|", "^", "<<", ">>", "cmp", "u"]
        )
    )
    if op in ("<<", ">>"):
        amount = draw(st.sampled_from(["i % 70", "3", "63", "64", "1", "0"]))
        return f"({left} {op} ({amount}))"
    if op == "cmp":
        cop = draw(st.sampled_from(["<", "<=", "==", "!=", ">", ">="]))
        return f"({left} {cop} {right})"
    if op == "u":
        uop = draw(st.sampled_from(["-", "-", "~", "not "]))
        return f"({uop}{left})"
    return f"({left} {op} {right})"


@st.composite
def rich_statements(draw: st.DrawFn, names: list[str]) -> list[str]:
    """Statements over a list ``L``, an object ``o`` and None-valued locals."""
    target = draw(st.sampled_from(names))
    e = draw(exprs(names, 1))
    return draw(
        st.sampled_from(
            [
                [f"L.append({e})", "if len(L) > 20:", "    L.pop(0)"],
                [f"{target} = L[i % len(L)]"],
                [f"{target} = L[-1]"],
                [f"L[i % len(L)] = {e}"],
                [f"{target} = None"],
                [f"{target} = {target} if {target} is not None else {e}"],
                [f"o.x = {e}"],
                [f"{target} = o.x"],
                [f"{target} = len(L) + {target}"],
                [f"{target} = abs({target})"],
            ]
        )
    )


@st.composite
def statements(
    draw: st.DrawFn, names: list[str], depth: int = 1, rich: bool = False
) -> list[str]:
    kind = draw(st.integers(0, 12 if rich else 9))
    target = draw(st.sampled_from(names))
    if kind >= 10:
        return draw(rich_statements(names))
    if kind <= 4 or depth == 0:
        aug = draw(st.sampled_from(["=", "=", "+=", "-=", "*="]))
        return [f"{target} {aug} {draw(exprs(names))}"]
    if kind == 5:
        m = draw(st.sampled_from(["1000003", "97", "2**61 - 1", "(-13)", "2**40"]))
        return [f"{target} = {target} % {m}"]
    if kind == 6:
        k = draw(st.integers(0, 300))
        return [f"if i == {k}:", "    break"]
    cond = f"{draw(exprs(names, 1))} {draw(st.sampled_from(['<', '>', '==', '!=']))} " + draw(
        exprs(names, 1)
    )
    body = draw(st.lists(statements(names, depth - 1, rich), min_size=1, max_size=3))
    lines = [f"if {cond}:"] + ["    " + line for stmt in body for line in stmt]
    if draw(st.booleans()):
        other = draw(st.lists(statements(names, depth - 1, rich), min_size=1, max_size=2))
        lines += ["else:"] + ["    " + line for stmt in other for line in stmt]
    return lines


@st.composite
def functions(draw: st.DrawFn, fname: str, rich: bool = False) -> str:
    nvars = draw(st.integers(2, 4))
    names = NAMES[:nvars]
    inits = [f"{n} = {draw(constants())}" for n in names]
    body: list[str] = []
    if rich:
        inits += ["L = [1, 2.5, 3]", "o = NS()"]
        body += [f"if {n} is None:\n    {n} = {draw(constants())}" for n in names]
        body = [line for b in body for line in b.splitlines()]
    body += [
        line
        for stmt in draw(st.lists(statements(names, rich=rich), min_size=1, max_size=6))
        for line in stmt
    ]
    # keep magnitudes bounded so that big-int arithmetic stays cheap
    check = "{n} > {big} or {n} < -{big}"
    if rich:
        check = "{n} is not None and (" + check + ")"
    bound = [
        f"if {check.format(n=n, big=BIG)}:\n    {n} = {n} % {2**40}" for n in names
    ]
    body += [line for b in bound for line in b.splitlines()]
    n = draw(st.sampled_from([50, 200, 10, 300, 100, 3, 0]))
    if draw(st.booleans()):
        loop = [f"for i in range({n}):"] + ["    " + line for line in body]
        pre: list[str] = []
    else:
        pre = ["i = 0"]
        loop = [f"while i < {n}:", "    i += 1"] + ["    " + line for line in body]
    lines = [f"def {fname}():", *("    " + x for x in inits + pre + loop)]
    results = [*names, "L", "o.x"] if rich else names
    lines.append(f"    return ({', '.join(results)},)")
    return "\n".join(lines) + "\n"


def script(funcs: list[str]) -> str:
    calls = "\n".join(
        f"try:\n    print({i}, repr(f{i}()))\n"
        f"except Exception as e:\n    print({i}, type(e).__name__, e)"
        for i in range(len(funcs))
    )
    prelude = "class NS:\n    x = 0\n"
    return prelude + "\n".join(funcs) + "\n" + calls + "\n"


@pytest.mark.parametrize("rich", [False, True], ids=["arith", "rich"])
def test_fuzz_loops(tmp_path: Path, rich: bool) -> None:
    """``arith``: int/float locals only; ``rich``: also a list, an object's
    attribute and locals that become None."""
    compiled: list[int] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.tuples(*(functions(f"f{k}", rich) for k in range(FUNCS_PER_EXAMPLE))))
    def run(funcs: tuple[str, ...]) -> None:
        source = script(list(funcs))
        plain, jit, stats = run_differential(source, tmp_path)
        assert (jit.stdout, jit.stderr, jit.returncode) == (
            plain.stdout,
            plain.stderr,
            plain.returncode,
        ), source
        compiled.append(int(stats["traces_compiled"]))

    run()
    # the generator is useless if (nearly) nothing compiles
    assert sum(1 for c in compiled if c > 0) >= len(compiled) // 2, compiled


def test_fuzz_program_shape(tmp_path: Path) -> None:
    """A fixed, hand-written program of the generated shape compiles and agrees."""
    source = textwrap.dedent(
        """
        def f0():
            a = 2**62
            b = 0.5
            c = -7
            i = 0
            while i < 300:
                i += 1
                a = (a + (c * i))
                if (a % 97) > 50:
                    b = (b * 1.5) - a
                else:
                    c = c % 1000003
                a = a + 2**62
                if a > 2**70 or a < -2**70:
                    a = a % 2**66
            return (a, b, c)
        print(f0())
        """
    )
    check(source, tmp_path)
