"""Memory bounds of the JIT itself (issue #4, resource bounds): traces of code
objects that died are freed, and ``code_cache_size`` caps the machine code by
evicting the least recently entered root traces with their bridges.

Each program runs in a fresh subprocess under ``tracejit.enable(threshold=1,
...)`` and prints its results and the JIT's counters as one JSON line; the
results are checked against the same program run without the JIT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import json, os, sys
JIT = os.environ.get("TJMEM_JIT") == "1"
if JIT:
    import tracejit
    tracejit.enable(**{"threshold": 1, "trace_eagerness": 2, "jit_time_percent": 100,
                       **json.loads(os.environ["TJMEM_PARAMS"])})
def stats():
    return tracejit.stats() if JIT else {}
"""


def run(source: str, tmp_path: Path, jit: bool, **params: object) -> dict[str, Any]:
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["TJMEM_JIT"] = "1" if jit else "0"
    env["TJMEM_PARAMS"] = json.dumps(params)
    proc = subprocess.run([sys.executable, str(prog)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout.splitlines()[-1])
    assert isinstance(out, dict)
    return out


def both(source: str, tmp_path: Path, **params: object) -> dict[str, Any]:
    """Run plain and jitted; the results must agree; returns the JIT run's output."""
    plain = run(source, tmp_path, False)
    jit = run(source, tmp_path, True, **params)
    assert jit["result"] == plain["result"]
    return jit


# Many live functions, each with its own hot loop (and a branch that grows a
# bridge), called round-robin: far more machine code than the cache holds.
MANY_LIVE = """
funcs = []
for k in range(120):
    ns = {}
    exec(f'''
def f(n):
    s = {k}
    for i in range(n):
        if i % 3 == {k % 3}:
            s += i * {k}
        else:
            s ^= i
    return s
''', ns)
    funcs.append(ns["f"])
result = []
peak = 0
for rnd in range(4):
    for f in funcs:
        result.append(f(60))
        peak = max(peak, stats().get("code_bytes", 0))
print(json.dumps({"result": result, "peak": peak, "stats": stats()}))
"""


def test_code_cache_size_caps_machine_code(tmp_path: Path) -> None:
    limit = 256 * 1024
    out = both(MANY_LIVE, tmp_path, code_cache_size=limit)
    st = out["stats"]
    # Far more was compiled than fits: evicted roots were compiled again.
    assert st["traces_compiled"] * 12 * 1024 > 2 * limit, st
    assert st["traces_evicted"] > 0 and st["traces_freed"] > 0, st
    assert out["peak"] <= limit, out["peak"]
    assert st["native_entries"] >= 4 * 120 * 0.5, st


def test_default_cache_keeps_live_traces(tmp_path: Path) -> None:
    """With the default size nothing is evicted and every loop is compiled once."""
    out = both(MANY_LIVE, tmp_path)
    st = out["stats"]
    assert st["traces_evicted"] == 0, st
    assert st["native_entries"] >= 4 * 120, st


def test_jit_time_budget_defers_compilation(tmp_path: Path) -> None:
    """Past its share of the run time (jit_time_percent, here 1% with no grace
    period) the JIT stops recording: hot loops keep counting and run in the
    interpreter, with the same results."""
    source = "import tracejit.runtime.hooks\ntracejit.runtime.hooks.JIT_TIME_GRACE_S = 0.0\n"
    out = both(source + MANY_LIVE, tmp_path, jit_time_percent=1)
    st = out["stats"]
    assert st["aborts"].get("JIT time budget spent", 0) > 0, st
    assert 1 <= st["traces_compiled"] < 40, st  # 120 and more without the budget


def test_eviction_while_the_evicted_trace_runs(tmp_path: Path) -> None:
    """A native loop calls a function that compiles new traces; with a tiny cache
    each compilation evicts everything else, including the running loop's own
    trace: its machine code must stay mapped until it returns."""
    source = """
    def fresh(k):
        ns = {}
        exec(f"def g(n):\\n    t = 0\\n    for j in range(n):\\n"
             f"        t += j * {k}\\n    return t\\n", ns)
        return ns["g"](30)
    def outer(n):
        s = 0
        for i in range(n):
            s += i
            if i % 7 == 0:
                s += fresh(i)
        return s
    result = [outer(200) for _ in range(5)]
    print(json.dumps({"result": result, "stats": stats()}))
    """
    out = both(source, tmp_path, code_cache_size=1)
    st = out["stats"]
    assert st["traces_evicted"] > 10 and st["traces_freed"] > 10, st
    assert st["native_entries"] > 100, st


DEAD_CODE = """
import gc
marks = []
result = 0
for k in range(241):
    ns = {}
    exec(f'''
def h(x):
    return x & 3
def f(n):
    s = {k}
    for i in range(n):
        for j in range(i % 5 + 3):
            if (i + j) % 4 == 0:
                s += h(j)
            else:
                s -= 1
    return s
''', ns)
    result += ns["f"](40) + ns["f"](40)
    del ns
    if k % 80 == 0:
        gc.collect()
        marks.append((sys.getallocatedblocks(), stats().get("code_bytes", 0)))
print(json.dumps({"result": result, "marks": marks, "stats": stats()}))
"""


def test_dead_code_frees_trace_graphs(tmp_path: Path) -> None:
    """Functions with nested loops, bridges and linked traces, each dropped after
    use: their traces are freed, so code_bytes and the Python heap stay flat.
    The traces refer to their module's globals and to a function of the same
    module (a reference cycle through the JIT's cache if held strongly)."""
    out = both(DEAD_CODE, tmp_path)
    st = out["stats"]
    assert st["traces_compiled"] >= 2 * 240 and st["bridges_compiled"] >= 240, st
    assert st["traces_freed"] >= st["traces_compiled"] - 20, st
    (_, _), (blocks1, bytes1), (blocks2, bytes2), (blocks3, bytes3) = out["marks"]
    assert bytes3 <= bytes1 + 64 * 1024, out["marks"]
    assert blocks3 - blocks1 < 3000, out["marks"]


def test_dispatcher_table_deletions_keep_every_entry_reachable() -> None:
    """forget_code() empties slots with backward-shift deletion: every remaining
    location must still be found by the native lookup (linear probing from its
    hash, stopping at an empty slot), at the index the runtime records."""
    import random

    from tracejit.runtime.dispatch import Dispatcher, _hash

    d = Dispatcher(lambda *a: None, lambda *a: None, lambda *a: None)
    rng = random.Random(4)
    codes = [object() for _ in range(300)]
    live: dict[int, set[int]] = {}

    def lookup(code_id: int, offset: int) -> int | None:
        table = d._table
        mask = len(table) - 1
        i = _hash(code_id, offset) & mask
        while True:
            if table[i].code == code_id and table[i].offset == offset:
                return i
            if not table[i].code:
                return None
            i = (i + 1) & mask

    for step in range(20000):
        code = rng.choice(codes)
        if rng.random() < 0.7:
            offset = rng.randrange(0, 40) * 2
            d.count_down(code, offset, 5)
            live.setdefault(id(code), set()).add(offset)
        else:
            d.forget_code(id(code))
            live.pop(id(code), None)
        if step % 50 == 0 or step > 19900:
            for code_id, offsets in live.items():
                for offset in offsets:
                    assert lookup(code_id, offset) == d.entries[(code_id, offset)][1]
            assert len(d.entries) == sum(len(o) for o in live.values())
    for code in codes:
        d.forget_code(id(code))
    assert not d.entries and all(not s.code for s in d._table)
