"""Object-level stencils on real frames: C-API calls, refcounts, errors, iterators."""

from __future__ import annotations

import ctypes
import operator
import sys
import types
from collections.abc import Generator, Iterator

import pytest
from backend_helpers import finish, requires_backend, run, slot, stacktop

pytestmark = requires_backend

from tracejit.backend.assembler import Label, MachineInstr, assemble, runtime_address  # noqa: E402
from tracejit.backend.symbols import address_of  # noqa: E402

I = MachineInstr  # noqa: E741
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.cents + other.cents)


def add_kernel(x: object, y: object) -> tuple[int, object]:
    r: object = None
    err = Label("err")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(add_kernel, "x"))),
        I("load_slot", (1, slot(add_kernel, "y"))),
        I("call_binary", (2, 0, 1, address_of("PyNumber_Add")), error=err),
        I("store_local", (2, slot(add_kernel, "r"))),  # steals the new reference
        finish(0),
        err,
        finish(-1),
    ]
    rc = run(sys._getframe(), code)
    return rc, r


@pytest.mark.parametrize(
    ("x", "y"),
    [("ab", "cd"), ([1, 2], [3]), (Money(5), Money(7)), (2**70, 1), (1.5, 2)],
    ids=["str", "list", "custom", "bigint", "mixed"],
)
def test_call_binary_number_add_with_refcounts(x: object, y: object) -> None:
    before = sys.getrefcount(x), sys.getrefcount(y)
    rc, r = add_kernel(x, y)
    assert rc == 0
    if isinstance(x, Money):
        assert isinstance(r, Money) and r.cents == 12
    else:
        assert r == x + y  # type: ignore[operator]
    assert (sys.getrefcount(x), sys.getrefcount(y)) == before
    assert sys.getrefcount(r) == 2  # `r` and getrefcount's argument


def test_error_exit_raises_the_python_exception() -> None:
    x, y = Money(1), "s"
    before = sys.getrefcount(x), sys.getrefcount(y)
    with pytest.raises(TypeError, match="unsupported operand"):
        add_kernel(x, y)
    assert (sys.getrefcount(x), sys.getrefcount(y)) == before
    # the interpreter carries on normally afterwards
    assert add_kernel("a", "b") == (0, "ab")


def unary_kernel(fn: str, x: object) -> object:
    r: object = None
    err = Label("err")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(unary_kernel, "x"))),
        I("call_unary", (1, 0, address_of(fn)), error=err),
        I("store_local", (1, slot(unary_kernel, "r"))),
        finish(0),
        err,
        finish(-1),
    ]
    assert run(sys._getframe(), code) == 0
    return r


def test_call_unary() -> None:
    assert unary_kernel("PyNumber_Negative", 5) == -5
    assert unary_kernel("PyObject_Repr", [1]) == "[1]"
    with pytest.raises(TypeError):
        unary_kernel("PyNumber_Negative", "s")


def misc_kernel(obj: Money, d: dict[str, int], other: object) -> tuple[object, ...]:
    cents: object = None
    lt: object = None
    size: object = None
    truth: object = None
    boxed: object = None
    err, s = Label("err"), slot
    f = misc_kernel
    name_cents = "cents"
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, s(f, "obj"))),
        I("getattr", (1, 0, id(name_cents)), error=err),  # new ref
        I("store_local", (1, s(f, "cents"))),
        I("load_slot", (2, s(f, "other"))),
        I("setattr", (0, id(name_cents), 2), error=err),  # no steal
        I("load_slot", (3, s(f, "d"))),
        I("setitem", (3, 2, 2), error=err),  # d[other] = other
        I("richcompare", (4, 2, 1, 0), error=err),  # other < cents (Py_LT == 0)
        I("store_local", (4, s(f, "lt"))),
        I("len", (5, 3), error=err),
        I("box_int", (6, 5), error=err),
        I("store_local", (6, s(f, "size"))),
        I("is_true", (7, 3), error=err),
        I("box_bool", (8, 7)),
        I("store_local", (8, s(f, "truth"))),
        I("const", (9, 0)),
        I("box_bool", (10, 9)),
        I("store_local", (10, s(f, "boxed"))),
        finish(0),
        err,
        finish(-1),
    ]
    assert run(sys._getframe(), code) == 0
    return cents, lt, size, truth, boxed


