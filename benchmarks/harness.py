"""Compare plain CPython and tracejit on the benchmark programs.

    python -m benchmarks.harness [--quick] [--only NAME,...] [--rounds N] [--json PATH]

Each program runs in fresh subprocesses, alternately under plain CPython
(``python prog.py``) and under tracejit (``python -m tracejit run --stats-json F
prog.py``), ``--rounds`` times each (A B A B ...).  A program prints one JSON line
``{"result": ..., "times": [...]}``; the later half of ``times`` is its steady
state.  Results must be equal in every run (a mismatch fails loudly, exit 1).
The headline is the speed-up: median CPython time / median tracejit time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# In the order the table shows them.
BENCHMARKS = [
    "int_loop",
    "float_loop",
    "nbody",
    "list_loop",
    "aborting",
    "deep_calls",
    "tornado_template",
    "mako_template",
]

DEFAULT_TIMEOUT_S = 300.0


@dataclass
class Run:
    result: Any
    steady: list[float]
    stats: dict[str, Any] | None = None
    stderr: str = ""


@dataclass
class BenchResult:
    name: str
    cpython: list[Run] = field(default_factory=list)
    tracejit: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, mode: str) -> float | None:
        runs = self.cpython if mode == "cpython" else self.tracejit
        times = [t for r in runs for t in r.steady]
        return statistics.median(times) if times else None

    def spread(self, mode: str) -> float | None:
        """Interquartile range of the steady-state times, relative to the median."""
        runs = self.cpython if mode == "cpython" else self.tracejit
        times = sorted(t for r in runs for t in r.steady)
        if len(times) < 4:
            return None
        q = statistics.quantiles(times, n=4)
        med = statistics.median(times)
        return (q[2] - q[0]) / med if med > 0 else None

    def speedup(self) -> float | None:
        a, b = self.median("cpython"), self.median("tracejit")
        if a is None or b is None or b <= 0:
            return None
        return a / b

    def last_stats(self) -> dict[str, Any] | None:
        for run in reversed(self.tracejit):
            if run.stats is not None:
                return run.stats
        return None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    # Same hash seed for both modes: the same work, less noise.
    env["PYTHONHASHSEED"] = "0"
    env.pop("BENCH_QUICK", None)
    return env


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with {returncode}"


def excerpt(stderr: str, head: int = 6, tail: int = 12) -> str:
    """The start (e.g. 'Fatal Python error: ...') and the end of a child's stderr."""
    lines = stderr.rstrip().splitlines()
    if len(lines) <= head + tail:
        return "\n".join(lines)
    return "\n".join([*lines[:head], f"    ... ({len(lines) - head - tail} lines) ...",
                      *lines[-tail:]])


def run_once(name: str, mode: str, quick: bool, timeout: float = DEFAULT_TIMEOUT_S) -> Run:
    prog = BENCH_DIR / f"{name}.py"
    extra = ["--quick"] if quick else []
    stats_path: str | None = None
    if mode == "cpython":
        cmd = [sys.executable, str(prog), *extra]
    else:
        fd, stats_path = tempfile.mkstemp(prefix=f"tracejit-{name}-", suffix=".json")
        os.close(fd)
        cmd = [sys.executable, "-m", "tracejit", "run", "--stats-json", stats_path,
               str(prog), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(),
                              cwd=str(REPO_ROOT), timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} run {describe_exit(proc.returncode)}:\n"
                               f"{excerpt(proc.stderr)}")
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"{mode} run printed no JSON line; stdout: {proc.stdout[-500:]!r}")
        data = json.loads(lines[-1])
        times = [float(t) for t in data["times"]]
        if not times:
            raise RuntimeError(f"{mode} run reported no times")
        steady = times[len(times) // 2 :]
        stats = None
        if stats_path is not None:
            try:
                with open(stats_path, encoding="utf-8") as f:
                    stats = json.load(f)
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"tracejit run wrote no readable stats: {exc}") from None
        return Run(result=data["result"], steady=steady, stats=stats, stderr=proc.stderr)
    finally:
        if stats_path is not None:
            try:
                os.unlink(stats_path)
            except OSError:
                pass


