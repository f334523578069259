"""Real stencil sequences running natively on real frames: loops, guards, exits."""

from __future__ import annotations

import ctypes
import sys
import threading
import time

import pytest
from backend_helpers import finish, requires_backend, run, slot

pytestmark = requires_backend

from tracejit.backend.assembler import Label, MachineInstr, assemble  # noqa: E402

I = MachineInstr  # noqa: E741
INT64_MAX = 2**63 - 1


def sum_loop_code(
    n_slot: int, i_slot: int, total_slot: int, counter: ctypes.c_uint64 | None = None
) -> list[MachineInstr | Label]:
    """while i < n: total += i; i += 1 -- on unboxed ints, writing back i and total.

    Exit codes: 0 done, 1 a local is not an int, 2 overflow (state written back).
    Registers: 0 n, 1 i, 2 total (objects); 3 n, 4 i, 5 total (int64); 6 cond; 7 one;
    8, 9 boxed results.
    """
    loop, done, ovf, bad, err = (Label(x) for x in ("loop", "done", "ovf", "bad", "err"))
    exit_stub: list[MachineInstr | Label] = [ovf]
    if counter is not None:
        exit_stub.append(I("exit_count", (ctypes.addressof(counter),)))
    return [
        I("load_slot", (0, n_slot)),
        I("load_slot", (1, i_slot)),
        I("load_slot", (2, total_slot)),
        I("guard_type", (0, id(int)), exit=bad),
        I("guard_type", (1, id(int)), exit=bad),
        I("guard_type", (2, id(int)), exit=bad),
        I("unbox_int", (3, 0), exit=bad, error=err),
        I("unbox_int", (4, 1), exit=bad, error=err),
        I("unbox_int", (5, 2), exit=bad, error=err),
        I("const", (7, 1)),
        loop,
        I("int_lt", (6, 4, 3)),
        I("guard_true", (6,), exit=done),
        I("int_add", (5, 5, 4), exit=ovf),
        I("int_add", (4, 4, 7), exit=ovf),
        I("check_eval_breaker", exit=ovf),
        I("jump", target=loop),
        done,
        I("box_int", (8, 5), error=err),
        I("store_local", (8, total_slot)),
        I("box_int", (9, 4), error=err),
        I("store_local", (9, i_slot)),
        finish(0),
        *exit_stub,
        I("box_int", (8, 5), error=err),
        I("store_local", (8, total_slot)),
        I("box_int", (9, 4), error=err),
        I("store_local", (9, i_slot)),
        finish(2),
        bad,
        finish(1),
        err,
        finish(-1),
    ]


def sum_kernel(n: object, start: object = 0) -> tuple[int, object, object]:
    i = 0
    total = start
    code = sum_loop_code(slot(sum_kernel, "n"), slot(sum_kernel, "i"), slot(sum_kernel, "total"))
    rc = run(sys._getframe(), code)
    return rc, i, total


def test_sum_loop_writes_locals_back() -> None:
    assert sum_kernel(10) == (0, 10, 45)
    assert sum_kernel(0) == (0, 0, 0)
    assert sum_kernel(1_000_000) == (0, 1_000_000, sum(range(1_000_000)))


def test_sum_loop_result_has_exact_refcounts() -> None:
    _, _, total = sum_kernel(10**6)
    # a fresh int object: our reference and getrefcount's argument
    assert sys.getrefcount(total) == 2


def test_sum_loop_with_big_start_and_type_guard() -> None:
    assert sum_kernel(5, start=-(2**40)) == (0, 5, -(2**40) + 10)
    assert sum_kernel(5.0) == (1, 0, 0)  # guard_type on n fails: exit 1
    assert sum_kernel(5, start=2**64) == (1, 0, 2**64)  # guard passes, unbox exits


def test_overflow_guard_exits_with_state() -> None:
    start = INT64_MAX - 100
    rc, i, total = sum_kernel(1000, start=start)
    assert rc == 2
    # Python reference: the first i with total + i > INT64_MAX
    t, j = start, 0
    while t + j <= INT64_MAX:
        t += j
        j += 1
    assert (i, total) == (j, t)


