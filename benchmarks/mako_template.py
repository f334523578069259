"""A big artificial Mako template: thousands of generated lines with ``% for``,
``% if``/``% elif``/``% else``, ``<%def>`` calls and ``${ | h}`` escaped
expressions; compiled once, rendered many times.  The result is a checksum of the
rendered output.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (renders per repeat), --repeats R (or env BENCH_QUICK=1);
env BENCH_SECTIONS: template sections (default 120).
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from mako.template import Template

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402

# Each section is ~25 template lines; BENCH_SECTIONS makes a smaller template
# (benchmarks/instructions.py --sections: valgrind is about 50x slower).
SECTIONS = int(os.environ.get("BENCH_SECTIONS", "120"))


def template_text(sections: int) -> str:
    out = [
        "<%def name=\"money(v)\">${\"%.2f\" % v}</%def>",
        "<html><head><title>${title | h}</title></head><body>",
    ]
    for k in range(sections):
        out.append(f"""\
<div class="section" id="s{k}">
  <% sec = sections[{k}] %>
  <h2>${{sec["name"] | h}} &mdash; ${{len(sec["rows"])}} rows</h2>
  <% total = 0 %>
  % if sec["rows"]:
  <table>
    % for i, row in enumerate(sec["rows"]):
    <% total = total + row["qty"] * row["price"] %>
    <tr class="${{"odd" if i % 2 else "even"}}">
      <td>${{row["label"] | h}}</td>
      <td>${{row["qty"]}}</td>
      % if row["price"] > 50:
      <td class="dear">${{money(row["price"])}}</td>
      % elif row["price"] > 10:
      <td class="mid">${{money(row["price"])}}</td>
      % else:
      <td class="cheap">${{money(row["price"])}}</td>
      % endif
      <td>
      % for tag in row["tags"]:
<span>${{tag | h}}</span>
      % endfor
      </td>
    </tr>
    % endfor
  </table>
  <p>total: ${{money(total)}}</p>
  % else:
  <p>no rows in section {k}</p>
  % endif
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


TEMPLATE = Template(template_text(SECTIONS))
DATA = make_data(SECTIONS)


def mako_kernel(n: int) -> str:
    digest = hashlib.sha256()
    size = 0
    for _ in range(n):
        html: str = TEMPLATE.render(**DATA)
        size += len(html)
        digest.update(html.encode("utf-8"))
    return f"{size} {digest.hexdigest()}"


def main(argv: list[str] | None = None) -> None:
    run_benchmark(mako_kernel, argv, 80, 8)


if __name__ == "__main__":
    main()
