"""Integer loop in a function: the simplest case for a tracing JIT.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402


def int_kernel(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * 3 % 7
        if i & 15 == 0:
            total ^= i
    return total


def main(argv: list[str] | None = None) -> None:
    run_benchmark(int_kernel, argv, 3_000_000, 100_000)


if __name__ == "__main__":
    main()