def test_getattr_setattr_setitem_richcompare_len_is_true_box_bool() -> None:
    m, d, other = Money(3), {"a": 1}, 2
    assert misc_kernel(m, d, other) == (3, True, 2, True, False)
    assert m.cents == 2 and d == {"a": 1, 2: 2}
    with pytest.raises(AttributeError):
        misc_kernel(object(), d, other)  # type: ignore[arg-type]


def test_len_error_exit() -> None:
    with pytest.raises(TypeError):
        misc_kernel(Money(1), 5, 1)  # type: ignore[arg-type]


def target(a: int, b: int) -> int:
    return a + 10 * b


def vector_kernel(fn: object, a: object, b: object) -> tuple[int, object]:
    r: object = None
    err = Label("err")
    s, f = slot, vector_kernel
    code: list[MachineInstr | Label] = [
        I("load_slot", (4, s(f, "fn"))),
        I("load_slot", (5, s(f, "a"))),
        I("load_slot", (6, s(f, "b"))),
        I("call_vector", (0, 4, 2), error=err),
        I("store_local", (0, s(f, "r"))),
        finish(0),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code), r


def test_call_vector() -> None:
    a, b = 2**70, 3
    before = sys.getrefcount(a)
    assert vector_kernel(target, a, b) == (0, 2**70 + 30)
    assert vector_kernel(max, 4, 9) == (0, 9)
    assert sys.getrefcount(a) == before
    with pytest.raises(TypeError):
        vector_kernel(target, "x", 1)


def method_kernel(descr: object, machine: str, *args: object) -> tuple[int, object]:
    """A method descriptor's C function called directly by `machine` on
    self and args (loaded into registers 4, 5, ...)."""
    from tracejit.backend.layout import method_entry

    a0, a1, a2 = (list(args) + [None, None, None])[:3]
    r: object = None
    err = Label("err")
    s, f = slot, method_kernel
    meth = method_entry(descr)[0]
    loads = [I("load_slot", (4 + i, s(f, name))) for i, name in enumerate(("a0", "a1", "a2"))]
    keep = []
    if machine.endswith("_c"):  # the arguments after self as data: {nargs, args...}
        consts = (ctypes.c_uint64 * len(args))(len(args) - 1, *map(id, args[1:]))
        keep.append(consts)
        call = I(machine, (0, 4, ctypes.addressof(consts), meth), error=err)
    elif machine == "call_meth_o":
        call = I(machine, (0, 4, 5, meth), error=err)
    elif machine == "call_meth_noargs":
        call = I(machine, (0, 4, meth), error=err)
    else:
        call = I(machine, (0, 4, len(args) - 1, meth), error=err)
    code: list[MachineInstr | Label] = [
        *loads, call, I("store_local", (0, s(f, "r"))), finish(0), err, finish(-1),
    ]
    return run(sys._getframe(), code), r


def test_call_meth_calls_the_c_function_directly() -> None:
    items: list[object] = [1]
    assert method_kernel(list.append, "call_meth_o", items, "x") == (0, None)
    assert items == [1, "x"]
    assert method_kernel(str.upper, "call_meth_noargs", "abc") == (0, "ABC")
    assert method_kernel(list.pop, "call_meth_fast", items, 0) == (0, 1)
    assert method_kernel(str.replace, "call_meth_fastkw", "a-b-c", "-", "+") == (0, "a+b+c")
    with pytest.raises(UnicodeEncodeError):
        method_kernel(str.encode, "call_meth_fastkw", "\u20ac", "ascii")
    with pytest.raises(IndexError):
        method_kernel(list.pop, "call_meth_fast", [], 0)
    # constant arguments passed from data
    assert method_kernel(str.replace, "call_meth_fastkw_c", "a-b-c", "-", "+") == (0, "a+b+c")
    assert method_kernel(list.pop, "call_meth_fast_c", [5, 6], 0) == (0, 5)
    with pytest.raises(IndexError):
        method_kernel(list.pop, "call_meth_fast_c", [], 0)


