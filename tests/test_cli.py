"""``python -m tracejit run``: the program must behave as under ``python SCRIPT``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tracejit.cli import parse_run_args, resolve_params

RunTracejit = Callable[..., "subprocess.CompletedProcess[str]"]

REQUIRED_STATS_KEYS = {
    "traces_started",
    "traces_compiled",
    "bridges_compiled",
    "aborts",
    "guard_failures",
    "native_entries",
    "time_in_jit_s",
}

SHOW = """\
import json, os, sys
print(json.dumps({
    "argv": sys.argv,
    "name": __name__,
    "path0": sys.path[0],
    "main_is_me": sys.modules["__main__"].__dict__.get("MARK") == 42,
}))
"""

HOT_LOOP = """\
import sys

def work(n):
    total = 0
    for i in range(n):
        total += i * 3 % 7
    return total

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    print(work(n))
    code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.exit(code)
"""


def expected_hot_loop(n: int) -> int:
    return sum(i * 3 % 7 for i in range(n))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def show_script(tmp_path: Path) -> Path:
    return write(tmp_path / "prog" / "show.py", "MARK = 42\n" + SHOW)


def read_json_line(stdout: str) -> dict[str, object]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in stdout: {stdout!r}"
    data = json.loads(lines[-1])
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- argv, __main__


@pytest.mark.parametrize("jit", [False, True], ids=["no-jit", "jit"])
def test_script_sees_argv_name_and_path(run_tracejit: RunTracejit, tmp_path: Path,
                                        jit: bool) -> None:
    script = show_script(tmp_path)
    opts = [] if jit else ["--no-jit"]
    r = run_tracejit("run", *opts, "prog/show.py", "a", "--stats", "-m", "x", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = read_json_line(r.stdout)
    # Options after SCRIPT belong to the program, argv[0] is the path as given.
    assert data["argv"] == ["prog/show.py", "a", "--stats", "-m", "x"]
    assert data["name"] == "__main__"
    assert data["path0"] == str(script.parent.resolve())
    assert data["main_is_me"] is True
    # The program's own --stats is not ours: no stats on stderr.
    assert "tracejit stats" not in r.stderr


def test_same_as_plain_python(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    script = show_script(tmp_path)
    plain = subprocess.run([sys.executable, "prog/show.py", "x", "y"], cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    r = run_tracejit("run", "--no-jit", "prog/show.py", "x", "y", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_json_line(r.stdout) == read_json_line(plain.stdout)
    assert script.exists()


def test_double_dash_ends_options(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "--weird.py", SHOW)
    r = run_tracejit("run", "--no-jit", "--", "--weird.py", "--no-jit", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_json_line(r.stdout)["argv"] == ["--weird.py", "--no-jit"]


def test_module_mode(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "mypkg" / "__init__.py", "")
    mod = write(tmp_path / "mypkg" / "tool.py", SHOW + "raise SystemExit(5)\n")
    r = run_tracejit("run", "--no-jit", "-m", "mypkg.tool", "p", "--q", cwd=tmp_path)
    assert r.returncode == 5, r.stderr
    data = read_json_line(r.stdout)
    assert data["argv"] == [str(mod), "p", "--q"]
    assert data["name"] == "__main__"
    assert Path(str(data["path0"])).resolve() == tmp_path.resolve()


def test_module_mode_package_main_with_jit(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "app" / "__init__.py", "")
    write(tmp_path / "app" / "__main__.py", SHOW)
    r = run_tracejit("run", "-m", "app", "z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = read_json_line(r.stdout)
    assert data["argv"] == [str(tmp_path / "app" / "__main__.py"), "z"]
    assert data["name"] == "__main__"


def test_missing_module_and_script(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    r = run_tracejit("run", "--no-jit", "-m", "no_such_module_xyz", cwd=tmp_path)
    assert r.returncode == 1
    assert "No module named no_such_module_xyz" in r.stderr
    write(tmp_path / "nomain" / "__init__.py", "")
    r = run_tracejit("run", "--no-jit", "-m", "nomain", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("tracejit: No module named nomain.__main__; 'nomain' is a package "
                        "and cannot be directly executed\n")
    r = run_tracejit("run", "--no-jit", "missing.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "can't open file" in r.stderr and "missing.py" in r.stderr


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit(0)", 0),
        ("import sys; sys.exit()", 0),
        ("raise SystemExit(None)", 0),
        ("import os; print('end'); os._exit(9)", 9),
    ],
)
def test_exit_codes(run_tracejit: RunTracejit, tmp_path: Path, body: str, code: int) -> None:
    write(tmp_path / "e.py", body + "\n")
    for opts in (["--no-jit"], []):
        r = run_tracejit("run", *opts, "e.py", cwd=tmp_path)
        assert r.returncode == code, (opts, r.stderr)


def test_exit_with_message(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "e.py", "import sys\nsys.exit('fatal: no input')\n")
    r = run_tracejit("run", "--no-jit", "e.py", cwd=tmp_path)
    assert r.returncode == 1
    assert "fatal: no input" in r.stderr


def test_uncaught_exception(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "boom.py", """\
        def inner():
            raise ValueError("boom 123")

        print("before")
        inner()
        """)
    for opts in (["--no-jit"], []):
        r = run_tracejit("run", *opts, "boom.py", cwd=tmp_path)
        assert r.returncode == 1
        assert r.stdout == "before\n"
        assert "Traceback (most recent call last):" in r.stderr
        assert "ValueError: boom 123" in r.stderr
        assert 'boom.py", line 5, in <module>' in r.stderr
        assert 'boom.py", line 2, in inner' in r.stderr
        # Like python: the launcher's frames are not shown.
        assert "runpy" not in r.stderr
        assert "cli.py" not in r.stderr


def test_program_excepthook_is_used(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "hook.py", """\
        import sys
        def hook(t, v, tb):
            print("custom hook:", t.__name__, v, file=sys.stderr)
        sys.excepthook = hook
        raise KeyError("k")
        """)
    r = run_tracejit("run", "--no-jit", "hook.py", cwd=tmp_path)
    assert r.returncode == 1
    assert "custom hook: KeyError 'k'" in r.stderr


def test_atexit_handlers_run(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "ae.py", """\
        import atexit, sys
        atexit.register(lambda: print("bye"))
        print("hi")
        sys.exit(4)
        """)
    r = run_tracejit("run", "--no-jit", "ae.py", cwd=tmp_path)
    assert r.returncode == 4
    assert r.stdout == "hi\nbye\n"


# --------------------------------------------------------------------------- stats


def test_stats_json_no_jit(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    out = tmp_path / "stats.json"
    r = run_tracejit("run", "--no-jit", "--stats-json", str(out), "hot.py", "1000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{expected_hot_loop(1000)}\n"
    data = json.loads(out.read_text())
    assert REQUIRED_STATS_KEYS <= set(data)
    assert data["jit_enabled"] is False
    assert data["traces_compiled"] == 0
    assert r.stderr == ""


@pytest.mark.parametrize("code", [0, 6])
def test_stats_json_relative_path_and_exit_code(run_tracejit: RunTracejit, tmp_path: Path,
                                                code: int) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    r = run_tracejit("run", "--no-jit", "--stats-json=s.json", "hot.py", "10", str(code),
                     cwd=tmp_path)
    assert r.returncode == code, r.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert REQUIRED_STATS_KEYS <= set(data)


def test_stats_written_when_program_raises(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "boom.py", "raise RuntimeError('x')\n")
    out = tmp_path / "stats.json"
    r = run_tracejit("run", "--no-jit", "--stats", "--stats-json", str(out), "boom.py",
                     cwd=tmp_path)
    assert r.returncode == 1
    assert "RuntimeError: x" in r.stderr
    assert "tracejit stats:" in r.stderr
    assert "traces_compiled" in r.stderr
    assert REQUIRED_STATS_KEYS <= set(json.loads(out.read_text()))


def test_stats_text_after_program_atexit(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "ae.py", """\
        import atexit, sys
        atexit.register(lambda: print("program atexit", file=sys.stderr))
        """)
    r = run_tracejit("run", "--no-jit", "--stats", "ae.py", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr.index("program atexit") < r.stderr.index("tracejit stats:")


@pytest.mark.parametrize("kind", ["missing-dir", "directory"])
def test_unwritable_stats_json(run_tracejit: RunTracejit, tmp_path: Path, kind: str) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    target = tmp_path / "no" / "such" / "dir" / "s.json" if kind == "missing-dir" else tmp_path
    for opts in (["--no-jit"], []):
        r = run_tracejit("run", *opts, "--stats-json", str(target), "hot.py", "500", "7",
                         cwd=tmp_path)
        assert r.returncode == 7, r.stderr
        assert r.stdout == f"{expected_hot_loop(500)}\n"
        assert "looks unwritable" in r.stderr  # warned up front
        assert "could not write --stats-json file" in r.stderr  # and at exit
        assert str(target) in r.stderr


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("opts", "needle"),
    [
        (["--param", "no_such_param=3"], "unknown tracejit parameter 'no_such_param'"),
        (["--param", "threshold=abc"], "threshold must be an integer"),
        (["--param", "threshold=0"], "threshold must be a positive integer"),
        (["--param", "inlining=maybe"], "inlining must be on or off"),
        (["--param", "threshold"], "needs the form name=value"),
        (["--threshold", "-5"], "threshold must be a positive integer"),
        (["--param", "threshold=5,bogus=1"], "unknown tracejit parameter 'bogus'"),
    ],
)
def test_bad_param_still_runs(run_tracejit: RunTracejit, tmp_path: Path, opts: list[str],
                              needle: str) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    for jit in (["--no-jit"], []):
        r = run_tracejit("run", *jit, *opts, "hot.py", "3000", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{expected_hot_loop(3000)}\n"
        assert needle in r.stderr
        assert "running with default parameters" in r.stderr


def test_unknown_option_is_reported_and_ignored(run_tracejit: RunTracejit,
                                                tmp_path: Path) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    r = run_tracejit("run", "--no-jit", "--frobnicate", "hot.py", "10", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout == f"{expected_hot_loop(10)}\n"
    assert "unknown option '--frobnicate'" in r.stderr


def test_good_params_are_accepted(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    r = run_tracejit("run", "--no-jit", "--param", "threshold=7,inlining=off",
                     "--param=trace_limit=100", "--threshold", "11", "hot.py", "50",
                     cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr == ""


def test_usage_errors(run_tracejit: RunTracejit) -> None:
    r = run_tracejit("run")
    assert r.returncode == 2
    assert "missing SCRIPT" in r.stderr
    r = run_tracejit("run", "-m")
    assert r.returncode == 2
    r = run_tracejit("frob")
    assert r.returncode == 2
    assert "unknown command" in r.stderr
    r = run_tracejit("--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_parse_run_args_units() -> None:
    o = parse_run_args(["--no-jit", "--stats", "--threshold=9", "--param", "a=1", "s.py", "-x"])
    assert (o.jit, o.stats_text, o.script, o.args) == (False, True, "s.py", ["-x"])
    assert o.param_texts == ["threshold=9", "a=1"]
    o = parse_run_args(["-mpkg.mod", "1"])
    assert (o.module, o.args, o.script) == ("pkg.mod", ["1"], None)
    o = parse_run_args(["--stats-json", "out.json", "-m", "m"])
    assert o.stats_json == "out.json" and o.module == "m"
    changes, problems = resolve_params(["threshold=3", "inlining=no"])
    assert changes == {"threshold": 3, "inlining": False} and problems == []
    changes, problems = resolve_params(["threshold=3", "nope=1"])
    assert changes == {} and len(problems) == 1


# --------------------------------------------------------------------------- JIT availability


def test_jit_unavailable_runs_without_jit(tmp_path: Path) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    code = (
        "import sys, tracejit\n"
        "tracejit.unavailable_reason = lambda: 'simulated: not CPython 3.13'\n"
        "from tracejit.cli import main\n"
        "sys.exit(main(['run', '--stats-json', 's.json', 'hot.py', '100', '2']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == f"{expected_hot_loop(100)}\n"
    lines = r.stderr.splitlines()
    assert lines == ["tracejit: JIT unavailable, running without it: "
                     "simulated: not CPython 3.13"]
    assert json.loads((tmp_path / "s.json").read_text())["jit_enabled"] is False


def other_python() -> str | None:
    for name in ("python3.11", "python3.12", "python3"):
        exe = shutil.which(name)
        if exe is None:
            continue
        r = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] >= (3, 10) "
                            "and sys.version_info[:2] != (3, 13))"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == "True":
            return exe
    return None


def test_other_python_runs_program_without_jit(tmp_path: Path) -> None:
    exe = other_python()
    if exe is None:
        pytest.skip("no non-3.13 Python >= 3.10 on PATH to try")
    write(tmp_path / "hot.py", HOT_LOOP)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = subprocess.run([exe, "-m", "tracejit", "run", "hot.py", "100", "3"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert r.stdout == f"{expected_hot_loop(100)}\n"
    assert "JIT unavailable" in r.stderr and "3.13" in r.stderr
    assert len(r.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- JIT on
# These need the JIT runtime (tracejit.runtime.hooks).


def test_jit_enables_and_compiles_hot_loop(run_tracejit: RunTracejit, tmp_path: Path) -> None:
    write(tmp_path / "hot.py", HOT_LOOP)
    out = tmp_path / "stats.json"
    r = run_tracejit("run", "--threshold", "50", "--stats-json", str(out), "hot.py", "200000",
                     cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{expected_hot_loop(200000)}\n"
    assert "could not enable" not in r.stderr
    assert "unavailable" not in r.stderr
    data = json.loads(out.read_text())
    assert data["jit_enabled"] is True
    assert data["traces_compiled"] >= 1
    assert data["native_entries"] >= 1


def test_info_and_version(run_tracejit: RunTracejit) -> None:
    r = run_tracejit("--version")
    assert r.returncode == 0 and r.stdout.startswith("tracejit ")
    r = run_tracejit("info")
    assert r.returncode == 0
    assert "available: yes" in r.stdout
    assert "threshold" in r.stdout and "1039" in r.stdout
    assert "3.13" in r.stdout


# --------------------------------------------------------------------------- benchmarks


def test_benchmark_harness_quick(tmp_path: Path) -> None:
    """Every benchmark program runs (quick sizes) under CPython and under
    ``tracejit run``, and gives the same result in both (the harness checks)."""
    out = tmp_path / "bench.json"
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "benchmarks.harness", "--quick", "--rounds", "1",
                        "--json", str(out)], cwd=root, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    names = [b["name"] for b in data["benchmarks"]]
    assert "nbody" in names and "aborting" in names and len(names) >= 8
    for bench in data["benchmarks"]:
        assert bench["errors"] == []
        assert bench["speedup"] is not None and bench["speedup"] > 0
        assert REQUIRED_STATS_KEYS <= set(bench["tracejit_stats"])
    assert "speed-up" in r.stdout


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
                    reason="valgrind is not installed")
def test_instruction_counts() -> None:
    """benchmarks/instructions.py counts only the last repeats, the same program
    under both; int_loop's native loop runs far fewer instructions."""
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "benchmarks.instructions", "int_loop", "--n",
                        "20000", "--repeats", "4", "--count", "2"], cwd=root,
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"ratio\s+([\d.]+)x", r.stdout)
    assert m is not None, r.stdout
    assert float(m.group(1)) > 3, r.stdout
    assert "(0 recordings while counted)" in r.stdout, r.stdout