def counted_kernel(n: int, counter: ctypes.c_uint64) -> tuple[int, int]:
    i = 0
    total = INT64_MAX - 3
    code = sum_loop_code(
        slot(counted_kernel, "n"), slot(counted_kernel, "i"), slot(counted_kernel, "total"), counter
    )
    rc = run(sys._getframe(), code)
    assert (i, total) == ((n, INT64_MAX - 3 + n * (n - 1) // 2) if rc == 0 else (3, INT64_MAX))
    return rc, i


def test_exit_count_increments_counter() -> None:
    counter = ctypes.c_uint64(41)
    assert counted_kernel(100, counter)[0] == 2
    assert counter.value == 42
    assert counted_kernel(1, counter)[0] == 0
    assert counter.value == 42


def spin_kernel() -> int:
    limit = 2**34  # ~tens of seconds: only reached if the breaker is never seen
    loop, broke, done = Label("loop"), Label("broke"), Label("done")
    code: list[MachineInstr | Label] = [
        I("const", (0, 0)),
        I("const", (1, 1)),
        I("const", (2, limit)),
        loop,
        I("check_eval_breaker", exit=broke),
        I("int_add", (0, 0, 1), exit=done),
        I("int_lt", (3, 0, 2)),
        I("guard_true", (3,), exit=done),
        I("jump", target=loop),
        broke,
        finish(7),
        done,
        finish(8),
    ]
    return run(sys._getframe(), code, nregs=4)


def test_check_eval_breaker_stops_a_native_loop() -> None:
    # Another thread wanting the GIL sets the eval breaker (drop request). It
    # runs Python code until the kernel is done, so it is still asking for the
    # GIL whenever the kernel starts, however the OS schedules the two threads.
    started = threading.Event()
    stop = False

    def other() -> None:
        started.set()
        while not stop:
            pass

    t = threading.Thread(target=other)
    t.start()
    started.wait()
    t0 = time.perf_counter()
    try:
        assert spin_kernel() == 7
        assert time.perf_counter() - t0 < 5
    finally:
        stop = True
        t.join()


def guards_kernel(x: object) -> int:
    bad = [Label(f"exit{k}") for k in range(6)]
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, slot(guards_kernel, "x"))),
        I("guard_is_not", (0, id(None)), exit=bad[1]),
        I("guard_type", (0, id(int)), exit=bad[2]),
        I("unbox_int", (1, 0), exit=bad[3], error=bad[0]),
        I("guard_false", (1,), exit=bad[4]),
        I("guard_is", (0, id(0)), exit=bad[5]),
        finish(0),
    ]
    for k, label in enumerate(bad):
        code += [label, finish(k if k else -1)]
    return run(sys._getframe(), code)


def test_failing_guards_return_their_exit_number() -> None:
    assert guards_kernel(None) == 1
    assert guards_kernel("s") == 2
    assert guards_kernel(2**80) == 3
    assert guards_kernel(5) == 4
    assert guards_kernel(0) == 0
    big_zero = int("0")  # small ints are cached: the same object as 0
    assert guards_kernel(big_zero) == 0


def float_kernel(n: int, scale: float) -> tuple[int, float]:
    i = 0
    acc = 0.0
    s_n, s_i, s_acc, s_scale = (slot(float_kernel, v) for v in ("n", "i", "acc", "scale"))
    loop, done, bad, err = Label("loop"), Label("done"), Label("bad"), Label("err")
    # acc += (i * scale) * (i * scale) / (i + 1.0) - 0.5 ; with float_neg and compares
    code: list[MachineInstr | Label] = [
        I("load_slot", (0, s_n)),
        I("unbox_int", (1, 0), exit=bad, error=err),
        I("load_slot", (2, s_scale)),
        I("guard_type", (2, id(float)), exit=bad),
        I("unbox_float", (3, 2)),
        I("load_slot", (4, s_acc)),
        I("unbox_float", (5, 4)),
        I("const", (6, 0)),  # i
        I("const", (7, 1)),
        I("int_to_float", (8, 7)),  # 1.0
        I("const", (9, int.from_bytes(ctypes.c_double(0.5), "little"))),
        loop,
        I("int_lt", (10, 6, 1)),
        I("guard_true", (10,), exit=done),
        I("int_to_float", (11, 6)),
        I("float_mul", (12, 11, 3)),
        I("float_mul", (13, 12, 12)),
        I("float_add", (14, 11, 8)),
        I("float_div", (15, 13, 14), exit=bad),
        I("float_neg", (16, 9)),
        I("float_add", (17, 15, 16)),
        I("float_add", (5, 5, 17)),
        I("int_add", (6, 6, 7), exit=bad),
        I("jump", target=loop),
        done,
        I("box_float", (18, 5), error=err),
        I("store_local", (18, s_acc)),
        I("box_int", (19, 6), error=err),
        I("store_local", (19, s_i)),
        finish(0),
        bad,
        finish(1),
        err,
        finish(-1),
    ]
    rc = run(sys._getframe(), code)
    assert i == (n if rc == 0 else 0)
    return rc, acc


def test_float_kernel_matches_python_bit_for_bit() -> None:
    for n, scale in [(0, 1.0), (10, 0.25), (1000, 3.0e-3), (100, -7.5)]:
        expected = 0.0
        for i in range(n):
            x = i * scale
            expected += x * x / (i + 1.0) + -0.5
        rc, acc = float_kernel(n, scale)
        assert rc == 0
        assert acc == expected  # same IEEE operations in the same order
    assert float_kernel(3, 1)[0] == 1  # int scale: type guard


def test_repatch_exit_to_another_label() -> None:
    def kernel() -> int:
        a, b = Label("a"), Label("b")
        code: list[MachineInstr | Label] = [
            I("const", (0, 0)),
            I("guard_true", (0,), exit=a),
            finish(0),
            a,
            finish(1),
            b,
            finish(2),
        ]
        from backend_helpers import complete

        frame = sys._getframe()
        compiled = assemble(complete(frame, code), 1)
        try:
            first = compiled.entry(frame)
            compiled.repatch_exit(1, compiled.address + compiled.label_offset(b))
            second = compiled.entry(frame)
            with pytest.raises(ValueError, match="no exit"):
                compiled.repatch_exit(0, compiled.address)
        finally:
            compiled.free()
        return first * 10 + second

    assert kernel() == 12