def refcount_kernel(x: object) -> None:
    y: object = None
    s = slot(refcount_kernel, "x")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, s)),
        I("incref", (0,)),
        I("incref", (0,)),
        I("incref", (0,)),
        I("decref", (0,)),
        I("const", (1, 0)),
        I("xdecref", (1,)),  # NULL: no-op
        I("copy", (2, 0)),
        I("store_local", (2, slot(refcount_kernel, "y"))),  # y = x, steals one
        I("store_slot_raw", (0, slot(refcount_kernel, "x"))),  # same object, no decref
        I("xdecref", (0,)),
        finish(0),
    ]
    assert run(sys._getframe(), code) == 0
    assert y is x


def test_incref_decref_balance() -> None:
    x = object()
    before = sys.getrefcount(x)
    refcount_kernel(x)
    assert sys.getrefcount(x) == before


def getitem_kernel(op: str, seq: object, index: int) -> tuple[int, object]:
    r: object = None
    out = Label("out")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(getitem_kernel, "seq"))),
        I("const", (1, index)),  # negative: two's complement operand
        I(op, (2, 0, 1), exit=out),
        I("store_local", (2, slot(getitem_kernel, "r"))),
        finish(0),
        out,
        finish(1),
    ]
    return run(sys._getframe(), code), r


@pytest.mark.parametrize("kind", [list, tuple])
def test_list_and_tuple_getitem(kind: type) -> None:
    op = "list_getitem" if kind is list else "tuple_getitem"
    items = [object() for _ in range(4)]
    seq = kind(items)
    for index in range(-6, 7):
        before = sys.getrefcount(items[index % 4])
        rc, r = getitem_kernel(op, seq, index)
        if -4 <= index < 4:
            assert (rc, r) == (0, seq[index])
            assert sys.getrefcount(r) == before + 1  # `r` holds a new reference
        else:
            assert (rc, r) == (1, None)
        del r


def setitem_kernel(seq: list[object], index: int, value: object) -> int:
    out = Label("out")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(setitem_kernel, "seq"))),
        I("const", (1, index)),
        I("load_slot", (2, slot(setitem_kernel, "value"))),
        I("incref", (2,)),  # list_setitem steals
        I("list_setitem", (0, 1, 2), exit=out),
        finish(0),
        out,
        I("decref", (2,)),  # not stolen on the exit path
        finish(1),
    ]
    return run(sys._getframe(), code)


def test_list_setitem() -> None:
    old, new = object(), object()
    seq = [1, old, 3]
    o_before, n_before = sys.getrefcount(old), sys.getrefcount(new)
    assert setitem_kernel(seq, -2, new) == 0
    assert seq == [1, new, 3]
    assert sys.getrefcount(old) == o_before - 1
    assert sys.getrefcount(new) == n_before + 1
    assert setitem_kernel(seq, 3, old) == 1
    assert setitem_kernel(seq, -4, old) == 1
    assert seq == [1, new, 3] and sys.getrefcount(old) == o_before - 1


def collect_kernel(op: str, it: object, limit: int) -> tuple[int, int, int]:
    """Sum up to ``limit`` int items pulled with ``op``; returns (rc, count, total)."""
    count = 0
    total = 0
    loop, done, err, full, bad = Label("loop"), Label("done"), Label("err"), Label("f"), Label("b")
    boxed = op != "range_iter_next"
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(collect_kernel, "it"))),
        I("const", (2, 0)),
        I("const", (3, 1)),
        I("const", (4, limit)),
        I("const", (9, 0)),
        loop,
        I("int_lt", (5, 2, 4)),
        I("guard_true", (5,), exit=full),
        I(op, (6, 0), exit=done, error=err),
        *(
            [
                I("guard_type", (6, id(int)), exit=bad),
                I("unbox_int", (7, 6), exit=bad, error=err),
                I("decref", (6,)),
            ]
            if boxed
            else [I("copy", (7, 6))]
        ),
        I("int_add", (9, 9, 7), exit=bad),
        I("int_add", (2, 2, 3), exit=bad),
        I("jump", target=loop),
        done,
        I("box_int", (10, 2), error=err),
        I("store_local", (10, slot(collect_kernel, "count"))),
        I("box_int", (11, 9), error=err),
        I("store_local", (11, slot(collect_kernel, "total"))),
        finish(0),
        full,
        I("box_int", (10, 2), error=err),
        I("store_local", (10, slot(collect_kernel, "count"))),
        I("box_int", (11, 9), error=err),
        I("store_local", (11, slot(collect_kernel, "total"))),
        finish(1),
        bad,
        finish(2),
        err,
        finish(-1),
    ]
    rc = run(sys._getframe(), code)
    return rc, count, total


