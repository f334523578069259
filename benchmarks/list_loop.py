"""List processing: indexing, len, append, pop, comparisons, method calls.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N, --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import time


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
    n, repeats = parse_args(argv, 300_000, 15_000, 10, 4)
    times: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = list_kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    print(json.dumps({"result": result, "times": times}))


if __name__ == "__main__":
    main()
