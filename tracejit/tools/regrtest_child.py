"""Child side of ``tracejit.tools.regrtest``: run CPython's regrtest in this process
and record every test case's outcome.

    python -m tracejit.tools.regrtest_child [--jit PARAMS] [--stats-json PATH] \\
        RECORD_PATH [REGRTEST ARGS...]

CPython's own runner (``test.libregrtest``) does the work, exactly as
``python -m test`` would; the only change is that its result class is replaced by
a subclass that appends one JSON line per event to RECORD_PATH, flushed at once,
so that a crash or a hang still leaves the tests that completed and the one that
was running:

    {"ev": "start", "id": TEST_ID, "t": SECONDS}
    {"ev": "end", "id": TEST_ID, "t": SECONDS, "outcome": OUTCOME, "detail": TEXT}

OUTCOME is one of pass, fail, error, skip, xfail, xpass, and subfail (a test whose
own body passed but one of its ``subTest`` blocks failed or errored; each failing
subtest also gets an ``end`` line with its own id).  DETAIL is the start of the
traceback (or the skip reason); SECONDS is the time since the process started.

With ``--jit PARAMS`` (the ``--param`` syntax of ``python -m tracejit run``) the
JIT is enabled once regrtest's own modules are imported, just before regrtest
starts: everything regrtest then does -- parsing its arguments, finding and
importing the test module, running the tests, reporting -- runs under the JIT.
(Enabling it at the very start, as ``python -m tracejit run`` does, would also
run the module bodies of locale, argparse, unittest ... under it; a JIT bug there
would then hide every test result of the module.)  ``--stats-json`` writes
``tracejit.stats()`` plus ``jit_enabled`` at exit, as the launcher's option does.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import time
import unittest
from typing import IO, Any

DETAIL_CHARS = 4000
_T0 = time.perf_counter()


def _install(record: IO[str]) -> None:
    # Imported by name: the ``test`` package has no type stubs.
    testresult: Any = importlib.import_module("test.libregrtest.testresult")
    base: Any = testresult.RegressionTestResult

    class RecordingResult(base):  # type: ignore[misc]
        _tj_current: str | None = None
        _tj_done: bool = False

        def _tj_write(self, ev: str, test_id: str, outcome: str = "", detail: str = "") -> None:
            line: dict[str, object] = {"ev": ev, "id": test_id}
            line["t"] = round(time.perf_counter() - _T0, 6)
            if outcome:
                line["outcome"] = outcome
            if detail:
                line["detail"] = detail[:DETAIL_CHARS]
            record.write(json.dumps(line) + "\n")
            record.flush()

        def _tj_end(self, test: Any, outcome: str, err: Any = None, detail: str = "") -> None:
            if err is not None:
                try:
                    detail = self._exc_info_to_string(err, test)
                except Exception as exc:  # pragma: no cover - defensive
                    detail = f"<could not format the error: {exc!r}>"
            self._tj_write("end", _test_id(test), outcome, detail)
            self._tj_done = True

        def startTest(self, test: Any) -> None:
            self._tj_current = _test_id(test)
            self._tj_done = False
            self._tj_write("start", self._tj_current)
            super().startTest(test)

        def stopTest(self, test: Any) -> None:
            super().stopTest(test)
            if not self._tj_done:
                # Only subtests reported (unittest calls no add* for the test itself
                # when one of its subtests failed).
                self._tj_write("end", _test_id(test), "subfail")
            self._tj_current = None
            self._tj_done = True

        def addSuccess(self, test: Any) -> None:
            self._tj_end(test, "pass")
            super().addSuccess(test)

        def addError(self, test: Any, err: Any) -> None:
            if isinstance(test, unittest.TestCase) or self._tj_current is None:
                self._tj_end(test, "error", err)
            else:
                # setUpClass/setUpModule/tearDown* failures arrive as _ErrorHolder.
                self._tj_write("end", _test_id(test), "error", self._exc_info_to_string(err, test))
            super().addError(test, err)

        def addFailure(self, test: Any, err: Any) -> None:
            self._tj_end(test, "fail", err)
            super().addFailure(test, err)

        def addSkip(self, test: Any, reason: str) -> None:
            if isinstance(test, unittest.TestCase) and _test_id(test) == self._tj_current:
                self._tj_end(test, "skip", detail=str(reason))
            else:
                # Skipped classes/modules (or a skipped subtest): recorded, but they
                # do not end the running test.
                self._tj_write("end", _test_id(test), "skip", str(reason))
            super().addSkip(test, reason)

        def addExpectedFailure(self, test: Any, err: Any) -> None:
            self._tj_end(test, "xfail", err)
            super().addExpectedFailure(test, err)

        def addUnexpectedSuccess(self, test: Any) -> None:
            self._tj_end(test, "xpass")
            super().addUnexpectedSuccess(test)

        def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
            if err is not None:
                outcome = "fail" if issubclass(err[0], test.failureException) else "error"
                self._tj_write(
                    "end", _test_id(subtest), outcome, self._exc_info_to_string(err, subtest)
                )
            super().addSubTest(test, subtest, err)

    testresult.RegressionTestResult = RecordingResult


def _test_id(test: Any) -> str:
    try:
        return str(test.id())
    except Exception:
        return str(test)


USAGE = "usage: regrtest_child [--jit PARAMS] [--stats-json PATH] RECORD_PATH [REGRTEST ARGS...]"


def _write_stats(path: str, jit_enabled: bool) -> None:
    import tracejit

    data = dict(tracejit.stats())
    data["jit_enabled"] = jit_enabled
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    jit: str | None = None
    stats_path: str | None = None
    while args and args[0] in ("--jit", "--stats-json"):
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            raise SystemExit(2)
        if args[0] == "--jit":
            jit = args[1]
        else:
            stats_path = os.path.abspath(args[1])
        args = args[2:]
    if not args:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    record_path, rest = args[0], args[1:]
    record = open(record_path, "a", encoding="utf-8")  # kept open until exit
    _install(record)
    regrtest: Any = importlib.import_module("test.libregrtest.main")

    import tracejit
    from tracejit.params import parse_param_string

    jit_enabled = False
    if jit is not None:
        # After regrtest's own imports, before anything else: argument parsing,
        # test discovery, importing the test module and running its tests all
        # happen with the JIT on.
        jit_enabled = tracejit.enable(**parse_param_string(jit))
        if not jit_enabled:
            print("regrtest_child: the JIT could not be enabled", file=sys.stderr)
    if stats_path is not None:
        atexit.register(_write_stats, stats_path, jit_enabled)
    sys.argv = [sys.argv[0], *rest]
    regrtest.main()


if __name__ == "__main__":
    main()