def test_range_iter_next() -> None:
    it = iter(range(3, 40, 4))
    assert collect_kernel("range_iter_next", it, 100) == (0, 10, sum(range(3, 40, 4)))
    assert next(it, "end") == "end"
    it = iter(range(10, -10, -3))
    assert collect_kernel("range_iter_next", it, 2) == (1, 2, 10 + 7)
    assert list(it) == [4, 1, -2, -5, -8]  # the interpreter continues where we stopped


@pytest.mark.parametrize("op", ["list_iter_next", "tuple_iter_next", "iter_next"])
def test_object_iterators(op: str) -> None:
    data = [5, 2**40, -3, 7]
    seq = tuple(data) if op == "tuple_iter_next" else data
    it = iter(seq)
    assert collect_kernel(op, it, 100) == (0, 4, sum(data))
    assert next(it, "end") == "end"
    it = iter(seq)
    assert collect_kernel(op, it, 3) == (1, 3, sum(data[:3]))
    assert list(it) == [7]
    before = [sys.getrefcount(x) for x in data]
    collect_kernel(op, iter(seq), 100)
    assert [sys.getrefcount(x) for x in data] == before


class Countdown:
    def __init__(self, n: int, fail: bool = False) -> None:
        self.n = n
        self.fail = fail

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self.n == 0:
            if self.fail:
                raise ValueError("broken iterator")
            raise StopIteration
        self.n -= 1
        return self.n


def test_iter_next_generic() -> None:
    def gen() -> Iterator[int]:
        yield from (1, 2, 3)

    assert collect_kernel("iter_next", gen(), 100) == (0, 3, 6)
    # StopIteration raised by __next__ is cleared (no exception leaks: ctypes would raise)
    assert collect_kernel("iter_next", Countdown(4), 100) == (0, 4, 3 + 2 + 1)
    assert sys.exc_info() == (None, None, None)
    with pytest.raises(ValueError, match="broken iterator"):
        collect_kernel("iter_next", Countdown(2, fail=True), 100)


GLOBAL_ANSWER = 42


def global_kernel(desc: ctypes.Array[ctypes.c_uint64],
                  check: str = "tj_guard_global") -> int:
    """guard_global on this module's globals (the frame's, or a function's
    with tj_guard_global_in): 0 continue, 1 exit."""
    missing, err = Label("missing"), Label("err")
    code: list[MachineInstr | Label] = [
        I("guard_global", (ctypes.addressof(desc), runtime_address(check)),
          exit=missing, error=err),
        finish(0),
        missing,
        finish(1),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code)


def global_desc(name: str, expected: object, *func: object) -> ctypes.Array[ctypes.c_uint64]:
    """{[function,] name, cell}, the cell {globals version, builtins version,
    globals, builtins, object} unset."""
    never = (1 << 64) - 1
    head = [id(f) for f in func] + [id(name)]
    return (ctypes.c_uint64 * (len(head) + 5))(*head, never, never, 0, 0, id(expected))


def test_guard_global() -> None:
    global GLOBAL_ANSWER
    answer = global_desc("GLOBAL_ANSWER", 42)
    assert global_kernel(answer) == 0
    # the versions seen are remembered: the next check does no lookup
    assert answer[1] != (1 << 64) - 1 and answer[3] == id(globals())
    assert global_kernel(answer) == 0
    assert global_kernel(global_desc("len", len)) == 0  # from builtins
    assert global_kernel(global_desc("no_such_name_anywhere", None)) == 1
    assert global_kernel(global_desc("GLOBAL_ANSWER", 43)) == 1  # another object
    GLOBAL_ANSWER = 4200  # rebinding changes the globals' version: looked up again
    try:
        assert global_kernel(answer) == 1
    finally:
        GLOBAL_ANSWER = 42


