"""Run CPython's own regression tests plain and under tracejit, and compare.

    python -m tracejit.tools.regrtest [--full] [--jobs N] [MODULES...]

Every test module runs in two fresh subprocesses, one after the other: once on
the plain interpreter and once under tracejit with the thresholds forced low
(``threshold``, ``function_threshold``, ``function_min_size`` and
``trace_eagerness`` set to 1, those of them that exist), so that almost every
loop and function the tests execute is recorded and compiled, and every side
exit that fails grows a bridge.  Both runs use
CPython's own runner, ``test.libregrtest`` (what ``python -m test`` runs), through
``tracejit.tools.regrtest_child``, which turns the JIT on (in the JIT run) just
before regrtest starts and records each test case's outcome (pass, fail, error,
skip, xfail, xpass, subfail) as it happens.

A module is *same* when both runs end normally, regrtest's verdict (``Result:``
line) is the same, and every test case has the same outcome.  Anything else -- an
outcome that differs, a crash (negative return code: a signal such as SIGSEGV), a
hang (the per-run timeout; the process gets SIGABRT first so faulthandler dumps
its stacks) or a JIT run where the JIT did not come on -- is reported with
details, and the exit code is 1.  The report also gives per module the test
counts, the time of each run and their ratio, and the JIT's counters
(``tracejit.stats()``: traces compiled, native entries, guard failures, aborts), so
one can see that the JIT really ran code.

Without MODULES the default set (``DEFAULT_MODULES``, about 1.5 minutes on two
cores) runs; ``--full`` runs every module ``python -m test --list-tests`` lists.
See docs/regrtest.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracejit.params import Params

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# The default set (123 modules): the core language -- numbers, strings,
# containers, comparisons and operators, control flow, exceptions (groups,
# except*, tracebacks), generators, coroutines and async generators,
# comprehensions, scopes, classes, metaclasses, descriptors, properties, super,
# decorators, pattern matching, unpacking, calls, f-strings, typing syntax --
# the builtins, and the pure-Python library modules most of it leans on
# (functools, itertools, operator, collections, contextlib, dataclasses, enum,
# typing, re, json, difflib, pprint, textwrap, unittest itself, ...).  Chosen by
# measuring candidates plain and under the JIT (docs/regrtest.md): about 200 s of
# runs, under 2 minutes on two cores.  Longest first, so that two workers end
# together.  Everything else, including modules slow under the JIT (test_decimal,
# test_weakref, test_threading, ...), is in --full.
DEFAULT_MODULES: tuple[str, ...] = (
    "test_unittest",
    "test_long",
    "test_set",
    "test_math",
    "test_json",
    "test_itertools",
    "test_exceptions",
    "test_traceback",
    "test_enum",
    "test_tuple",
    "test_fstring",
    "test_str",
    "test_asyncgen",
    "test_collections",
    "test_ast",
    "test_descr",
    "test_typing",
    "test_listcomps",
    "test_unparse",
    "test_re",
    "test_userstring",
    "test_int",
    "test_dict",
    "test_ordered_dict",
    "test_struct",
    "test_coroutines",
    "test_functools",
    "test_pow",
    "test_difflib",
    "test_heapq",
    "test_dataclasses",
    "test_finalization",
    "test_builtin",
    "test_isinstance",
    "test_frame",
    "test_context",
    "test_types",
    "test_memoryview",
    "test_call",
    "test_generators",
    "test_type_params",
    "test_genericalias",
    "test_range",
    "test_eof",
    "test_syntax",
    "test_list",
    "test_weakset",
    "test_sort",
    "test_super",
    "test_fractions",
    "test_complex",
    "test_named_expressions",
    "test_float",
    "test_graphlib",
    "test_class",
    "test_bool",
    "test_csv",
    "test_slice",
    "test_pprint",
    "test_userlist",
    "test_exception_group",
    "test_copy",
    "test_extcall",
    "test_enumerate",
    "test_dynamicclassattribute",
    "test_exception_hierarchy",
    "test_userdict",
    "test_structseq",
    "test_type_aliases",
    "test_reprlib",
    "test_string_literals",
    "test_grammar",
    "test_patma",
    "test_operator",
    "test_contextlib",
    "test_property",
    "test_binop",
    "test_textwrap",
    "test_iter",
    "test_copyreg",
    "test_format",
    "test_bisect",
    "test_cmath",
    "test_shlex",
    "test_keyword",
    "test_opcodes",
    "test_funcattrs",
    "test_index",
    "test_unpack_ex",
    "test_genexps",
    "test_dictcomps",
    "test_compare",
    "test_abc",
    "test_typechecks",
    "test_richcmp",
    "test_exception_variations",
    "test_yield_from",
    "test_dictviews",
    "test_string",
    "test_positional_only_arg",
    "test_with",
    "test_except_star",
    "test_unpack",
    "test_setcomps",
    "test_int_literal",
    "test_metaclass",
    "test_genericclass",
    "test_print",
    "test_decorators",
    "test_scope",
    "test_global",
    "test_subclassinit",
    "test_raise",
    "test_defaultdict",
    "test_iterlen",
    "test_type_annotations",
    "test_baseexception",
    "test_contains",
    "test_generator_stop",
    "test_keywordonlyarg",
    "test_pep646_syntax",
    "test_unary",
    "test_augassign",
)

# Test cases whose outcome differs under the JIT for a reason that is not a
# semantic bug: keys are test ids or fnmatch patterns of test ids.  They are
# reported as "known" and do not fail the check.  Keep this list short and
# explained (docs/regrtest.md); none of them is in the default set except
# test_descr's test_slots.
_MONITORING = (
    "tracejit is itself a sys.monitoring tool (OPTIMIZER_ID, PY_START and JUMP "
    "events); the test requires that no tool has events set"
)
KNOWN_DIFFERENCES: dict[str, str] = {
    "test.test_descr.ClassPropertiesAndMethods.test_slots": (
        "compares len(gc.get_objects()) around a 10-iteration loop; at threshold=1 "
        "the JIT compiles that loop in between and keeps its own (gc-tracked) objects"
    ),
    "test.test_monitoring.*": _MONITORING,
    "test.test_dis.*.test_*_specialize": (
        "adaptive disassembly shows the instrumented code (INSTRUMENTED_RESUME) and "
        "instructions the interpreter never specialized because native code ran them"
    ),
    "test.test_dis.*.test_loop_quicken": (
        "adaptive disassembly shows INSTRUMENTED_JUMP_BACKWARD / unspecialized "
        "instructions: the loop ran as native code"
    ),
    "test.test_opcache.TestRacesDoNotCrash.*": (
        "asserts that the interpreter specialized an instruction after warm-up; the "
        "loop ran as native code, so it did not"
    ),
}


def known_reason(test_id: str) -> str | None:
    """Why ``test_id`` may differ under the JIT (KNOWN_DIFFERENCES), or None."""
    if test_id in KNOWN_DIFFERENCES:
        return KNOWN_DIFFERENCES[test_id]
    for pattern, reason in KNOWN_DIFFERENCES.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


# A module this much slower under the JIT (and at least SLOW_SECONDS long) gets
# its longest test cases listed in the report.
SLOW_RATIO = 6.0
SLOW_SECONDS = 3.0

OUTCOMES = ("pass", "fail", "error", "subfail", "skip", "xfail", "xpass")
FAILING = ("fail", "error", "subfail", "xpass")

# Seconds to wait after SIGABRT (faulthandler's dump) before SIGKILL.
ABORT_GRACE_S = 10.0


# Parameters forced to 1 in the JIT runs (those that exist in this version of
# tracejit): loops and functions are compiled the first time they are seen,
# functions of any size get entry traces, and the first guard failure of an
# exit grows a bridge -- as much of the program as possible runs as native code.
FORCED_PARAMS = ("threshold", "function_threshold", "function_min_size", "trace_eagerness")


def jit_params() -> str:
    """The ``--param`` value for the JIT runs: FORCED_PARAMS that exist, set to 1."""
    names = {f.name for f in dataclasses.fields(Params)}
    forced = [f"{name}=1" for name in FORCED_PARAMS if name in names]
    # Everything is compiled, however long that takes: no JIT time budget.
    return ",".join([*forced, "jit_time_percent=100"])


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    """One subprocess: one module in one mode."""

    mode: str  # "plain" or "jit"
    module: str
    returncode: int | None = None
    status: str = "ok"  # ok | failed | crash | hang | error
    wall_s: float = 0.0
    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    running: str | None = None  # a test that started and never ended
    result_line: str = ""  # regrtest's "Result: ..." verdict
    stats: dict[str, Any] | None = None
    stdout_path: str = ""
    stderr_path: str = ""

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for outcome in self.outcomes.values():
            out[outcome] = out.get(outcome, 0) + 1
        return out

    def tail(self, lines: int = 25) -> str:
        """The end of stderr (or stdout when stderr is empty): tracebacks, faulthandler."""
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                return "\n".join(text.rstrip().splitlines()[-lines:])
        return ""


def _command(mode: str, record: Path, stats: Path, module: str, params: str) -> list[str]:
    cmd = [sys.executable, "-X", "faulthandler", "-m", "tracejit.tools.regrtest_child"]
    if mode == "jit":
        cmd += ["--jit", params]
    cmd += ["--stats-json", str(stats), str(record)]
    # regrtest: one module, fixed random seed, no re-exec with other options.
    cmd += ["--randseed", "20240501", "--dont-add-python-opts", module]
    return cmd


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEJIT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONFAULTHANDLER"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


@dataclass
class Record:
    """What a child recorded (see regrtest_child)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    running: str | None = None  # a test that started and never ended


