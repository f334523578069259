"""A big artificial Tornado template: thousands of generated lines with
``{% for %}``, ``{% if %}``/``{% elif %}``/``{% else %}``, ``{% set %}`` and
autoescaped ``{{ }}`` expressions; compiled once with tornado.template, rendered
many times.  The result is a checksum of the rendered output.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (renders per repeat), --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from typing import Any

from tornado.template import Template

SECTIONS = 120  # each section is ~25 template lines


def template_text(sections: int) -> str:
    out = ["<html><head><title>{{ title }}</title></head><body>"]
    for k in range(sections):
        out.append(f"""\
<div class="section" id="s{k}">
  <h2>{{{{ sections[{k}]["name"] }}}} &mdash; {{{{ len(sections[{k}]["rows"]) }}}} rows</h2>
  {{% set total = 0 %}}
  {{% if sections[{k}]["rows"] %}}
  <table>
    {{% for i, row in enumerate(sections[{k}]["rows"]) %}}
    {{% set total = total + row["qty"] * row["price"] %}}
    <tr class="{{{{ "odd" if i % 2 else "even" }}}}">
      <td>{{{{ row["label"] }}}}</td>
      <td>{{{{ row["qty"] }}}}</td>
      {{% if row["price"] > 50 %}}
      <td class="dear">{{{{ "%.2f" % row["price"] }}}}</td>
      {{% elif row["price"] > 10 %}}
      <td class="mid">{{{{ "%.2f" % row["price"] }}}}</td>
      {{% else %}}
      <td class="cheap">{{{{ "%.2f" % row["price"] }}}}</td>
      {{% end %}}
      <td>{{% for tag in row["tags"] %}}<span>{{{{ tag }}}}</span>{{% end %}}</td>
    </tr>
    {{% end %}}
  </table>
  <p>total: {{{{ "%.2f" % total }}}}</p>
  {{% else %}}
  <p>no rows in section {k}</p>
  {{% end %}}
</div>""")
    out.append("</body></html>")
    return "\n".join(out)


def make_data(sections: int) -> dict[str, Any]:
    seed = 7
    data = []
    for k in range(sections):
        rows = []
        for r in range(k % 7):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            rows.append({
                "label": f"item <{k}.{r}> & \"co\"",
                "qty": seed % 9 + 1,
                "price": (seed % 10000) / 100.0,
                "tags": [f"t{(seed >> s) % 5}" for s in range(seed % 3)],
            })
        data.append({"name": f"Section {k} <b>", "rows": rows})
    return {"title": "Report & <summary>", "sections": data}


TEMPLATE = Template(template_text(SECTIONS), name="big.html")
DATA = make_data(SECTIONS)


def tornado_kernel(n: int) -> str:
    digest = hashlib.sha256()
    size = 0
    for _ in range(n):
        html: bytes = TEMPLATE.generate(**DATA)
        size += len(html)
        digest.update(html)
    return f"{size} {digest.hexdigest()}"


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


def main(argv: list[str] | None = None) -> None:
    n, repeats = parse_args(argv, 80, 8, 10, 4)
    times: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = tornado_kernel(n)
        times.append(time.perf_counter() - t0)
        if result is not None and r != result:
            raise AssertionError(f"result changed between repeats: {result} != {r}")
        result = r
    print(json.dumps({"result": result, "times": times}))


if __name__ == "__main__":
    main()