def test_guard_global_in_reads_the_functions_dicts() -> None:
    global GLOBAL_ANSWER
    inside = global_desc("GLOBAL_ANSWER", 42, global_kernel)
    assert global_kernel(inside, "tj_guard_global_in") == 0
    assert inside[2] != (1 << 64) - 1 and inside[4] == id(globals())
    assert global_kernel(global_desc("len", len, global_kernel), "tj_guard_global_in") == 0
    assert global_kernel(global_desc("nowhere_at_all", None, global_kernel),
                         "tj_guard_global_in") == 1
    GLOBAL_ANSWER = 4200
    try:
        assert global_kernel(inside, "tj_guard_global_in") == 1
    finally:
        GLOBAL_ANSWER = 42


def load_global_kernel(name: str) -> tuple[int, object]:
    """load_global of `name` into local `v`: 0 and its value, 1 if missing."""
    v: object = None
    missing, err = Label("missing"), Label("err")
    code: list[MachineInstr | Label] = [
        I("load_global", (0, id(name)), exit=missing, error=err),
        I("store_local", (0, slot(load_global_kernel, "v"))),
        finish(0),
        missing,
        finish(1),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code), v


def test_load_global_reads_the_current_value() -> None:
    global GLOBAL_ANSWER
    assert load_global_kernel("GLOBAL_ANSWER") == (0, 42)
    assert load_global_kernel("len") == (0, len)  # from builtins
    assert load_global_kernel("no_such_name_anywhere") == (1, None)
    GLOBAL_ANSWER = 4200  # no cell: every use sees the new value
    try:
        assert load_global_kernel("GLOBAL_ANSWER") == (0, 4200)
    finally:
        GLOBAL_ANSWER = 42


def binop_kernel(op: str, a: int, b: int) -> tuple[int, int | None]:
    r: int | None = None
    out, err = Label("out"), Label("err")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(binop_kernel, "a"))),
        I("load_slot", (1, slot(binop_kernel, "b"))),
        I("unbox_int", (2, 0), exit=out, error=err),
        I("unbox_int", (3, 1), exit=out, error=err),
        I(op, (4, 2, 3), exit=out) if op != "int_neg" else I(op, (4, 2), exit=out),
        I("box_int", (5, 4), error=err),
        I("store_local", (5, slot(binop_kernel, "r"))),
        finish(0),
        out,
        finish(1),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code), r


def _python(op: str, a: int, b: int) -> int | None:
    """Python's result, or None when the stencil must exit."""
    r: int
    if op in ("int_floordiv", "int_mod") and b == 0:
        return None
    if op == "int_lshift":
        if b < 0 or (a != 0 and b >= 64):
            return None
        r = a << b
    elif op == "int_rshift":
        if b < 0:
            return None
        r = a >> min(b, 64)
    elif op == "int_neg":
        r = -a
    else:
        name = op[4:]
        r = int(getattr(operator, name + "_" if name in ("and", "or") else name)(a, b))
    return r if INT64_MIN <= r <= INT64_MAX else None


VALUES = [
    0,
    1,
    -1,
    2,
    -2,
    3,
    -7,
    7,
    63,
    64,
    100,
    12345678901,
    -(2**40),
    2**62,
    INT64_MIN,
    INT64_MAX,
]
INT_OPS = [
    "int_add", "int_sub", "int_mul", "int_floordiv", "int_mod", "int_and", "int_or", "int_xor",
    "int_lshift", "int_rshift", "int_neg", "int_lt", "int_le", "int_eq", "int_ne", "int_gt",
    "int_ge",
]  # fmt: skip


@pytest.mark.parametrize("op", INT_OPS)
def test_int_ops_follow_python_semantics(op: str) -> None:
    for a in VALUES:
        for b in VALUES:
            expected = _python(op, a, b)
            got = binop_kernel(op, a, b)
            assert got == ((1, None) if expected is None else (0, expected)), (op, a, b)


def float_cmp_kernel(op: str, a: float, b: float) -> int | float | str | None:
    """r = a OP b for float compares (boxed as int) and float_div (boxed as float)."""
    r: int | float | None = None
    out, err = Label("out"), Label("err")
    box = "box_float" if op == "float_div" else "box_int"
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(float_cmp_kernel, "a"))),
        I("load_slot", (1, slot(float_cmp_kernel, "b"))),
        I("unbox_float", (2, 0)),
        I("unbox_float", (3, 1)),
        I(op, (4, 2, 3), exit=out),
        I(box, (5, 4), error=err),
        I("store_local", (5, slot(float_cmp_kernel, "r"))),
        finish(0),
        out,
        finish(1),
        err,
        finish(-1),
    ]
    rc = run(sys._getframe(), code)
    return r if rc == 0 else f"exit {rc}"


