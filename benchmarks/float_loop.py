"""Float kernel: midpoint-rule integration of a few functions (pure float arithmetic).

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402


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


def main(argv: list[str] | None = None) -> None:
    run_benchmark(float_kernel, argv, 1_700_000, 60_000)


if __name__ == "__main__":
    main()
