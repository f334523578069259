"""A big artificial Tornado template: thousands of generated lines with
``{% for %}``, ``{% if %}``/``{% elif %}``/``{% else %}``, ``{% set %}`` and
autoescaped ``{{ }}`` expressions; compiled once with tornado.template, rendered
many times.  The result is a checksum of the rendered output.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (renders per repeat), --repeats R (or env BENCH_QUICK=1);
env BENCH_SECTIONS: template sections (default 120).
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from tornado.template import Template

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402

# Each section is ~25 template lines; BENCH_SECTIONS makes a smaller template
# (benchmarks/instructions.py --sections: valgrind is about 50x slower).
SECTIONS = int(os.environ.get("BENCH_SECTIONS", "120"))


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


def main(argv: list[str] | None = None) -> None:
    run_benchmark(tornado_kernel, argv, 80, 8)


if __name__ == "__main__":
    main()