def test_float_compares_and_division_guard() -> None:
    nan, inf = float("nan"), float("inf")
    values = [0.0, -0.0, 1.5, -2.25, inf, -inf, nan]
    for op in ("float_lt", "float_le", "float_eq", "float_ne", "float_gt", "float_ge"):
        py = getattr(operator, op[6:])
        for a in values:
            for b in values:
                assert float_cmp_kernel(op, a, b) == int(py(a, b)), (op, a, b)
    assert float_cmp_kernel("float_div", 1.0, 0.0) == "exit 1"
    assert float_cmp_kernel("float_div", 1.0, -0.0) == "exit 1"
    assert float_cmp_kernel("float_div", -3.0, 0.5) == -6.0
    assert float_cmp_kernel("float_div", 1.0, inf) == 0.0


def generator_frame() -> Generator[object, object]:
    x = yield "first"
    yield x


def test_exit_finish_writes_instr_ptr_and_stacktop() -> None:
    """exit_finish on a suspended generator's frame (not executing: nothing rewrites it)."""
    g = generator_frame()
    assert isinstance(g, types.GeneratorType)
    assert next(g) == "first"
    frame = g.gi_frame
    assert frame is not None
    lasti, top = frame.f_lasti, stacktop(frame)

    def finish_at(ip: int, st: int, code: int) -> int:
        compiled = assemble([I("exit_finish", (ip, st, code))], 0)
        try:
            return compiled.entry(frame)
        finally:
            compiled.free()

    assert finish_at(lasti // 2 + 1, top + 1, 5) == 5
    assert (frame.f_lasti, stacktop(frame)) == (lasti + 2, top + 1)
    assert finish_at(lasti // 2, top, -3 & 0xFFFFFFFF) == -3
    assert (frame.f_lasti, stacktop(frame)) == (lasti, top)
    assert g.send("second") == "second"  # resumes cleanly


def getitem_variant_kernel(op: str, seq: object, index: int) -> tuple[int, object]:
    """r = seq[index] with any getitem variant: ``_c`` takes the index as an
    immediate, ``_borrowed`` takes no reference (the kernel takes one)."""
    r: object = None
    out = Label("out")
    const = op.endswith("_c")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(getitem_variant_kernel, "seq"))),
        I("const", (2, index)),
        I(op, (1, 0, index if const else 2), exit=out),
    ]
    if "borrowed" in op:
        code.append(I("incref", (1,)))
    code += [
        I("store_local", (1, slot(getitem_variant_kernel, "r"))),
        finish(0),
        out,
        finish(1),
    ]
    return run(sys._getframe(), code), r


@pytest.mark.parametrize("kind", ["list", "tuple"])
@pytest.mark.parametrize("variant", ["_borrowed", "_c", "_borrowed_c"])
def test_getitem_variants(kind: str, variant: str) -> None:
    op = f"{kind}_getitem{variant}"
    items = [object() for _ in range(4)]
    base = [sys.getrefcount(x) for x in items]
    seq = list(items) if kind == "list" else tuple(items)
    indices = range(0, 7) if variant.endswith("_c") else range(-6, 7)
    for index in indices:
        before = sys.getrefcount(items[index % 4])
        rc, r = getitem_variant_kernel(op, seq, index)
        if -4 <= index < 4:
            assert (rc, r) == (0, seq[index])
            assert sys.getrefcount(r) == before + 1  # `r` holds one new reference
        else:
            assert (rc, r) == (1, None)
        del r
    del seq
    assert [sys.getrefcount(x) for x in items] == base


