"""The command line and timing loop every benchmark program shares.

A program prints one JSON line, ``{"result": ..., "times": [...]}``: its
result (checked equal between CPython and tracejit by the harness) and the
seconds each inner repeat took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable


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


def _callgrind(switch: str) -> None:
    """Turn callgrind's instruction counting on or off for this process (run
    under valgrind by benchmarks/instructions.py)."""
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())],
                   capture_output=True, check=False)


def _jit_recordings() -> int | None:
    """Recordings tracejit started so far, if it runs this program."""
    jit = sys.modules.get("tracejit")
    return None if jit is None else int(jit.stats()["traces_started"])


def run_benchmark(kernel: Callable[[int], object], argv: list[str] | None, n: int,
                  n_quick: int, reps: int = 10, reps_quick: int = 4) -> None:
    n, repeats = parse_args(argv, n, n_quick, reps, reps_quick)
    # benchmarks/instructions.py: count instructions from this repeat on.
    count_from = int(os.environ.get("BENCH_COUNT_FROM", "-1"))
    recordings: int | None = None
    times: list[float] = []
    result: object = None
    for i in range(repeats):
        if i == count_from:
            recordings = _jit_recordings()
            _callgrind("on")
        t0 = time.perf_counter()
        r = kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    out: dict[str, object] = {"result": result, "times": times}
    if 0 <= count_from < repeats:
        _callgrind("off")
        after = _jit_recordings()
        if recordings is not None and after is not None:
            out["recordings_while_counted"] = after - recordings
    print(json.dumps(out))
