"""Micro-benchmark of the copy-and-patch backend (run with CPython 3.13).

    python3.13 benchmarks/micro_stencils.py [--n 10000000] [--repeat 5]

1. A native stencil loop summing ints (``while i < n: total += i; i += 1`` on
   unboxed int64 registers, with the overflow checks and an eval-breaker poll
   per iteration) against the same loop run by CPython, as a ``while`` loop
   and as a ``for ... in range`` loop. Median of ``--repeat`` runs each.
2. The median time to ``assemble`` (and free) a 100-stencil sequence.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracejit.backend import AVAILABLE, UNAVAILABLE_REASON  # noqa: E402


def python_while(n: int) -> int:
    i = 0
    total = 0
    while i < n:
        total += i
        i += 1
    return total


def python_for(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def native(n: int) -> int:
    from tracejit.backend.assembler import Label, MachineInstr, assemble

    i = 0
    total = 0
    frame = sys._getframe()
    code = frame.f_code
    s_n, s_i, s_total = (code.co_varnames.index(v) for v in ("n", "i", "total"))
    here = frame.f_lasti // 2 + 0  # instr_ptr stays on the CALL of entry (see below)
    loop, done, bail = Label("loop"), Label("done"), Label("bail")
    I = MachineInstr  # noqa: E741
    trace: list[MachineInstr | Label] = [
        I("load_slot", (0, s_n)),
        I("load_slot", (1, s_i)),
        I("load_slot", (2, s_total)),
        I("unbox_int", (3, 0), exit=bail, error=bail),
        I("unbox_int", (4, 1), exit=bail, error=bail),
        I("unbox_int", (5, 2), exit=bail, error=bail),
        I("const", (7, 1)),
        loop,
        I("int_lt", (6, 4, 3)),
        I("guard_true", (6,), exit=done),
        I("int_add", (5, 5, 4), exit=bail),
        I("int_add", (4, 4, 7), exit=bail),
        I("check_eval_breaker", exit=bail),
        I("jump", target=loop),
        done,
        I("box_int", (8, 5), error=bail),
        I("store_local", (8, s_total)),
        I("box_int", (9, 4), error=bail),
        I("store_local", (9, s_i)),
        I("exit_finish", (here, 0, 0)),
        bail,
        I("exit_finish", (here, 0, 1)),
    ]
    compiled = assemble(trace, 10)
    try:
        # The frame is executing the CALL of entry; the interpreter keeps its own
        # instruction and stack pointers meanwhile, so exit_finish's writes are
        # not read back (tests/backend checks them on a suspended frame).
        if compiled.entry(frame) != 0:
            raise RuntimeError("the native loop bailed out")
    finally:
        compiled.free()
    return total if i == n else -1


def timed(fn: object, n: int, repeat: int) -> tuple[float, int]:
    times = []
    result = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(n)  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def assemble_time(repeat: int) -> tuple[float, int]:
    from tracejit.backend.assembler import Label, MachineInstr, assemble, warm_up

    warm_up()
    exit_, err, loop = Label("exit"), Label("err"), Label("loop")
    body: list[MachineInstr | Label] = [loop]
    ops = [
        MachineInstr("load_slot", (0, 1)),
        MachineInstr("guard_type", (0, id(int)), exit=exit_),
        MachineInstr("unbox_int", (1, 0), exit=exit_, error=err),
        MachineInstr("int_add", (2, 1, 1), exit=exit_),
        MachineInstr("int_lt", (3, 2, 1)),
        MachineInstr("guard_true", (3,), exit=exit_),
        MachineInstr("box_int", (4, 2), error=err),
        MachineInstr("call_binary", (5, 4, 0, 12345), error=err),
        MachineInstr("store_local", (5, 2)),
        MachineInstr("float_mul", (6, 6, 6)),
    ]
    while sum(isinstance(x, MachineInstr) for x in body) < 97:
        body.extend(ops)
    body = body[:98]
    body += [
        MachineInstr("jump", target=loop),
        exit_,
        MachineInstr("exit_finish", (0, 0, 1)),
        err,
        MachineInstr("exit_finish", (0, 0, -1)),
    ]
    count = sum(isinstance(x, MachineInstr) for x in body)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        compiled = assemble(body, 8)
        times.append(time.perf_counter() - t0)
        compiled.free()
    return statistics.median(times), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not AVAILABLE:
        print(f"backend unavailable: {UNAVAILABLE_REASON}")
        return 1
    n, repeat = args.n, args.repeat
    t_native, r_native = timed(native, n, repeat)
    t_while, r_while = timed(python_while, n, repeat)
    t_for, r_for = timed(python_for, n, repeat)
    if not r_native == r_while == r_for == n * (n - 1) // 2:
        raise SystemExit(f"results differ: {r_native} {r_while} {r_for}")
    print(f"sum of range({n}), median of {repeat}:")
    print(f"  native stencil loop  {t_native * 1e3:9.2f} ms  ({t_native / n * 1e9:.2f} ns/iter)")
    print(f"  CPython while loop   {t_while * 1e3:9.2f} ms  ({t_while / n * 1e9:.2f} ns/iter)")
    print(f"  CPython for loop     {t_for * 1e3:9.2f} ms  ({t_for / n * 1e9:.2f} ns/iter)")
    print(f"  speed-up vs while: {t_while / t_native:.1f}x   vs for: {t_for / t_native:.1f}x")
    t_asm, count = assemble_time(max(repeat, 201))
    print(f"assemble {count} stencils (+ trace_entry, mmap/mprotect): median {t_asm * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
