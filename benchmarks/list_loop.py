"""List processing: indexing, len, append, pop, comparisons, method calls.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402


def make_data(n: int, seed: int) -> list[int]:
    data = []
    for _ in range(n):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        data.append(seed % 1000)
    return data


def insertion_sort(chunk: list[int]) -> None:
    for i in range(1, len(chunk)):
        item = chunk[i]
        j = i - 1
        while j >= 0 and chunk[j] > item:
            chunk[j + 1] = chunk[j]
            j -= 1
        chunk[j + 1] = item


def sieve(limit: int) -> list[int]:
    flags = [True] * (limit + 1)
    flags[0] = flags[1] = False
    i = 2
    while i * i <= limit:
        if flags[i]:
            for k in range(i * i, limit + 1, i):
                flags[k] = False
        i += 1
    return [i for i in range(limit + 1) if flags[i]]


def list_kernel(n: int) -> int:
    data = make_data(n, 12345)
    evens: list[int] = []
    odds: list[int] = []
    for x in data:
        if x % 2 == 0:
            evens.append(x)
        else:
            odds.append(x)
    rises = 0
    best = 0
    for i in range(1, len(data)):
        if data[i] > data[i - 1]:
            rises += 1
        if data[i] > best:
            best = data[i]
    # Sort small chunks by hand.
    checksum = 0
    for start in range(0, len(data), 32):
        chunk = data[start : start + 32]
        insertion_sort(chunk)
        checksum = (checksum * 31 + chunk[0] + chunk[-1] * 7) & 0xFFFFFFFF
    # A stack: push and pop.
    stack: list[int] = []
    popped = 0
    for x in odds:
        if stack and stack[-1] < x:
            popped += stack.pop()
        else:
            stack.append(x)
    primes = sieve(n // 4 + 10)
    return (checksum + len(evens) * 3 + rises + best + popped + len(stack)
            + len(primes) + primes[-1]) & 0xFFFFFFFF


def main(argv: list[str] | None = None) -> None:
    run_benchmark(list_kernel, argv, 300_000, 15_000)


if __name__ == "__main__":
    main()