def size_and_unbox_kernel(seq: object, x: object) -> tuple[int, float]:
    """guard_size seq == 3, then guard_unbox_float x; r = the double."""
    r = 0.0
    bad_size, bad_type, err = Label("size"), Label("type"), Label("err")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(size_and_unbox_kernel, "seq"))),
        I("load_slot", (1, slot(size_and_unbox_kernel, "x"))),
        I("guard_size", (0, 3), exit=bad_size),
        I("guard_unbox_float", (2, 1, id(float)), exit=bad_type),
        I("box_float", (3, 2), error=err),
        I("store_local", (3, slot(size_and_unbox_kernel, "r"))),
        finish(0),
        bad_size,
        finish(1),
        bad_type,
        finish(2),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code), r


def test_guard_size_and_guard_unbox_float() -> None:
    assert size_and_unbox_kernel([1, 2, 3], -2.5) == (0, -2.5)
    assert size_and_unbox_kernel((1, 2, 3), 1e300) == (0, 1e300)
    assert size_and_unbox_kernel([1, 2], 1.0) == (1, 0.0)
    assert size_and_unbox_kernel((), 1.0) == (1, 0.0)
    assert size_and_unbox_kernel([1, 2, 3], 1) == (2, 0.0)

    class F(float):
        pass

    assert size_and_unbox_kernel([1, 2, 3], F(1.0)) == (2, 0.0)


def setitem_float_c_kernel(seq: list[object], index: int, x: float) -> int:
    out, err = Label("out"), Label("err")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(setitem_float_c_kernel, "seq"))),
        I("load_slot", (1, slot(setitem_float_c_kernel, "x"))),
        I("unbox_float", (2, 1)),
        I("list_setitem_float_c", (0, index, 2), exit=out, error=err),
        finish(0),
        out,
        finish(1),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code)


def test_list_setitem_float_c() -> None:
    seq = [1.0, "old", 3.0]
    assert setitem_float_c_kernel(seq, 1, 2.5) == 0
    assert seq == [1.0, 2.5, 3.0]
    assert setitem_float_c_kernel(seq, 0, -0.0) == 0
    assert str(seq[0]) == "-0.0"
    assert setitem_float_c_kernel(seq, 3, 1.0) == 1
    assert seq == [-0.0, 2.5, 3.0]


def store_int_kernel(value: int) -> tuple[object, bool]:
    """y = int(value) through store_local_int; y starts as a fresh int that
    only this frame's slot refers to."""
    y: object = int("123456789")
    before = id(y)
    err = Label("err")
    code: list[MachineInstr | Label] = [
        I("const", (0, value)),
        I("store_local_int", (0, slot(store_int_kernel, "y")), error=err),
        finish(0),
        err,
        finish(-1),
    ]
    assert run(sys._getframe(), code) == 0
    return y, id(y) == before


def test_store_local_int_in_place_only_where_unobservable() -> None:
    for v in (257, -6, 2**30 - 1, -(2**30) + 1, 123456):
        y, same = store_int_kernel(v)
        assert (y, type(y), same) == (v, int, True), v
    for v in (256, -5, 0, 1, 2**30, -(2**30), 2**62, -(2**63)):
        y, same = store_int_kernel(v)
        assert (y, type(y), same) == (v, int, False), v
    for v in range(-5, 257):
        assert store_int_kernel(v)[0] is v  # the cached small ints


def decode_kernel(b: object) -> tuple[int, object]:
    r: object = None
    err = Label("err")
    s, f = slot, decode_kernel
    code: list[MachineInstr | Label] = [
        I("load_slot", (4, s(f, "b"))),
        I("bytes_decode_utf8", (0, 4), error=err),
        I("store_local", (0, s(f, "r"))),
        finish(0),
        err,
        finish(-1),
    ]
    return run(sys._getframe(), code), r


def test_bytes_decode_utf8() -> None:
    assert decode_kernel(b"caf\xc3\xa9") == (0, "caf\u00e9")
    assert decode_kernel(b"") == (0, "")
    with pytest.raises(UnicodeDecodeError) as info:
        decode_kernel(b"a\xff")
    with pytest.raises(UnicodeDecodeError) as expected:
        b"a\xff".decode("utf-8")
    assert str(info.value) == str(expected.value)


