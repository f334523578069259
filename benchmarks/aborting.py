"""A real workload whose hot loops all use constructs a tracing JIT refuses at first:
generators with ``yield`` inside the loop, ``try``/``except`` with raising in the
loop, ``with`` blocks, closures with ``nonlocal`` writes.  It measures the cost of
running with the JIT on when nothing compiles.

The work: tokenize a generated log text, parse numbers (words raise ValueError),
validate records (bad ones raise), account resources in ``with`` blocks, and
aggregate through closures.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (log lines), --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from types import TracebackType

WORDS = ["GET", "PUT", "ok", "fail", "user", "x7", "retry", "-", "db", "cache"]


class BadRecord(Exception):
    pass


class Budget:
    """Context manager: counts entries, exits, and suppressed BadRecord errors."""

    def __init__(self) -> None:
        self.entered = 0
        self.suppressed = 0
        self.depth = 0

    def __enter__(self) -> Budget:
        self.entered += 1
        self.depth += 1
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.depth -= 1
        if et is BadRecord:
            self.suppressed += 1
            return True
        return False


def log_lines(n: int) -> Iterator[str]:
    seed = 2024
    for i in range(n):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        parts = []
        for k in range(4 + seed % 5):
            v = (seed >> (k * 3)) & 31
            if v < 12:
                parts.append(str(v * 37 + i % 11))
            else:
                parts.append(WORDS[v % len(WORDS)])
        yield " ".join(parts)


def tokens(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(lines):
        for tok in line.split():
            yield lineno, tok


def make_aggregator() -> tuple[Callable[[int], None], Callable[[], tuple[int, int, int]]]:
    total = 0
    count = 0
    biggest = 0

    def add(v: int) -> None:
        nonlocal total, count, biggest
        total += v
        count += 1
        if v > biggest:
            biggest = v

    def result() -> tuple[int, int, int]:
        return total, count, biggest

    return add, result


def validate(lineno: int, value: int) -> int:
    if value % 13 == 0:
        raise BadRecord(f"line {lineno}: multiple of 13")
    return value


def aborting_kernel(n: int) -> str:
    add, result = make_aggregator()
    budget = Budget()
    words = 0
    for lineno, tok in tokens(log_lines(n)):
        try:
            value = int(tok)
        except ValueError:
            words += 1
            continue
        with budget:
            add(validate(lineno, value))
    total, count, biggest = result()
    return f"{total} {count} {biggest} {words} {budget.entered} {budget.suppressed}"


def parse_args(argv: list[str] | None, n: int, n_quick: int, reps: int, reps_quick: int
               ) -> tuple[int, int]:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int)
    p.add_argument("--repeats", type=int)
    a = p.parse_args(argv)
    quick = a.quick or os.environ.get("BENCH_QUICK") == "1"
    size = a.n if a.n is not None else (n_quick if quick else n)
    repeats = a.repeats if a.repeats is not None else (reps_quick if quick else reps)
    return size, repeats


def main(argv: list[str] | None = None) -> None:
    n, repeats = parse_args(argv, 40_000, 3_000, 10, 4)
    times: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = aborting_kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    print(json.dumps({"result": result, "times": times}))


if __name__ == "__main__":
    main()
