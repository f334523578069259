"""Symbols for ``perf``: with ``TRACEJIT_PERFMAP=1`` every mapped stencil copy
is listed in ``/tmp/perf-<pid>.map`` (perf's JIT symbol file) as
``tj:<op>`` (``tj:stub:<op>`` after a trace's first exit label), and each
runtime function under its own name, so ``perf report --sort sym`` shows
where machine code spends its time by machine op.  A debugging aid: off by
default; a file that cannot be written turns it off with one warning.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

_file: TextIO | None = None
_failed = False


def enabled() -> bool:
    return os.environ.get("TRACEJIT_PERFMAP") == "1" and not _failed


def write(entries: list[tuple[int, int, str]]) -> None:
    """Append (address, size, name) symbols."""
    global _file, _failed
    if not entries or not enabled():
        return
    try:
        if _file is None:
            _file = open(f"/tmp/perf-{os.getpid()}.map", "a", encoding="ascii")  # noqa: SIM115
        _file.write("".join(f"{a:x} {s:x} {n}\n" for a, s, n in entries if s > 0))
        _file.flush()
    except OSError as e:
        _failed = True
        print(f"tracejit: TRACEJIT_PERFMAP: cannot write the perf map ({e}); "
              "symbols are off", file=sys.stderr)
