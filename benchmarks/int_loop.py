"""Integer loop in a function: the simplest case for a tracing JIT.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def int_kernel(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * 3 % 7
        if i & 15 == 0:
            total ^= i
    return total


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
    n, repeats = parse_args(argv, 3_000_000, 100_000, 10, 4)
    times: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = int_kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    print(json.dumps({"result": result, "times": times}))


if __name__ == "__main__":
    main()
