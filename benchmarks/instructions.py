"""Instructions executed per inner run of a benchmark, CPython against tracejit,
counted by valgrind's callgrind: a measure the shared machine's noise does not
move (wall-clock ratios here swing by 20-30% from one minute to the next).

    python -m benchmarks.instructions NAME [--n N] [--repeats R] [--count C]
                                           [--sections S]

Both runs execute ``benchmarks/NAME.py --n N --repeats R``; only the last C
repeats are counted (benchmarks/common.py turns counting on then).  tracejit
runs with ``jit_time_percent=100``: under valgrind everything is about 50x
slower, so the time budget would stop the JIT long before the program
converges.  The count is then that of converged native code; the report says
how many recordings still started while counting (they should be none: raise
R if not).  Instructions are not time (machine code and the interpreter
differ in cache misses and instructions per cycle), so quote both.
Needs ``valgrind`` and ``callgrind_control`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
_COLLECTED = re.compile(r"Collected : (\d+)")


def count(name: str, jit: bool, n: int, repeats: int, counted: int,
          sections: int | None = None) -> tuple[int, dict[str, object]]:
    """(instructions in the counted repeats, the program's JSON line)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               "--smc-check=all-non-file", f"--callgrind-out-file={out}", sys.executable]
        if jit:
            cmd += ["-m", "tracejit", "run", "--param", "jit_time_percent=100"]
        cmd += [str(BENCH_DIR / f"{name}.py"), "--n", str(n), "--repeats", str(repeats)]
        env = {"BENCH_COUNT_FROM": str(repeats - counted), "PYTHONPATH": str(REPO_ROOT)}
        if sections is not None:
            env["BENCH_SECTIONS"] = str(sections)  # the template benchmarks' size
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT,
                              env={**_base_env(), **env}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} ({'tracejit' if jit else 'CPython'}) failed:\n{proc.stderr}")
    m = _COLLECTED.search(proc.stderr)
    if m is None:
        raise SystemExit(f"no instruction count from valgrind:\n{proc.stderr}")
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(line, dict)
    return int(m.group(1)), line


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACEJIT_")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Instructions per inner run, CPython "
                                "against tracejit, counted by callgrind.")
    p.add_argument("name", help="a benchmark program in benchmarks/ (e.g. tornado_template)")
    p.add_argument("--n", type=int, default=20, help="the program's --n (inner size)")
    p.add_argument("--repeats", type=int, default=12)
    p.add_argument("--count", type=int, default=3, help="repeats counted, at the end")
    p.add_argument("--sections", type=int,
                   help="template sections (tornado_template, mako_template; default 120)")
    a = p.parse_args(argv)
    if not (BENCH_DIR / f"{a.name}.py").is_file():
        p.error(f"no benchmark program {a.name!r} in {BENCH_DIR}")
    if not 1 <= a.count <= a.repeats:
        p.error("--count must be between 1 and --repeats")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not on PATH")
    if a.sections is not None and a.sections < 1:
        p.error("--sections must be positive")
    plain, plain_line = count(a.name, False, a.n, a.repeats, a.count, a.sections)
    jit, jit_line = count(a.name, True, a.n, a.repeats, a.count, a.sections)
    if plain_line["result"] != jit_line["result"]:
        print(f"RESULT MISMATCH: {plain_line['result']!r} != {jit_line['result']!r}")
        return 1
    per = a.count
    size = f", {a.sections} sections" if a.sections is not None else ""
    print(f"{a.name}: --n {a.n}{size}, last {a.count} of {a.repeats} repeats counted")
    print(f"  CPython   {plain / per:14,.0f} instructions per repeat")
    print(f"  tracejit  {jit / per:14,.0f} instructions per repeat "
          f"({jit_line.get('recordings_while_counted', '?')} recordings while counted)")
    print(f"  ratio     {plain / jit:.2f}x fewer instructions under tracejit")
    if jit_line.get("recordings_while_counted") != 0:
        print("  NOT CONVERGED: the JIT recorded while counting (its own work is in the "
              "count); raise --repeats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
