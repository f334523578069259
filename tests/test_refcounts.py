"""Reference-count balance of jitted code: a leak of one reference per
iteration keeps dead objects alive, so memory grows with the run (found on
nbody: unboxed float arithmetic on owned operands never released them).

Each snippet is a function run once to compile its loop and bridges (threshold
1), then run again several times; the number of allocated memory blocks must not grow
with the number of iterations.  Borrowed objects that live on (list items,
constants) must keep their reference counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# name -> body of `def work(items, n)`; `items` is a list of objects of the
# snippet's choosing (made by `make`), the loop runs n times.
SNIPPETS: dict[str, tuple[str, str]] = {
    "float_ops_on_list_items": ("[1.5, 2.5, 3.5]", """
        s = 0.0
        for i in range(n):
            a = items[i % 3]
            b = items[(i + 1) % 3]
            s += a * b - a / b + (-a)
        return s
    """),
    "int_ops_on_list_items": ("[10**6 + 1, 10**6 + 2, 10**6 + 3]", """
        s = 0
        for i in range(n):
            a = items[i % 3]
            b = items[(i + 1) % 3]
            s += (a * b - a // b + (-a) + (~b)) % 1000
        return s
    """),
    "compare_owned": ("[1.5, 2.5, 3.5]", """
        c = 0
        for i in range(n):
            if items[i % 3] < items[(i + 1) % 3]:
                c += 1
            if items[i % 3] == 2.5:
                c += 2
        return c
    """),
    "int_compare_owned": ("[10**6, 10**6 + 1]", """
        c = 0
        for i in range(n):
            if items[i % 2] >= items[(i + 1) % 2]:
                c += 1
        return c
    """),
    "list_store_floats": ("[[0.0, 0.0, 0.0]]", """
        v = items[0]
        for i in range(n):
            v[i % 3] += 0.5 * i
            v[(i + 1) % 3] -= v[i % 3] * 1e-9
        return v[0]
    """),
    "unpack_and_pow": ("[([1.0, 2.0], 3.0), ([4.0, 5.0], 6.0)]", """
        s = 0.0
        for i in range(n):
            ([x, y], m) = items[i % 2]
            s += (x * x + y * y) ** -1.5 * m
        return s
    """),
    "list_items_through_tuples": ("[([0.5, 1.5, 2.5], 1.0), ([3.5, 4.5, 5.5], 2.0)]", """
        for i in range(n):
            for (v1, m1), (v2, m2) in ((items[0], items[1]), (items[1], items[0])):
                d = m1 - m2
                v1[0] -= d * 1e-6
                v2[1] += d * m1 * 1e-6
                v1[2] = v2[2] * 1.0
        return items[0][0][0]
    """),
    "generic_calls": ("['a', 'bb', 'ccc']", """
        s = 0
        for i in range(n):
            w = items[i % 3]
            s += len(w.upper()) + abs(-i)
        return s
    """),
    "tuple_iteration": ("[(1, 2.0), (3, 4.0)]", """
        s = 0.0
        for _ in range(n // 2):
            for k, f in items:
                s += k * f
        return s
    """),
    "attribute_access": ("[]", """
        class P:
            def __init__(self):
                self.x = 1.5
        p = P()
        s = 0.0
        for i in range(n):
            p.x = p.x + 1.0
            s += p.x
        return s
    """),
}

PROGRAM = """
import gc, json, sys
import tracejit
tracejit.enable(threshold=1, function_threshold=1, jit_time_percent=100)
results = {}
for name, (make, body) in SNIPPETS.items():
    ns = {}
    exec("def work(items, n):\\n" + body, ns)
    work = ns["work"]
    items = eval(make)
    for _ in range(3):  # compile the loop and its bridges
        work(items, 1000)
    gc.collect()
    flat = [x for it in items for x in (it if isinstance(it, (list, tuple)) else (it,))]
    refs = [sys.getrefcount(x) for x in flat]
    blocks = sys.getallocatedblocks()
    for _ in range(4):
        work(items, 1000)
    gc.collect()
    grown = sys.getallocatedblocks() - blocks
    refs_after = [sys.getrefcount(x) for x in flat]
    results[name] = {"blocks": grown, "refs": refs, "refs_after": refs_after}
tracejit.disable()
print(json.dumps({"results": results, "stats": tracejit.stats()}))
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    snippets = {k: (make, textwrap.indent(textwrap.dedent(body), "    "))
                for k, (make, body) in SNIPPETS.items()}
    source = f"SNIPPETS = {snippets!r}\n" + PROGRAM
    workdir = tmp_path_factory.mktemp("refcounts")
    (workdir / "prog.py").write_text(source)
    env = dict(os.environ)
    env.pop("TRACEJIT_LOG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "prog.py"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_no_leak(measured: dict[str, object], name: str) -> None:
    results = measured["results"]
    assert isinstance(results, dict)
    r = results[name]
    # 4000 iterations: a leak of one object per iteration is thousands of blocks.
    assert r["blocks"] < 200, f"{name}: {r['blocks']} memory blocks kept after 4000 iterations"
    # Items that were read (and not replaced) keep their reference counts.
    if name != "list_store_floats":
        assert r["refs_after"] == r["refs"], name


def test_snippets_were_compiled(measured: dict[str, object]) -> None:
    stats = measured["stats"]
    assert isinstance(stats, dict)
    assert stats["traces_compiled"] >= len(SNIPPETS) - 2
    assert stats["native_entries"] > 0