def parse_record(path: Path) -> Record:
    """Outcomes, details and durations by test id, and the test left running."""
    rec = Record()
    starts: dict[str, float] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rec
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        test_id = str(event.get("id", "?"))
        t = event.get("t")
        if event.get("ev") == "start":
            rec.running = test_id
            if isinstance(t, (int, float)):
                starts[test_id] = float(t)
        elif event.get("ev") == "end":
            outcome = str(event.get("outcome", "?"))
            previous = rec.outcomes.get(test_id)
            # A test reported twice (e.g. an error in tearDown after a failure)
            # keeps its worst outcome.
            if previous is None or (previous not in FAILING and outcome in FAILING):
                rec.outcomes[test_id] = outcome
                if event.get("detail"):
                    rec.details[test_id] = str(event["detail"])
            if test_id in starts and isinstance(t, (int, float)):
                rec.durations[test_id] = float(t) - starts.pop(test_id)
            if test_id == rec.running:
                rec.running = None
    return rec


def _result_line(stdout_path: Path) -> str:
    try:
        text = stdout_path.read_text(errors="replace")
    except OSError:
        return ""
    for line in reversed(text.splitlines()):
        if line.startswith("Result: "):
            return line[len("Result: ") :].strip()
    return ""


def run_module(module: str, mode: str, workdir: Path, timeout: float, params: str) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / f"{module}.{mode}"
    record = base.with_name(base.name + ".record.jsonl")
    stats_path = base.with_name(base.name + ".stats.json")
    stdout_path = base.with_name(base.name + ".stdout")
    stderr_path = base.with_name(base.name + ".stderr")
    for stale in (record, stats_path):
        stale.unlink(missing_ok=True)
    run = Run(mode, module, stdout_path=str(stdout_path), stderr_path=str(stderr_path))
    cmd = _command(mode, record, stats_path, module, params)
    start = time.perf_counter()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: we can stop all it started
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.status = "hang"
            _stop(proc)
    run.wall_s = time.perf_counter() - start
    run.returncode = proc.returncode
    rec = parse_record(record)
    run.outcomes, run.details, run.durations, run.running = (
        rec.outcomes,
        rec.details,
        rec.durations,
        rec.running,
    )
    run.result_line = _result_line(stdout_path)
    if stats_path.exists():
        try:
            loaded = json.loads(stats_path.read_text())
            if isinstance(loaded, dict):
                run.stats = loaded
        except ValueError:
            pass
    if run.status != "hang":
        if proc.returncode < 0:
            run.status = "crash"
        elif proc.returncode != 0:
            run.status = "failed" if run.result_line else "error"
    return run


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """A run over its time: SIGABRT (faulthandler prints every thread's stack),
    then SIGKILL to the process group it leads (only processes it started)."""
    try:
        os.kill(proc.pid, signal.SIGABRT)
        proc.wait(timeout=ABORT_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# --------------------------------------------------------------------------- comparison


@dataclass
class ModuleReport:
    module: str
    plain: Run
    jit: Run
    # same | known (only differences listed in KNOWN_DIFFERENCES) | different |
    # crash | hang | error (JIT run died without a regrtest verdict, e.g. an
    # uncaught exception) | plain-crash | plain-hang | plain-error
    verdict: str = "same"
    problems: list[str] = field(default_factory=list)
    # (test id, plain outcome, JIT outcome); "-" when the test did not run.
    differences: list[tuple[str, str, str]] = field(default_factory=list)
    # Differences listed in KNOWN_DIFFERENCES (not failures).
    known: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict in ("same", "known")

    @property
    def ratio(self) -> float:
        return self.jit.wall_s / self.plain.wall_s if self.plain.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        def run_dict(run: Run) -> dict[str, Any]:
            return {
                "status": run.status,
                "returncode": run.returncode,
                "wall_s": round(run.wall_s, 3),
                "result": run.result_line,
                "counts": run.counts(),
                "running": run.running,
                "stats": run.stats,
            }

        return {
            "module": self.module,
            "verdict": self.verdict,
            "problems": self.problems,
            "differences": [
                {"test": t, "plain": p, "jit": j, "jit_detail": self.jit.details.get(t, "")}
                for t, p, j in self.differences
            ],
            "known": [
                {"test": t, "plain": p, "jit": j, "reason": known_reason(t) or ""}
                for t, p, j in self.known
            ],
            "slowest_jit_tests": [
                {"test": t, "jit_s": round(j, 3), "plain_s": round(p, 3) if p >= 0 else None}
                for t, j, p in slowest_tests(self.plain, self.jit)
            ],
            "ratio": round(self.ratio, 3),
            "plain": run_dict(self.plain),
            "jit": run_dict(self.jit),
        }


def compare(plain: Run, jit: Run) -> ModuleReport:
    report = ModuleReport(plain.module, plain, jit)
    for run in (plain, jit):
        who = "plain run" if run.mode == "plain" else "JIT run"
        if run.status == "crash":
            sig = _signal_name(run.returncode)
            where = f" in {run.running}" if run.running else ""
            report.problems.append(f"{who} crashed ({sig}){where}")
        elif run.status == "hang":
            where = f" in {run.running}" if run.running else ""
            report.problems.append(f"{who} timed out{where}")
        elif run.status == "error":
            report.problems.append(f"{who} ended with code {run.returncode} and no verdict")
    if jit.stats is not None and not jit.stats.get("jit_enabled", True):
        report.problems.append("the JIT was not enabled in the JIT run")
    for test_id in sorted(set(plain.outcomes) | set(jit.outcomes)):
        p = plain.outcomes.get(test_id, "-")
        j = jit.outcomes.get(test_id, "-")
        if p != j:
            if j != "-" and known_reason(test_id) is not None:
                report.known.append((test_id, p, j))
            else:
                report.differences.append((test_id, p, j))
    if plain.status not in ("crash", "hang") and jit.status not in ("crash", "hang"):
        # A known difference can turn regrtest's SUCCESS into FAILURE; any other
        # change of verdict (ENV CHANGED, ...) is a difference of its own.
        explained = (
            report.known
            and not report.differences
            and (plain.result_line, jit.result_line) == ("SUCCESS", "FAILURE")
        )
        if plain.result_line != jit.result_line and not explained:
            report.problems.append(
                f"regrtest verdict differs: plain {plain.result_line or '-'!r}, "
                f"JIT {jit.result_line or '-'!r}"
            )
    if plain.status in ("crash", "hang"):
        report.verdict = f"plain-{plain.status}"
    elif jit.status in ("crash", "hang", "error"):
        report.verdict = jit.status
    elif plain.status == "error":
        report.verdict = "plain-error"
    elif report.problems or report.differences:
        report.verdict = "different"
    elif report.known:
        report.verdict = "known"
    return report


def slowest_tests(plain: Run, jit: Run, n: int = 3) -> list[tuple[str, float, float]]:
    """The n test cases that took longest under the JIT: (id, JIT s, plain s or -1)."""
    top = sorted(jit.durations.items(), key=lambda item: -item[1])[:n]
    return [(t, d, plain.durations.get(t, -1.0)) for t, d in top]


def _signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return f"exit code {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# --------------------------------------------------------------------------- driver


def full_module_list() -> list[str]:
    """Every test module regrtest knows (packages like test_asyncio split up)."""
    proc = subprocess.run(
        [sys.executable, "-m", "test", "--list-tests"],
        capture_output=True,
        text=True,
        check=True,
        env=_environment(),
        stdin=subprocess.DEVNULL,
    )
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def run_all(
    modules: list[str],
    *,
    jobs: int,
    timeout: float,
    workdir: Path,
    params: str,
    budget: float | None = None,
    progress: bool = True,
) -> list[ModuleReport]:
    """Run every module plain then under the JIT, ``jobs`` modules at a time.  With
    ``budget`` (seconds), modules not started by then are left out (not reported)."""
    lock = threading.Lock()
    done: list[int] = [0]
    deadline = None if budget is None else time.monotonic() + budget

    def one(module: str) -> ModuleReport | None:
        if deadline is not None and time.monotonic() > deadline:
            return None
        # Plain first, then the JIT, in the same worker: both runs see the same
        # load from the other workers, which keeps the time ratio meaningful.
        plain = run_module(module, "plain", workdir / module, timeout, params)
        jit = run_module(module, "jit", workdir / module, timeout, params)
        report = compare(plain, jit)
        if progress:
            with lock:
                done[0] += 1
                print(
                    f"[{done[0]}/{len(modules)}] {module}: {report.verdict} "
                    f"({plain.wall_s:.1f}s plain, {jit.wall_s:.1f}s JIT)",
                    file=sys.stderr,
                    flush=True,
                )
        return report

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return [r for r in pool.map(one, modules) if r is not None]


def _stat(run: Run, key: str) -> str:
    if run.stats is None:
        return "-"
    value = run.stats.get(key)
    if key == "aborts" and isinstance(value, dict):
        return str(sum(int(v) for v in value.values()))
    return "-" if value is None else str(value)


def format_report(reports: list[ModuleReport], wall_s: float) -> str:
    lines: list[str] = []
    header = (
        f"{'module':<34} {'verdict':<11} {'tests':>6} {'pass':>6} {'fail':>5} {'skip':>5} "
        f"{'plain s':>8} {'JIT s':>8} {'ratio':>6} {'traces':>7} {'entries':>9} {'aborts':>7}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for r in reports:
        c = r.plain.counts()
        failing = sum(c[o] for o in FAILING)
        lines.append(
            f"{r.module:<34} {r.verdict:<11} {len(r.plain.outcomes):>6} {c['pass']:>6} "
            f"{failing:>5} {c['skip']:>5} {r.plain.wall_s:>8.2f} {r.jit.wall_s:>8.2f} "
            f"{r.ratio:>6.2f} {_stat(r.jit, 'traces_compiled'):>7} "
            f"{_stat(r.jit, 'native_entries'):>9} {_stat(r.jit, 'aborts'):>7}"
        )
    lines.append("")
    bad = [r for r in reports if not r.ok]
    known = [r for r in reports if r.verdict == "known"]
    same = len(reports) - len(bad) - len(known)
    plain_total = sum(r.plain.wall_s for r in reports)
    jit_total = sum(r.jit.wall_s for r in reports)
    ratios = sorted(r.ratio for r in reports if r.plain.wall_s > 0)
    median = ratios[len(ratios) // 2] if ratios else 0.0
    traces = sum(int(r.jit.stats.get("traces_compiled", 0)) for r in reports if r.jit.stats)
    entries = sum(int(r.jit.stats.get("native_entries", 0)) for r in reports if r.jit.stats)
    tests = sum(len(r.plain.outcomes) for r in reports)
    lines.append(
        f"{same}/{len(reports)} modules same, {len(known)} with known differences only, "
        f"{len(bad)} different; {tests} test cases; "
        f"JIT compiled {traces} traces, entered native code {entries} times"
    )
    lines.append(
        f"time: plain {plain_total:.1f}s, JIT {jit_total:.1f}s (total ratio "
        f"{jit_total / plain_total if plain_total else 0:.2f}, median per-module ratio "
        f"{median:.2f}); wall {wall_s:.1f}s"
    )
    slow = [r for r in reports if r.ratio >= SLOW_RATIO and r.jit.wall_s >= SLOW_SECONDS]
    if slow:
        lines.append("")
        lines.append(f"slow under the JIT (ratio >= {SLOW_RATIO:g}): longest test cases")
        for r in slow:
            lines.append(f"  {r.module} ({r.ratio:.1f}x)")
            for test_id, jit_s, plain_s in slowest_tests(r.plain, r.jit):
                shown_plain = f"{plain_s:.2f}s" if plain_s >= 0 else "-"
                lines.append(f"    {jit_s:7.2f}s JIT, {shown_plain:>7} plain  {test_id}")
    if known:
        lines.append("")
        lines.append("known differences (KNOWN_DIFFERENCES, not failures):")
        for r in known:
            for test_id, p, j in r.known:
                lines.append(f"  {test_id}: plain {p}, JIT {j} -- {known_reason(test_id)}")
    for r in bad:
        lines.append("")
        lines.append(f"== {r.module}: {r.verdict}")
        for problem in r.problems:
            lines.append(f"  {problem}")
        not_run = [t for t, p, j in r.differences if j == "-"]
        shown = [d for d in r.differences if d[2] != "-"]
        for test_id, p, j in shown[:20]:
            lines.append(f"  {test_id}: plain {p}, JIT {j}")
            detail = r.jit.details.get(test_id, "")
            if detail:
                for dl in detail.rstrip().splitlines()[-6:]:
                    lines.append(f"      {dl}")
        if len(shown) > 20:
            lines.append(f"  ... and {len(shown) - 20} more differing tests")
        if not_run:
            lines.append(f"  {len(not_run)} tests that ran plain did not run under the JIT")
        if r.jit.status in ("crash", "hang", "error") or (
            r.problems and not r.differences and r.jit.status != "ok"
        ):
            tail = r.jit.tail()
            if tail:
                lines.append("  end of the JIT run's output:")
                lines.extend(f"    {tl}" for tl in tail.splitlines())
        if r.plain.status in ("crash", "hang", "error"):
            tail = r.plain.tail()
            if tail:
                lines.append("  end of the plain run's output:")
                lines.extend(f"    {tl}" for tl in tail.splitlines())
        lines.append(f"  output: {Path(r.jit.stdout_path).parent}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracejit.tools.regrtest",
        description="Run CPython's regression tests plain and under tracejit "
        "(thresholds forced to 1) and compare the outcome of every test case.",
    )
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="test modules (test_int ...)")
    parser.add_argument("--full", action="store_true", help="every module of the test suite")
    parser.add_argument(
        "--jobs", "-j", type=int, default=min(2, os.cpu_count() or 1), help="modules in parallel"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per run before it counts as a hang"
    )
    parser.add_argument(
        "--param",
        default=None,
        help=f"JIT parameters for the JIT runs (default: {jit_params()})",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="start no new module after SECONDS (a partial run of a long list)",
    )
    parser.add_argument("--exclude", action="append", default=[], help="skip MODULE (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument(
        "--keep", metavar="DIR", help="keep every run's output in DIR (default: only on problems)"
    )
    parser.add_argument("--list", action="store_true", help="print the modules and exit")
    ns = parser.parse_args(argv)

    if ns.modules:
        modules = list(ns.modules)
    elif ns.full:
        modules = full_module_list()
    else:
        modules = list(DEFAULT_MODULES)
    modules = [m.removesuffix(".py") for m in modules if m not in set(ns.exclude)]
    if ns.list:
        print("\n".join(modules))
        return 0
    params = jit_params() if ns.param is None else ns.param

    workdir = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="tracejit-regrtest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"tracejit regrtest: {len(modules)} modules, {ns.jobs} jobs, JIT params "
        f"{params or '(defaults)'}, timeout {ns.timeout:.0f}s per run",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    reports = run_all(
        modules,
        jobs=ns.jobs,
        timeout=ns.timeout,
        workdir=workdir,
        params=params,
        budget=ns.budget,
    )
    wall = time.perf_counter() - start
    print(format_report(reports, wall))
    if len(reports) < len(modules):
        ran = {r.module for r in reports}
        print(
            f"budget of {ns.budget:.0f}s used up: {len(modules) - len(reports)} of "
            f"{len(modules)} modules not run (first: "
            f"{next(m for m in modules if m not in ran)})"
        )
    ok = all(r.ok for r in reports)
    if ns.json:
        Path(ns.json).write_text(
            json.dumps(
                {
                    "ok": ok,
                    "params": params,
                    "jobs": ns.jobs,
                    "wall_s": round(wall, 3),
                    "not_run": [m for m in modules if m not in {r.module for r in reports}],
                    "python": sys.version,
                    "modules": [r.as_dict() for r in reports],
                },
                indent=2,
            )
        )
    if ok and not ns.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"\noutputs kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