def run_benchmark(name: str, rounds: int, quick: bool,
                  timeout: float = DEFAULT_TIMEOUT_S) -> BenchResult:
    res = BenchResult(name)
    for i in range(rounds):
        for mode in ("cpython", "tracejit"):
            print(f"  {name}: round {i + 1}/{rounds}, {mode} ...", file=sys.stderr, flush=True)
            try:
                run = run_once(name, mode, quick, timeout)
            except subprocess.TimeoutExpired:
                res.errors.append(f"{name} [{mode}]: TIMED OUT after {timeout:g} s")
                return res
            except (RuntimeError, ValueError, KeyError) as exc:
                res.errors.append(f"{name} [{mode}]: {exc}")
                return res
            (res.cpython if mode == "cpython" else res.tracejit).append(run)
    reference = res.cpython[0].result
    for mode, runs in (("cpython", res.cpython), ("tracejit", res.tracejit)):
        for k, run in enumerate(runs):
            if run.result != reference:
                res.errors.append(
                    f"{name}: RESULT MISMATCH in {mode} run {k + 1}: "
                    f"{run.result!r} != CPython's {reference!r}"
                )
    return res


def fmt_ms(seconds: float | None, spread: float | None) -> str:
    if seconds is None:
        return "-"
    text = f"{seconds * 1000:.1f}"
    if spread is not None:
        text += f" ±{spread * 50:.0f}%"
    return text


def aborts_total(stats: dict[str, Any]) -> int:
    aborts = stats.get("aborts", {})
    if isinstance(aborts, dict):
        return sum(int(v) for v in aborts.values())
    return int(aborts)


def print_table(results: list[BenchResult]) -> None:
    header = ["benchmark", "CPython ms/iter", "tracejit ms/iter", "speed-up", "JIT on",
              "traces", "native entries", "aborts"]
    rows = [header]
    for r in results:
        stats = r.last_stats()
        sp = r.speedup()
        rows.append([
            r.name,
            fmt_ms(r.median("cpython"), r.spread("cpython")),
            fmt_ms(r.median("tracejit"), r.spread("tracejit")),
            f"{sp:.2f}x" if sp is not None and not r.errors else "FAILED",
            ("yes" if stats.get("jit_enabled") else "NO") if stats else "-",
            str(stats.get("traces_compiled", "-")) if stats else "-",
            str(stats.get("native_entries", "-")) if stats else "-",
            str(aborts_total(stats)) if stats else "-",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                           strict=True)]
        print("  ".join(cells))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def geomean(values: list[float]) -> float | None:
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    p.add_argument("--only", help="comma-separated benchmark names")
    p.add_argument("--rounds", type=int, help="A/B rounds per benchmark (default 3, quick 2)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds one program run may take (default %(default)g)")
    args = p.parse_args(argv)

    names = BENCHMARKS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
                  file=sys.stderr)
            return 2
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2

    print(f"tracejit benchmarks: CPython {platform.python_version()} ({sys.executable}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {rounds} A/B rounds"
          f"{', quick sizes' if args.quick else ''}", flush=True)
    results = [run_benchmark(name, rounds, args.quick, args.timeout) for name in names]

    print()
    print_table(results)
    speedups = [s for r in results if not r.errors and (s := r.speedup()) is not None]
    gm = geomean(speedups)
    print()
    print("speed-up = CPython median / tracejit median of steady-state iterations "
          "(> 1: tracejit faster); ±: half the interquartile range.")
    if gm is not None:
        print(f"geometric mean speed-up over {len(speedups)} benchmark(s): {gm:.2f}x")

    if args.quick:
        print("quick sizes: iterations are a few ms, so the ratios are mostly noise "
              "(a smoke test, not a measurement).")
    not_enabled = [r.name for r in results
                   if (stats := r.last_stats()) is not None and not stats.get("jit_enabled")]
    if not_enabled:
        reasons = sorted({ln.removeprefix("tracejit: ") for r in results for run in r.tracejit
                          for ln in run.stderr.splitlines() if ln.startswith("tracejit:")})
        print()
        print(f"WARNING: the JIT was NOT enabled for {', '.join(not_enabled)}: those ratios "
              "compare CPython with itself (launcher overhead and noise only).")
        for reason in reasons:
            print(f"  tracejit said: {reason}")

    failures = [e for r in results for e in r.errors]
    if failures:
        print()
        print("FAILURES:", file=sys.stderr)
        for e in failures:
            print(f"  {e}", file=sys.stderr)

    if args.json:
        out = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "rounds": rounds,
            "quick": args.quick,
            "geomean_speedup": gm,
            "benchmarks": [
                {
                    "name": r.name,
                    "cpython_median_s": r.median("cpython"),
                    "tracejit_median_s": r.median("tracejit"),
                    "speedup": r.speedup(),
                    "tracejit_stats": r.last_stats(),
                    "errors": r.errors,
                }
                for r in results
            ],
        }
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=2)
                f.write("\n")
        except OSError as exc:
            print(f"could not write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