def test_utf8_encode_and_decode_call_the_codec_directly() -> None:
    from tracejit.backend.codegen import lower_trace
    from tracejit.ir.trace import parse_trace

    text = """
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$str [pc=0 | | ]
      v1:obj = call_nocode $encode, v0, $utf8 [pc=2 | | ]
      v2:obj = call_nocode $decode, v1, $utf8 [pc=4 | | ]
      v3:obj = call_nocode $encode, v0, $ascii [pc=6 | | ]
      decref v1
      decref v2
      decref v3
    """
    env = {"str": str, "encode": str.encode, "decode": bytes.decode, "utf8": "utf-8",
           "ascii": "ascii"}
    machine = [i.op for i in lower_trace(parse_trace(text, env), 1, 0).code
               if isinstance(i, MachineInstr)]
    assert "call_unary" in machine and "bytes_decode_utf8" in machine, machine
    assert machine.count("call_meth_fastkw_c") == 1, machine  # the ascii one


def test_global_guards_share_a_descriptor_per_code_name_and_object() -> None:
    from tracejit.backend.codegen import lower_trace
    from tracejit.ir.trace import parse_trace

    alive = []  # a descriptor lives as long as a trace holding it

    def descriptors(code: object, text: str) -> list[int]:
        lowered = lower_trace(parse_trace(text, {"len": len, "abs": abs}), 1, 0,
                              code)  # type: ignore[arg-type]
        alive.append(lowered)
        return [i.operands[0] for i in lowered.code
                if isinstance(i, MachineInstr) and i.op == "guard_global"]

    text = """
    trace t
      guard_global name='len' obj=$len [pc=0 | | ]
      guard_global name='len' obj=$len [pc=2 | | ]
      guard_global name='abs' obj=$abs [pc=4 | | ]
    """
    one = descriptors(test_bytes_decode_utf8.__code__, text)
    two = descriptors(test_bytes_decode_utf8.__code__, text)
    other = descriptors(decode_kernel.__code__, text)
    assert one[0] == one[1] == two[0] and one[2] == two[2] != one[0]
    assert other[0] != one[0]  # another code: its own dicts, its own cache


def append_kernel(out_of_line: bool, lst: list[object], item: object) -> object:
    """list_append, decref and store_local, inline or out of line (the forms
    a huge function's traces use)."""
    y: object = None
    suffix = "_out" if out_of_line else ""
    never = Label("never")
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(append_kernel, "lst"))),
        I("load_slot", (1, slot(append_kernel, "item"))),
        I("list_append" + suffix, (0, 1), error=never),
        I("incref", (1,)),
        I("incref", (1,)),
        I("decref" + suffix, (1,)),
        I("store_local" + suffix, (1, slot(append_kernel, "y"))),  # y = item, steals one
        finish(0),
        never,
        finish(1),
    ]
    assert run(sys._getframe(), code) == 0
    return y


@pytest.mark.parametrize("out_of_line", [False, True])
def test_list_append_decref_store_local_in_both_forms(out_of_line: bool) -> None:
    item = object()
    lst: list[object] = []
    before = sys.getrefcount(item)
    for k in range(1, 40):  # past the list's allocation: it grows
        assert append_kernel(out_of_line, lst, item) is item
        assert len(lst) == k and lst[-1] is item
        assert sys.getrefcount(item) == before + k  # the list's references only
    del lst
    assert sys.getrefcount(item) == before


def test_huge_code_lowers_common_ops_out_of_line() -> None:
    from tracejit.backend.codegen import lower_trace
    from tracejit.ir.trace import parse_trace

    text = """
    trace t
      v0:obj = load_local slot=0
      v1:obj = load_local slot=1
      guard_type v0 type=$list [pc=0 | | ]
      list_append v0, v1 [pc=2 | | ]
      incref v1
      store_local v1 slot=2
      v2:obj = call_nocode $encode, v1, $utf8 [pc=4 | | ]
      decref v2
    """
    env = {"list": list, "encode": str.encode, "utf8": "utf-8"}
    for out_of_line in (False, True):
        machine = {i.op for i in lower_trace(parse_trace(text, env), 3, 0,
                                             out_of_line=out_of_line).code
                   if isinstance(i, MachineInstr)}
        forms = {"list_append", "store_local", "decref"}
        assert machine >= ({f + "_out" for f in forms} if out_of_line else forms), machine
        assert not machine & ({"list_append", "store_local", "decref"} if out_of_line
                              else {"list_append_out", "store_local_out", "decref_out"})
