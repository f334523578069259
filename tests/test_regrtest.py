"""CPython's own regression tests (``python -m test``), plain and under tracejit
with the thresholds forced to 1, through ``tracejit.tools.regrtest``.

``test_default_set_same_under_jit`` runs the tool's default module set (about two
minutes on two cores, 123 modules) and fails on any difference, crash or hang; it is
marked ``regrtest`` so it can be left out: ``pytest -m 'not regrtest'``.  The
other tests check the tool's own parsing and comparison and take a second.
See docs/regrtest.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tracejit.tools import regrtest
from tracejit.tools.regrtest import Run, compare, parse_record


def _record(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _run(mode: str, outcomes: dict[str, str], **kw: object) -> Run:
    run = Run(mode, "test_fake", outcomes=dict(outcomes), result_line="SUCCESS", wall_s=1.0)
    for name, value in kw.items():
        setattr(run, name, value)
    return run


def test_parse_record(tmp_path: Path) -> None:
    path = _record(
        tmp_path / "r.jsonl",
        [
            {"ev": "start", "id": "a", "t": 1.0},
            {"ev": "end", "id": "a", "t": 1.5, "outcome": "pass"},
            {"ev": "start", "id": "b", "t": 2.0},
            {"ev": "end", "id": "b (i=1)", "outcome": "fail", "detail": "AssertionError"},
            {"ev": "end", "id": "b", "t": 4.0, "outcome": "subfail"},
            {"ev": "start", "id": "c", "t": 4.0},
            {"ev": "end", "id": "c", "t": 5.0, "outcome": "fail", "detail": "first"},
            {"ev": "end", "id": "c", "outcome": "pass"},  # e.g. a later report: worst kept
            {"ev": "start", "id": "d", "t": 5.0},
        ],
    )
    with path.open("a") as f:
        f.write('{"ev": "end", "id": "d", "outc')  # cut short by a crash
    rec = parse_record(path)
    assert rec.outcomes == {"a": "pass", "b (i=1)": "fail", "b": "subfail", "c": "fail"}
    assert rec.details == {"b (i=1)": "AssertionError", "c": "first"}
    assert rec.running == "d"
    assert rec.durations == {"a": 0.5, "b": 2.0, "c": 1.0}


def test_compare_same_and_different() -> None:
    plain = _run("plain", {"a": "pass", "b": "skip", "c": "fail"})
    assert compare(plain, _run("jit", {"a": "pass", "b": "skip", "c": "fail"})).verdict == "same"

    report = compare(plain, _run("jit", {"a": "error", "b": "skip", "c": "fail"}))
    assert report.verdict == "different"
    assert report.differences == [("a", "pass", "error")]

    report = compare(plain, _run("jit", {"a": "pass", "b": "skip"}))
    assert report.differences == [("c", "fail", "-")]

    report = compare(plain, _run("jit", dict(plain.outcomes), result_line="ENV CHANGED"))
    assert report.verdict == "different" and "verdict differs" in report.problems[0]


def test_compare_known_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(regrtest.KNOWN_DIFFERENCES, "k", "why")
    plain = _run("plain", {"a": "pass", "k": "pass"})
    jit = _run("jit", {"a": "pass", "k": "fail"}, result_line="FAILURE")
    report = compare(plain, jit)
    assert report.verdict == "known" and report.ok
    assert report.known == [("k", "pass", "fail")] and not report.problems
    # Another difference next to it still fails the module.
    jit.outcomes["a"] = "error"
    report = compare(plain, jit)
    assert report.verdict == "different" and not report.ok
    # A known test that did not run at all (crash) is not excused.
    report = compare(plain, _run("jit", {"a": "pass"}))
    assert report.differences == [("k", "pass", "-")]


def test_known_reason_patterns() -> None:
    assert regrtest.known_reason("test.test_monitoring.LineMonitoringTest.test_linear")
    assert regrtest.known_reason("test.test_dis.DisTests.test_binary_specialize")
    assert regrtest.known_reason("test.test_dis.DisTests.test_dis") is None
    assert regrtest.known_reason("test.test_int.IntTestCases.test_basic") is None


def test_compare_crash_hang_and_jit_off() -> None:
    plain = _run("plain", {"a": "pass", "b": "pass"})
    crash = _run("jit", {"a": "pass"}, status="crash", returncode=-11, running="b")
    report = compare(plain, crash)
    assert report.verdict == "crash"
    assert report.problems == ["JIT run crashed (SIGSEGV) in b"]

    hang = _run("jit", {"a": "pass"}, status="hang", returncode=-6, running="b")
    assert compare(plain, hang).verdict == "hang"

    assert compare(crash, plain).verdict == "plain-crash"

    off = _run("jit", dict(plain.outcomes), stats={"jit_enabled": False})
    report = compare(plain, off)
    assert report.verdict == "different"
    assert report.problems == ["the JIT was not enabled in the JIT run"]


def test_jit_params_force_thresholds() -> None:
    params = regrtest.jit_params()
    assert "threshold=1" in params.split(",")
    assert "jit_time_percent=100" in params.split(",")  # everything compiles


def test_one_module_plain(tmp_path: Path) -> None:
    """The machinery end to end on one small module, plain only (independent of
    the JIT's state): every test case is recorded, regrtest's verdict is read."""
    run = regrtest.run_module("test_bool", "plain", tmp_path, 120, regrtest.jit_params())
    assert run.status == "ok", run.tail()
    assert run.result_line == "SUCCESS"
    assert len(run.outcomes) > 20
    assert set(run.outcomes.values()) <= {"pass", "skip"}
    assert run.running is None
    assert run.stats is not None and run.stats["jit_enabled"] is False


@pytest.mark.regrtest
def test_default_set_same_under_jit(tmp_path: Path) -> None:
    """The default set: every test case has the same outcome plain and under the
    JIT (threshold=1), no crash, no hang, and the JIT compiled and ran traces."""
    reports = regrtest.run_all(
        list(regrtest.DEFAULT_MODULES),
        jobs=min(2, os.cpu_count() or 1),
        timeout=150,
        workdir=tmp_path,
        params=regrtest.jit_params(),
        progress=False,
    )
    text = regrtest.format_report(reports, 0.0)
    assert len(reports) == len(regrtest.DEFAULT_MODULES)
    bad = [r.module for r in reports if not r.ok]
    assert not bad, f"differences plain vs JIT in {bad}:\n{text}"
    traces = sum(int((r.jit.stats or {}).get("traces_compiled", 0)) for r in reports)
    entries = sum(int((r.jit.stats or {}).get("native_entries", 0)) for r in reports)
    assert traces > 0 and entries > 0, f"the JIT compiled nothing:\n{text}"
