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

import os
import sys
from collections.abc import Callable, Iterator
from types import TracebackType

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402

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


def main(argv: list[str] | None = None) -> None:
    run_benchmark(aborting_kernel, argv, 40_000, 3_000)


if __name__ == "__main__":
    main()
