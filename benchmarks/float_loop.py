"""Float kernel: midpoint-rule integration of a few functions (pure float arithmetic).

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def integrate_pi(n: int) -> float:
    """4 / (1 + x^2) over [0, 1] is pi."""
    h = 1.0 / n
    s = 0.0
    for i in range(n):
        x = (i + 0.5) * h
        s += 4.0 / (1.0 + x * x)
    return s * h


def integrate_poly(n: int, a: float, b: float) -> float:
    """x^3 - 2x^2 + 0.5x - 1 by Horner's rule over [a, b]."""
    h = (b - a) / n
    s = 0.0
    x = a + 0.5 * h
    for _ in range(n):
        s += ((x - 2.0) * x + 0.5) * x - 1.0
        x += h
    return s * h


def float_kernel(n: int) -> str:
    pi = integrate_pi(n)
    poly = integrate_poly(n, -1.5, 2.5)
    # repr: the JIT must give bit-identical IEEE results.
    return f"{pi!r} {poly!r}"


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
    n, repeats = parse_args(argv, 1_700_000, 60_000, 10, 4)
    times: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = float_kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    print(json.dumps({"result": result, "times": times}))


if __name__ == "__main__":
    main()
