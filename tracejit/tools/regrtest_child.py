"""Child side of ``tracejit.tools.regrtest``: run CPython's regrtest in this process
and record every test case's outcome.

    python -m tracejit run [--no-jit | --param ...] -m tracejit.tools.regrtest_child \\
        RECORD_PATH [REGRTEST ARGS...]

CPython's own runner (``test.libregrtest``) does the work, exactly as
``python -m test`` would; the only change is that its result class is replaced by
a subclass that appends one JSON line per event to RECORD_PATH, flushed at once,
so that a crash or a hang still leaves the tests that completed and the one that
was running:

    {"ev": "start", "id": TEST_ID}
    {"ev": "end", "id": TEST_ID, "outcome": OUTCOME, "detail": TEXT}

OUTCOME is one of pass, fail, error, skip, xfail, xpass, and subfail (a test whose
own body passed but one of its ``subTest`` blocks failed or errored; each failing
subtest also gets an ``end`` line with its own id).  DETAIL is the start of the
traceback (or the skip reason).
"""

from __future__ import annotations

import importlib
import json
import sys
import unittest
from typing import IO, Any

DETAIL_CHARS = 4000


def _install(record: IO[str]) -> None:
    # Imported by name: the ``test`` package has no type stubs.
    testresult: Any = importlib.import_module("test.libregrtest.testresult")
    base: Any = testresult.RegressionTestResult

    class RecordingResult(base):  # type: ignore[misc]
        _tj_current: str | None = None
        _tj_done: bool = False

        def _tj_write(self, ev: str, test_id: str, outcome: str = "", detail: str = "") -> None:
            line: dict[str, str] = {"ev": ev, "id": test_id}
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


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: regrtest_child RECORD_PATH [REGRTEST ARGS...]", file=sys.stderr)
        raise SystemExit(2)
    record_path, rest = args[0], args[1:]
    record = open(record_path, "a", encoding="utf-8")  # kept open until exit
    _install(record)
    regrtest: Any = importlib.import_module("test.libregrtest.main")
    sys.argv = [sys.argv[0], *rest]
    regrtest.main()


if __name__ == "__main__":
    main()
